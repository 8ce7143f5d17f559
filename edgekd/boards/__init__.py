"""Board profiles: what a microcontroller board offers a TFLM model.

Each shipped board is a TOML file next to this module (``<id>.toml``); users
pass their own with :func:`load_board_file` (``--board-file`` of every verb
that takes ``--board``). This is the one registry of boards: adding a board is
adding one file. A profile holds the board's flash and RAM and the share of
each a model may use, its clock and core, the optimized kernels TFLM has for
it (CMSIS-NN, ESP-NN), the TFLM runtime's own flash and RAM overhead, the
latency model's coefficients (cycles per multiply-accumulate for each op class
``conv``, ``depthwise``, ``fully_connected``, ``other`` with reference and
optimized kernels, plus a fixed cost per op), and what firmware needs: the
toolchains' names for the board (Arduino FQBN, PlatformIO platform and board,
ESP-IDF target), the ``[firmware]`` targets it supports, its serial speed and
whether its serial port is native USB, the static/heap arena limits
(``[arena]``) and the aliases it is known by. Every figure of a shipped board
carries the public source it was calibrated from in the file's ``[sources]``
table (see docs/boards.md).

Example:
    >>> from edgekd import boards
    >>> boards.get("nano33ble").clock_hz
    64000000
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from types import MappingProxyType
from typing import Any, Mapping, Optional

from edgekd.errors import BoardError

OP_CLASSES: tuple[str, ...] = ("conv", "depthwise", "fully_connected", "other")
KERNELS: tuple[str, ...] = ("reference", "optimized")
OPTIMIZED_KERNELS: tuple[str, ...] = ("none", "cmsis-nn", "esp-nn")
# QEMU machines edgekd can emulate a board's core on (`edgekd emulate`).
EMULATORS: tuple[str, ...] = ("mps2-an386",)
# Toolchains `edgekd firmware` renders projects for ([firmware] targets; edgekd.firmware.targets).
FIRMWARE_TARGETS: tuple[str, ...] = ("arduino", "esp-idf", "platformio")
# The board facts each firmware target needs (the keys a profile listing the target must have).
TARGET_FACTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "arduino": ("fqbn",), "esp-idf": ("idf_target",), "platformio": ("platformio_board", "platformio_platform"),
})
DEFAULT_BAUD = 115200

_DIR = os.path.dirname(os.path.abspath(__file__))

# Figures that must name their source in a shipped profile ([sources] keys).
SOURCED_FIGURES: tuple[str, ...] = (
    "flash_bytes", "ram_bytes", "usable_flash_fraction", "usable_ram_fraction", "clock_hz",
    "optimized_kernels", "runtime.flash_bytes", "runtime.ram_bytes",
    "cycles_per_mac.reference", "cycles_per_mac.optimized", "per_op_overhead_cycles",
)
# Figures that must name their source only when the profile has them.
SOURCED_IF_PRESENT: tuple[str, ...] = (
    "cycles_per_instruction", "fqbn", "platformio_board", "platformio_platform", "idf_target",
    "firmware.targets", "firmware.native_usb",
)


@dataclasses.dataclass(frozen=True)
class Board:
    """A board profile (see the module docstring for the meaning of each field).

    Attributes:
        id: Registry id, e.g. ``"nano33ble"``.
        name: Human name.
        mcu: Microcontroller part.
        core: CPU core, e.g. ``"Cortex-M4F"``.
        clock_hz: CPU clock the latency model assumes.
        flash_bytes: Total flash.
        ram_bytes: Total SRAM (data RAM where code and data RAM are separate).
        usable_flash_fraction: Share of flash left for the application (model
            + TFLM runtime) after bootloader/OS/SDK.
        usable_ram_fraction: Share of RAM left for the application.
        optimized_kernels: ``"cmsis-nn"``, ``"esp-nn"`` or ``"none"``.
        runtime_flash_bytes: Flash the TFLM runtime (interpreter + typical
            kernels) adds on top of the model.
        runtime_ram_bytes: RAM the TFLM runtime uses outside the tensor arena.
        cycles_per_mac: ``{"reference"|"optimized": {op_class: cycles}}``.
        per_op_overhead_cycles: Fixed cycles per op invocation.
        tflm_supported: False when TFLM cannot run on the board at all.
        tflm_unsupported_reason: Why, when ``tflm_supported`` is False.
        fqbn: Arduino fully-qualified board name (``arduino-cli --fqbn``), or None.
        platformio_board: PlatformIO board id (``board =`` in ``platformio.ini``), or None.
        platformio_platform: PlatformIO platform of that board (``platform =``:
            ``espressif32``, ``nordicnrf52``…), or None.
        idf_target: ESP-IDF ``IDF_TARGET`` (``esp32``, ``esp32s3``), or None.
        aliases: Other names the board is known by (``edgekd.boards.get`` accepts them,
            case-insensitively).
        firmware_targets: Toolchains ``edgekd firmware`` may render a project for on this
            board (``[firmware] targets``; each needs its facts, see :data:`TARGET_FACTS`);
            empty when edgekd renders no firmware for it.
        baud: Serial speed the generated firmware prints at (``[firmware] baud``).
        native_usb: The board's serial port is native USB CDC, so the sketch waits briefly
            for the host to open it (``[firmware] native_usb``).
        emulator: The QEMU machine that emulates the board's core (``"mps2-an386"`` for a
            Cortex-M4F), for ``edgekd emulate``; None when the board cannot be emulated.
        static_arena_max_bytes: Largest tensor arena a static array may be on this board and still
            link (``[arena] static_max_bytes``; e.g. the ESP32's 160 KB of static DRAM); None: no
            limit beyond the RAM budget.
        heap_arena_max_bytes: Largest arena the heap can give in one block when static would
            not link (``[arena] heap_max_bytes``); None: no limit beyond the RAM budget.
        cycles_per_instruction: Board cycles per emulated instruction, per op class
            (``[cycles_per_instruction]``, calibrated like ``cycles_per_mac``); empty when not calibrated.
        sources: Figure name → the public source it comes from.
        notes: Free text.
        path: File the profile was loaded from.
    """

    id: str
    name: str
    mcu: str
    core: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    usable_flash_fraction: float
    usable_ram_fraction: float
    optimized_kernels: str
    runtime_flash_bytes: int
    runtime_ram_bytes: int
    cycles_per_mac: Mapping[str, Mapping[str, float]]
    per_op_overhead_cycles: float
    tflm_supported: bool = True
    tflm_unsupported_reason: str = ""
    fqbn: Optional[str] = None
    platformio_board: Optional[str] = None
    idf_target: Optional[str] = None
    platformio_platform: Optional[str] = None
    aliases: tuple[str, ...] = ()
    firmware_targets: tuple[str, ...] = ()
    baud: int = DEFAULT_BAUD
    native_usb: bool = False
    emulator: Optional[str] = None
    static_arena_max_bytes: Optional[int] = None
    heap_arena_max_bytes: Optional[int] = None
    cycles_per_instruction: Mapping[str, float] = dataclasses.field(default_factory=dict)
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: str = ""
    path: str = ""

    @property
    def flash_budget_bytes(self) -> int:
        """Flash available to model + runtime: ``flash_bytes × usable_flash_fraction``."""
        return int(self.flash_bytes * self.usable_flash_fraction)

    @property
    def ram_budget_bytes(self) -> int:
        """RAM available to arena + runtime: ``ram_bytes × usable_ram_fraction``."""
        return int(self.ram_bytes * self.usable_ram_fraction)

    @property
    def has_optimized_kernels(self) -> bool:
        return self.optimized_kernels != "none"

    @property
    def arduino_core(self) -> Optional[str]:
        """Architecture of the board's Arduino core (``mbed_nano``, ``esp32``…), from its FQBN."""
        parts = (self.fqbn or "").split(":")
        return parts[1] if len(parts) >= 3 else None

    @property
    def platformio_env(self) -> str:
        """The ``[env:…]`` name of this board in a generated ``platformio.ini``: its id."""
        return self.id

    def arena_allocation(self, size: int) -> Optional[str]:
        """How firmware holds a ``size``-byte arena here: ``"static"``, ``"heap"``, or None when neither fits."""
        if self.static_arena_max_bytes is None or size <= self.static_arena_max_bytes:
            return "static"
        if self.heap_arena_max_bytes is None or size <= self.heap_arena_max_bytes:
            return "heap"
        return None

    def coefficient(self, op_class: str, *, optimized: bool = True) -> float:
        """Cycles per MAC of ``op_class`` with optimized (if any) or reference kernels."""
        kind = "optimized" if optimized and self.has_optimized_kernels else "reference"
        return float(self.cycles_per_mac[kind][op_class])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the profile."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["cycles_per_mac"] = {k: dict(v) for k, v in self.cycles_per_mac.items()}
        d["sources"] = dict(self.sources)
        d["cycles_per_instruction"] = dict(self.cycles_per_instruction)
        d["flash_budget_bytes"] = self.flash_budget_bytes
        d["ram_budget_bytes"] = self.ram_budget_bytes
        return d


def _bad(src: str, what: str) -> BoardError:
    return BoardError(f"Invalid board file {src}: {what}. See docs/boards.md for the format.")


def _num(d: Mapping[str, Any], key: str, src: str, *, integer: bool = False, lo: float = 0.0,
         hi: Optional[float] = None, lo_open: bool = True) -> Any:
    if key not in d:
        raise _bad(src, f"missing `{key}`")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _bad(src, f"`{key}` must be {'an integer' if integer else 'a number'}, got {v!r}")
    if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
        rng = f"({lo}, {hi}]" if hi is not None else f"> {lo}" if lo_open else f">= {lo}"
        raise _bad(src, f"`{key}` must be {rng}, got {v!r}")
    return v


def _str(d: Mapping[str, Any], key: str, src: str, *, required: bool = True) -> Optional[str]:
    v = d.get(key)
    if v is None:
        if required:
            raise _bad(src, f"missing `{key}`")
        return None
    if not isinstance(v, str) or (required and not v.strip()):
        raise _bad(src, f"`{key}` must be a non-empty string, got {v!r}")
    return v or None


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"`` (None when absent)."""
    for part in dotted.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _firmware_facts(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The toolchain ids, aliases and ``[firmware]`` table of a profile, validated (Board's fields)."""
    facts: dict[str, Any] = {key: _str(data, key, source, required=False)
                             for key in ("fqbn", "platformio_board", "platformio_platform", "idf_target")}
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise _bad(source, f"`aliases` must be a list of names, got {aliases!r}")
    fw = data.get("firmware", {})
    if not isinstance(fw, Mapping):
        raise _bad(source, "`firmware` must be a table with targets, baud and native_usb")
    targets = fw.get("targets", [])
    if not isinstance(targets, list) or any(t not in FIRMWARE_TARGETS for t in targets):
        raise _bad(source, f"[firmware] `targets` must be a list of {', '.join(FIRMWARE_TARGETS)}, got {targets!r}")
    for target in targets:
        missing = [key for key in TARGET_FACTS[target] if not facts[key]]
        if missing:
            raise _bad(source, f"[firmware] targets lists {target!r}, which needs "
                               + " and ".join(f"`{key}`" for key in missing) + "; add it or drop the target")
    baud = int(_num(fw, "baud", f"{source} [firmware]", integer=True)) if "baud" in fw else DEFAULT_BAUD
    native_usb = fw.get("native_usb", False)
    if not isinstance(native_usb, bool):
        raise _bad(source, f"[firmware] `native_usb` must be true or false, got {native_usb!r}")
    return {**facts, "aliases": tuple(aliases), "firmware_targets": tuple(dict.fromkeys(targets)),
            "baud": baud, "native_usb": native_usb}


def board_from_dict(data: Mapping[str, Any], *, source: str = "<dict>",
                    require_sources: bool = False) -> Board:
    """Validate a parsed profile and build a :class:`Board`.

    Args:
        data: The parsed TOML document.
        source: Where it came from (for messages).
        require_sources: Demand a ``[sources]`` entry for every figure
            (shipped profiles must have them; user files may omit them).

    Raises:
        BoardError: A field is missing or out of range (the message names it).
    """
    if not isinstance(data, Mapping):
        raise _bad(source, "the document is not a table")
    bid = _str(data, "id", source)
    tflm = data.get("tflm_supported", True)
    if not isinstance(tflm, bool):
        raise _bad(source, f"`tflm_supported` must be true or false, got {tflm!r}")
    reason = data.get("tflm_unsupported_reason", "") or ""
    if not tflm and not str(reason).strip():
        raise _bad(source, "`tflm_unsupported_reason` is required when tflm_supported = false")
    kernels = data.get("optimized_kernels", "none")
    if kernels not in OPTIMIZED_KERNELS:
        raise _bad(source, f"`optimized_kernels` must be one of {', '.join(OPTIMIZED_KERNELS)}, "
                           f"got {kernels!r}")
    runtime = data.get("runtime", {})
    if not isinstance(runtime, Mapping):
        raise _bad(source, "`runtime` must be a table with flash_bytes and ram_bytes")
    cpm_in = data.get("cycles_per_mac", {})
    if not isinstance(cpm_in, Mapping):
        raise _bad(source, "`cycles_per_mac` must be a table of [cycles_per_mac.reference/optimized]")
    cpm: dict[str, Mapping[str, float]] = {}
    for kind in KERNELS:
        table = cpm_in.get(kind)
        if table is None and kind == "optimized" and kernels == "none":
            table = cpm_in.get("reference")
        if table is None and not tflm:
            table = {c: 1.0 for c in OP_CLASSES}
        if not isinstance(table, Mapping):
            raise _bad(source, f"missing table [cycles_per_mac.{kind}] with {', '.join(OP_CLASSES)}")
        cpm[kind] = MappingProxyType({c: float(_num(table, c, f"{source} [cycles_per_mac.{kind}]"))
                                      for c in OP_CLASSES})
    srcs = data.get("sources", {})
    if not isinstance(srcs, Mapping) or not all(isinstance(v, str) for v in srcs.values()):
        raise _bad(source, "`sources` must be a table of figure = \"public source\" strings")
    if require_sources:
        needed = [k for k in SOURCED_FIGURES + tuple(k for k in SOURCED_IF_PRESENT if _lookup(data, k))
                  if not str(srcs.get(k, "")).strip()]
        if not tflm:
            needed = [k for k in needed if k in ("flash_bytes", "ram_bytes", "clock_hz")]
        if needed:
            raise _bad(source, f"no source given for {', '.join(needed)} in [sources]")
    cpi_in = data.get("cycles_per_instruction", {})
    if not isinstance(cpi_in, Mapping):
        raise _bad(source, f"`cycles_per_instruction` must be a table with {', '.join(OP_CLASSES)}")
    cpi = ({c: float(_num(cpi_in, c, f"{source} [cycles_per_instruction]")) for c in OP_CLASSES}
           if cpi_in else {})
    arena_in = data.get("arena", {})
    if not isinstance(arena_in, Mapping):
        raise _bad(source, "`arena` must be a table with static_max_bytes and/or heap_max_bytes")
    arena_max = {k: int(_num(arena_in, k, f"{source} [arena]", integer=True)) if k in arena_in else None
                 for k in ("static_max_bytes", "heap_max_bytes")}
    emulator = _str(data, "emulator", source, required=False)
    if emulator is not None and emulator not in EMULATORS:
        raise _bad(source, f"`emulator` must be one of {', '.join(EMULATORS)}, got {emulator!r}")
    firmware = _firmware_facts(data, source)
    return Board(
        id=bid,
        name=_str(data, "name", source),
        mcu=_str(data, "mcu", source),
        core=_str(data, "core", source),
        clock_hz=int(_num(data, "clock_hz", source, integer=True)),
        flash_bytes=int(_num(data, "flash_bytes", source, integer=True)),
        ram_bytes=int(_num(data, "ram_bytes", source, integer=True)),
        usable_flash_fraction=float(_num(data, "usable_flash_fraction", source, hi=1.0)),
        usable_ram_fraction=float(_num(data, "usable_ram_fraction", source, hi=1.0)),
        optimized_kernels=kernels,
        runtime_flash_bytes=int(_num(runtime, "flash_bytes", f"{source} [runtime]", integer=True,
                                     lo_open=False)),
        runtime_ram_bytes=int(_num(runtime, "ram_bytes", f"{source} [runtime]", integer=True, lo_open=False)),
        cycles_per_mac=MappingProxyType(cpm),
        per_op_overhead_cycles=float(_num(data, "per_op_overhead_cycles", source, lo_open=False)),
        tflm_supported=tflm,
        tflm_unsupported_reason=str(reason),
        **firmware,
        emulator=emulator,
        static_arena_max_bytes=arena_max["static_max_bytes"],
        heap_arena_max_bytes=arena_max["heap_max_bytes"],
        cycles_per_instruction=MappingProxyType(cpi),
        sources=MappingProxyType(dict(srcs)),
        notes=str(data.get("notes", "")),
        path=source,
    )


def load_board_file(path: str | os.PathLike, *, require_sources: bool = False) -> Board:
    """Load and validate a board profile from a TOML file.

    Args:
        path: The ``.toml`` file.
        require_sources: Demand a source for every figure (as shipped boards do).

    Returns:
        The :class:`Board`.

    Raises:
        BoardError: The file is missing, not TOML, or not a valid profile.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise BoardError(f"Board file not found: {p}. Pass the path of a board profile .toml file "
                         "(see docs/boards.md).")
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BoardError(f"Invalid board file {p}: not valid TOML ({e}). "
                         "See docs/boards.md for the format.") from None
    return board_from_dict(data, source=p, require_sources=require_sources)


_CACHE: dict[str, Board] = {}
_NAMES: dict[str, str] = {}


def list_boards() -> list[str]:
    """Ids of the shipped board profiles, sorted."""
    return sorted(f[:-5] for f in os.listdir(_DIR) if f.endswith(".toml"))


def _names() -> dict[str, str]:
    """Lower-case id or alias → id, over the shipped profiles."""
    if not _NAMES:
        for bid in list_boards():
            for name in (bid, *get(bid).aliases):
                _NAMES.setdefault(name.lower(), bid)
    return _NAMES


def get(identifier: str | os.PathLike | Board) -> Board:
    """Return a board profile: a shipped one by id or alias, or one loaded from a ``.toml`` path.

    Ids and aliases are case-insensitive (``"ESP32-S3"`` is ``esp32s3``); a
    :class:`Board` is returned as is; a path (an ``os.PathLike`` or a string
    ending in ``.toml``) is loaded with :func:`load_board_file`.

    Raises:
        BoardError: Unknown id; the message lists the known ones. Or a bad board file.
    """
    if isinstance(identifier, Board):
        return identifier
    if isinstance(identifier, os.PathLike) or (isinstance(identifier, str) and identifier.endswith(".toml")):
        return load_board_file(identifier)
    known = list_boards()
    if isinstance(identifier, str) and identifier not in known:
        identifier = _names().get(identifier.strip().lower(), identifier)
    if not isinstance(identifier, str) or identifier not in known:
        raise BoardError(f"Unknown board {identifier!r}. Known boards: {', '.join(known)} "
                         "(or pass your own profile with --board-file).")
    if identifier not in _CACHE:
        board = load_board_file(os.path.join(_DIR, identifier + ".toml"), require_sources=True)
        if board.id != identifier:
            raise BoardError(f"Board file {identifier}.toml declares id {board.id!r}; the id must match the "
                             "file name.")
        _CACHE[identifier] = board
    return _CACHE[identifier]


def all_boards() -> list[Board]:
    """Every shipped board profile, sorted by id."""
    return [get(b) for b in list_boards()]


__all__ = ["Board", "FIRMWARE_TARGETS", "OP_CLASSES", "TARGET_FACTS", "all_boards", "board_from_dict", "get",
           "list_boards", "load_board_file"]
