"""What ``fit`` records: one :class:`Trial` per candidate and the :class:`FitResult` of a search.

A trial's record is kept in the study (``user_attrs["trial"]``) as
:meth:`Trial.to_dict`, so a resumed study reads every earlier candidate back
with :meth:`Trial.from_dict`; the trained student and its ``.tflite`` are kept
beside the study (:func:`save_trial`, :func:`load_trial_tflite`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from edgekd._io import atomic_save, atomic_write_bytes
from edgekd.check.budgets import Budgets

__all__ = ["FitResult", "Trial", "load_trial_tflite", "save_trial", "trial_path"]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate: what it is, what the profile predicted, what was measured.

    The ``est_*`` figures are estimates from the Keras profile before
    training; ``flash_bytes``, ``ram_bytes`` and ``arena_bytes`` are measured on
    the int8 model (its bytes, TFLM's arena); ``latency_ms`` is the board's
    latency model on the int8 graph (an estimate, not a timing).
    """

    number: int
    state: str  # "passed", "over_budget", "infeasible", "pruned", "failed"
    arch: str
    width: float
    resolution: float
    depth: int
    temperature: float
    input_shape: tuple[int, ...]
    params: int
    macs: int
    est_flash_bytes: int
    est_ram_bytes: int
    est_latency_ms: float
    violations: tuple[str, ...] = ()  # budgets the estimate (infeasible) or measurement broke
    flash_bytes: Optional[int] = None  # measured: .tflite + runtime
    ram_bytes: Optional[int] = None  # measured: TFLM arena + runtime
    latency_ms: Optional[float] = None  # board estimate from the int8 graph
    float_accuracy: Optional[float] = None  # validation
    int8_accuracy: Optional[float] = None  # validation, LiteRT
    epochs_run: int = 0
    note: str = ""
    arena_bytes: Optional[int] = None  # measured: TFLM arena (host), as `edgekd check` bisects it
    key: str = ""  # what is trained (architecture + input shape + temperature): equal keys, identical candidates

    @property
    def trained(self) -> bool:
        return self.epochs_run > 0

    @property
    def repeat_of(self) -> Optional[int]:
        """The trial whose result this one reuses (an identical candidate), or None."""
        if self.note.startswith("same as trial "):
            return int(self.note.split()[3])
        return None

    @property
    def spec(self) -> str:
        return (f"{self.arch}:width={self.width:g},resolution={self.resolution:g},depth={self.depth}"
                f" T={self.temperature:g}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["violations"] = list(self.violations)
        d["spec"] = self.spec
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Trial":
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["input_shape"] = tuple(kw.get("input_shape", ()))
        kw["violations"] = tuple(kw.get("violations", ()))
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of a search.

    ``best_tflite`` is the chosen student's int8 model (with its measured arena
    attached when the model object carries one); ``best_model`` its Keras model
    (None when it was chosen in an earlier run of a resumed study).
    """

    board: Any
    budgets: Budgets
    arch: str
    trials: tuple[Trial, ...]
    best: Optional[Trial]
    best_tflite: Optional[bytes]
    best_model: Any
    teacher_accuracy: Optional[float]
    teacher_profile: Any
    trainings: int  # trials trained in *this* call
    interrupted: bool = False
    test_accuracy: Optional[dict[str, float]] = None
    comparison: Optional[dict[str, dict[str, Any]]] = None  # "teacher"/"student" -> figures on the test split
    best_keras: Optional[bytes] = None  # the chosen student's .keras as stored with its trial (the report copies it)
    study_name: Optional[str] = None

    def summary(self) -> dict[str, Any]:
        return {
            "board": self.board.id,
            "arch": self.arch,
            "budgets": self.budgets.to_dict(),
            "teacher_accuracy": self.teacher_accuracy,
            "best": self.best.to_dict() if self.best else None,
            "test_accuracy": self.test_accuracy,
            "comparison": self.comparison,
            "trials": [t.to_dict() for t in self.trials],
            "interrupted": self.interrupted,
            "study": self.study_name,
        }


def trial_path(artifacts_dir: str | os.PathLike, number: int, ext: str) -> str:
    """Where trial ``number``'s ``.tflite`` or ``.keras`` is kept."""
    return os.path.join(os.fspath(artifacts_dir), f"trial_{number:04d}.{ext}")


def save_trial(artifacts_dir: str | os.PathLike, number: int, student: Any, tflite: bytes) -> None:
    """Keep a trained trial's ``.tflite`` and ``.keras`` (the atomic writers every verb uses)."""
    atomic_write_bytes(trial_path(artifacts_dir, number, "tflite"), bytes(tflite))
    atomic_save(trial_path(artifacts_dir, number, "keras"), student.save)


def load_trial_tflite(artifacts_dir: Optional[str], number: int) -> Optional[bytes]:
    """A kept trial's ``.tflite`` bytes, or None."""
    path = trial_path(artifacts_dir, number, "tflite") if artifacts_dir else None
    if path is None or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()
