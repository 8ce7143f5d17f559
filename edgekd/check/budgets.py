"""Budgets in one place: sizes, the three budgets of a board, what breaks them, the pre-training estimate.

:func:`edgekd.check.check` and :func:`edgekd.fit.fit` resolve budgets with
:func:`resolve_budgets` (one validation rule for each of ``max_flash``,
``max_ram`` and ``max_latency_ms``), turn figures into :class:`BudgetRow`
rows with :meth:`Budgets.rows`, and call a figure over budget when its row
fails (:meth:`Budgets.violations`). :func:`estimate` is what ``fit`` knows
about a Keras student before training it: the profile's int8 flash and peak
RAM plus the board's runtime, and the board's latency model.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, NamedTuple, Optional

import numpy as np

from edgekd.errors import invalid_value
from edgekd.profile import profile

from .latency import costs_from_profile, estimate_board_latency

__all__ = ["BUDGET_NAMES", "BudgetRow", "Budgets", "Estimate", "estimate", "parse_latency", "parse_size",
           "resolve_budgets"]

BUDGET_NAMES = ("flash", "ram", "latency")

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024,
          "M": 1024 ** 2, "MB": 1024 ** 2, "MIB": 1024 ** 2}


def parse_size(value: Any, *, name: str = "size") -> int:
    """Parse a byte size: an int, or a string such as ``"512KB"``, ``"1.5 MiB"``, ``"2048"``.

    Convention: KB and KiB are both 1024 bytes, MB and MiB 1024² bytes — the
    embedded convention (a datasheet's "256 KB SRAM" is 262,144 bytes).

    Raises:
        InvalidArgumentError: Not a positive size.
    """
    if isinstance(value, bool):
        raise invalid_value(name, "a positive size such as 512KB, 1.5MB or 65536", value)
    if isinstance(value, (int, np.integer)):
        if value <= 0:
            raise invalid_value(name, "a positive size such as 512KB, 1.5MB or 65536", value)
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).upper() not in _UNITS or float(m.group(1)) <= 0:
        raise invalid_value(
            name, "a positive size such as 512KB, 128KiB, 1.5MB or 65536 (KB = KiB = 1024 bytes)", value)
    size = float(m.group(1)) * _UNITS[m.group(2).upper()]
    # a budget is a whole number of bytes, at least one: "0.5" or "0.0001KB" must not become a 0-byte budget
    if size < 1 or (_UNITS[m.group(2).upper()] == 1 and not size.is_integer()):
        raise invalid_value(name, "a whole number of bytes, at least 1, such as 512KB, 1.5MB or 65536", value)
    return int(round(size))


def parse_latency(value: Any, *, name: str = "max_latency_ms") -> float:
    """Parse a latency budget: a positive, finite number of milliseconds (or a string of one, e.g. ``"2.5"``).

    Raises:
        InvalidArgumentError: A bool, NaN, infinity, zero, a negative number or not a number.
    """
    ms = None
    if not isinstance(value, bool) and isinstance(value, (numbers.Real, str)):
        try:
            ms = float(value)
        except ValueError:
            ms = None
    if ms is None or not math.isfinite(ms) or ms <= 0:
        raise invalid_value(name, "a positive number of milliseconds, such as 50 or 2.5", value)
    return ms


@dataclasses.dataclass(frozen=True)
class BudgetRow:
    """One budget: what is allowed, what was measured or estimated, and whether it holds."""

    name: str  # "flash", "ram", "latency"
    budget: Optional[float]
    value: Optional[float]
    unit: str  # "bytes" or "ms"
    source: str  # where the budget comes from: "board" or "override" or "none"
    how: str  # how the value was obtained

    @property
    def margin(self) -> Optional[float]:
        if self.budget is None or self.value is None:
            return None
        return self.budget - self.value

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.budget is None or self.value <= self.budget

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["margin"] = self.margin
        d["passed"] = self.passed
        return d


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Resolved budgets, in bytes and milliseconds (``latency_ms`` None: no latency budget).

    ``overridden`` names the budgets the caller set instead of the board's.
    """

    flash_bytes: int
    ram_bytes: int
    latency_ms: Optional[float]
    overridden: frozenset = dataclasses.field(default=frozenset(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes, "latency_ms": self.latency_ms}

    def _source(self, name: str) -> str:
        if name in self.overridden:
            return "override"
        return "none" if name == "latency" and self.latency_ms is None else "board"

    def rows(self, *, flash: Optional[float], ram: Optional[float], latency: Optional[float],
             flash_how: str = "", ram_how: str = "", latency_how: str = "") -> tuple[BudgetRow, BudgetRow, BudgetRow]:
        """The three budget rows of these figures (None: not known, which fails its row)."""
        return (BudgetRow("flash", self.flash_bytes, flash, "bytes", self._source("flash"), flash_how),
                BudgetRow("ram", self.ram_bytes, ram, "bytes", self._source("ram"), ram_how),
                BudgetRow("latency", self.latency_ms, latency, "ms", self._source("latency"), latency_how))

    def violations(self, flash: Optional[float], ram: Optional[float], latency: Optional[float]) -> tuple[str, ...]:
        """The names of the budgets these figures break, in the order flash, RAM, latency (as ``check``)."""
        return tuple(r.name for r in self.rows(flash=flash, ram=ram, latency=latency) if not r.passed)

    def excess(self, flash: float, ram: float, latency: float) -> list[float]:
        """Relative excess over each budget (≤ 0 holds; -1 where there is no budget): Optuna's constraints."""
        return [flash / self.flash_bytes - 1.0, ram / self.ram_bytes - 1.0,
                latency / self.latency_ms - 1.0 if self.latency_ms else -1.0]


def resolve_budgets(board: Any, *, max_flash: Any = None, max_ram: Any = None,
                    max_latency_ms: Any = None) -> Budgets:
    """The budgets for ``board``: the board's flash and RAM budgets unless overridden, the latency budget if any.

    Args:
        board: An :class:`edgekd.boards.Board`.
        max_flash: Flash budget (bytes or a size such as ``"512KB"``; see :func:`parse_size`).
        max_ram: RAM budget.
        max_latency_ms: Latency budget for the board estimate, in ms (see :func:`parse_latency`).

    Raises:
        InvalidArgumentError: A budget that is not a positive size or number of milliseconds.
    """
    flash = parse_size(max_flash, name="max_flash") if max_flash is not None else None
    ram = parse_size(max_ram, name="max_ram") if max_ram is not None else None
    latency = parse_latency(max_latency_ms) if max_latency_ms is not None else None
    overridden = frozenset(n for n, v in zip(BUDGET_NAMES, (flash, ram, latency)) if v is not None)
    return Budgets(int(flash if flash is not None else board.flash_budget_bytes),
                   int(ram if ram is not None else board.ram_budget_bytes), latency, overridden)


class Estimate(NamedTuple):
    """What a Keras model costs on a board before training: profile, flash, RAM and latency estimates."""

    profile: Any  # edgekd.profile.ModelProfile
    flash_bytes: int  # int8 weights (profile) + the board's runtime flash (interpreter only)
    ram_bytes: int  # profile's peak activation RAM + the board's runtime RAM (interpreter only; not a TFLM arena)
    latency_ms: float  # the board's latency model on the profile's ops


def estimate(model: Any, board: Any, *, engine: str = "interpreter") -> Estimate:
    """Profile a Keras model and estimate its flash, RAM and board latency (no conversion, no TFLM).

    With ``engine="compiled"`` there is no interpreter to add: flash is the int8 weights and RAM the peak
    live activations, lower bounds of what the linked engine measures (its kernels' code and planned buffer).
    """
    p = profile(model)
    # Keras layers that vanish in the int8 graph (folded BatchNorm, Dropout) carry no per-op overhead
    costs = [c for c in costs_from_profile(p) if c.macs > 0 or c.op_class != "other"]
    lat = estimate_board_latency(costs, board)
    runtime = engine != "compiled"
    flash = int(p.flash_int8_bytes) + (int(board.runtime_flash_bytes) if runtime else 0)
    ram = int(p.peak_ram_bytes) + (int(board.runtime_ram_bytes) if runtime else 0)
    return Estimate(p, flash, ram, float(lat.total_ms))
