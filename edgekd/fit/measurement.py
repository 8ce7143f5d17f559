"""One candidate of ``fit``: build it, estimate it, train it, convert it and measure it with ``check``.

Everything here works on one student at a time; :mod:`edgekd.fit.search`
decides which students to try. The figures come from the stages the verbs
use: :func:`edgekd.check.budgets.estimate` before training,
:func:`edgekd.distill.distill` to train, :func:`edgekd.convert.convert` and
:func:`edgekd.check.check` (the TFLM arena, bisected once per candidate) after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Optional

import numpy as np

import edgekd.distill  # called as edgekd.distill.distill: the tests count trainings by wrapping it
from edgekd import _tmp, students
from edgekd.check import check
from edgekd.check.budgets import Budgets, Estimate, estimate
from edgekd.convert import convert, evaluate_conversion, load_model
from edgekd.convert.runtime import predict
from edgekd.datasets import Split, resize, validate
from edgekd.errors import DataError, EdgeKDError
from edgekd.model import ConvertedModel

from .records import Trial, save_trial

__all__ = ["Measurement", "Setup", "build_student", "check_data", "check_teacher_data", "compare", "estimate",
           "load_student", "measure", "resize", "student_key", "train_and_measure"]


def build_student(arch: str, teacher: Any, input_shape: tuple[int, ...], num_classes: int, width: float,
                  resolution: float, depth: int) -> Any:
    """The (untrained) Keras student of one point of the search space."""
    if arch == "shrink":
        return students.shrink(teacher, width=width, resolution=resolution, separable=True,
                               depth=None if depth >= 4 else depth, upsample=resolution > 1)
    return students.get(arch)(input_shape=input_shape, num_classes=num_classes, width=width,
                              resolution=resolution, depth=depth)


def load_student(path: Optional[str]) -> Any:
    """A student kept with its trial (``trials/trial_N.keras``), or None when it is missing or does not load."""
    if path is None or not os.path.isfile(path):
        return None
    try:
        return load_model(path)
    except EdgeKDError:  # kept by an older edgekd, or damaged: the report then lacks the float accuracy
        return None


def student_key(student: Any, temperature: float) -> str:
    """What training sees: the layers' configurations (names aside), the input shape and the temperature.

    Two points of the search space can build the same network (channel counts
    are rounded up to a multiple of 8, so ``small_cnn`` at width 0.25 and 0.5
    are one network); equal keys mean identical candidates, trained once.
    """
    layers = [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
              for layer in student.layers]
    blob = json.dumps([list(student.inputs[0].shape[1:]), layers, float(temperature)], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_data(x: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A labelled split, validated as every verb validates one (raises DataError)."""
    if x is None or y is None:
        raise DataError(f"{name} needs inputs and labels (fit ranks students by labelled int8 accuracy).")
    split = validate(Split(x, y, name))
    return split.x, split.y


def check_teacher_data(teacher: Any, x_tr: np.ndarray, y_tr: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                       test: Optional[tuple[np.ndarray, np.ndarray]] = None) -> None:
    """Inputs shaped like the teacher's input, labels within its classes (raises DataError)."""
    input_shape = tuple(int(d) for d in teacher.inputs[0].shape[1:])
    splits = [("Training", x_tr, y_tr), ("Validation", x_val, y_val)] + ([("Test", *test)] if test else [])
    for name, x, y in splits:
        if tuple(x.shape[1:]) != input_shape:
            raise DataError(f"{name} inputs have shape {tuple(x.shape[1:])} but the teacher takes {input_shape}. "
                            "Pass data shaped like the teacher's input.")
        validate(Split(x, y, name), num_classes=int(teacher.outputs[0].shape[-1]))


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every candidate of one search shares."""

    teacher: Any
    arch: str
    board: Any
    budgets: Budgets
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    epochs: int
    batch_size: int
    alpha: float
    seed: int
    verbose: int
    artifacts_dir: Optional[str]
    engine: str = "interpreter"  # what the flash and RAM budgets are measured for (check's `engine`)
    recipe: Optional[str] = None  # distill's recipe for every candidate ("patient")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.teacher.inputs[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.teacher.outputs[0].shape[-1])


@dataclasses.dataclass(frozen=True)
class Measurement:
    """An int8 model measured by ``check``: flash, RAM and arena (None when TFLM failed), board latency."""

    model: ConvertedModel  # with its measured arena
    flash_bytes: int
    ram_bytes: Optional[int]
    arena_bytes: Optional[int]
    latency_ms: float
    failure: Optional[str] = None


def measure(tflite: Any, board: Any, budgets: Budgets, *, source_shape: Optional[tuple[int, ...]] = None,
            engine: str = "interpreter") -> Measurement:
    """Flash, RAM (TFLM's arena, bisected by :func:`edgekd.check.check`) and board latency of an int8 model.

    With ``engine="compiled"``, flash and RAM are the compiled engine's, linked (``check``'s ``engine``).
    The measured model is the model object with its arena (and ``source_shape``, the teacher's input, which
    the student's inputs are resized from).
    """
    rep = check(tflite, board=board, max_flash=budgets.flash_bytes, max_ram=budgets.ram_bytes,
                max_latency_ms=budgets.latency_ms, host_latency=False, engine=engine)
    failure = rep.arena.failure or rep.inference_failure
    arena = rep.arena.arena_bytes if failure is None else None
    # check's model carries the arena it bisected: firmware.render takes it from there instead of bisecting again
    model = rep.model.with_(source_shape=source_shape)
    flash = int(rep.model_bytes + rep.runtime_flash_bytes)
    ram = None if arena is None else int(arena + rep.runtime_ram_bytes)
    if rep.compiled is not None:
        flash, ram = rep.compiled.flash_bytes, rep.compiled.ram_bytes
    return Measurement(model, flash, ram, arena, float(rep.board_latency.total_ms),
                       failure.message if failure else None)


def _pruning_callback(trial: Any, xv: np.ndarray, y_val: np.ndarray) -> Any:
    """A Keras callback reporting validation accuracy to Optuna each epoch; stops training when pruned.

    ``xv`` is the validation set already at the student's input shape.
    """
    import keras  # TensorFlow: loaded when a candidate is trained, not by `import edgekd.fit`

    class _Pruning(keras.callbacks.Callback):
        pruned = False

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            student = getattr(self.model, "student", self.model)
            acc = float(np.mean(np.asarray(student.predict(xv, verbose=0)).argmax(-1) == y_val))
            if len(trial.study.directions) == 1:
                trial.report(acc, epoch)
                if trial.should_prune():
                    self.pruned = True
                    self.model.stop_training = True

    return _Pruning()


def train_and_measure(setup: Setup, ot: Any, student: Any, base: dict[str, Any]) -> tuple[Trial, Optional[tuple]]:
    """Distil ``student`` (Optuna trial ``ot`` may prune it), convert it to int8 and measure it.

    Returns:
        The :class:`Trial` and, when it was measured, ``(trained student, measured model)``.
        A candidate that raises is recorded as ``failed`` (the caller counts failures).
    """
    (x_tr, y_tr), (x_val, y_val) = setup.train, setup.val
    s_shape, temperature = tuple(base["input_shape"]), base["temperature"]
    xv = resize(x_val, s_shape)
    callback = _pruning_callback(ot, xv, y_val)
    _tmp.checkpoint("fit:train")
    res = edgekd.distill.distill(setup.teacher, student, x=x_tr, y=y_tr, epochs=setup.epochs,
                                 batch_size=setup.batch_size, temperature=temperature, alpha=setup.alpha,
                                 cache_teacher="auto", callbacks=[callback], seed=setup.seed + ot.number,
                                 recipe=setup.recipe,
                                 verbose=setup.verbose)
    epochs_run = len(res.history.get("loss", [])) or setup.epochs
    student = res.student
    float_acc = float(np.mean(np.asarray(student.predict(xv, verbose=0)).argmax(-1) == y_val))
    trained = dict(base, float_accuracy=float_acc, epochs_run=epochs_run)
    if callback.pruned:
        return Trial(state="pruned", note=f"pruned after epoch {epochs_run}", **trained), None
    # the compiled engine calls Chirale's CMSIS-NN FULLY_CONNECTED, which is per-tensor only: per-tensor Dense
    dense = {"per_channel_dense": False} if setup.engine == "compiled" else {}
    tfl = convert(student, mode="int8", representative_data=resize(x_tr, s_shape), **dense)
    rep = evaluate_conversion(student, tfl, xv, y_val, max_accuracy_drop=None)
    m = measure(tfl, setup.board, setup.budgets, source_shape=setup.input_shape, engine=setup.engine)
    viol = setup.budgets.violations(m.flash_bytes, m.ram_bytes, m.latency_ms)
    t = Trial(state="passed" if not viol else "over_budget", violations=viol, flash_bytes=m.flash_bytes,
              ram_bytes=m.ram_bytes, arena_bytes=m.arena_bytes, latency_ms=m.latency_ms,
              int8_accuracy=rep.tflite_accuracy, note=f"TFLM: {m.failure}" if m.failure else "", **trained)
    if setup.artifacts_dir:
        save_trial(setup.artifacts_dir, ot.number, student, tfl)
    return t, (student, m.model)


def compare(teacher: Any, best: Trial, board: Any, x_tr: np.ndarray, test: tuple[np.ndarray, np.ndarray],
            test_acc: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Teacher vs chosen student: size, cost and accuracy, side by side (test split).

    Each row's ``estimated`` lists the figures that are estimates rather than
    measurements: the teacher's RAM is its profile's peak activations plus the
    runtime (its TFLM arena is not measured), its flash too when it does not
    convert; latency is the board's latency model for both.
    """
    est: Estimate = estimate(teacher, board)
    teacher_row: dict[str, Any] = {"params": int(est.profile.params), "macs": int(est.profile.macs),
                                   "flash_bytes": est.flash_bytes, "ram_bytes": est.ram_bytes,
                                   "latency_ms": est.latency_ms, "float_accuracy": test_acc["teacher"],
                                   "int8_accuracy": None, "measured": False,
                                   "estimated": ["flash_bytes", "ram_bytes", "latency_ms"]}
    try:
        tfl = convert(teacher, mode="int8", representative_data=x_tr)
        teacher_row["int8_accuracy"] = float(np.mean(predict(tfl, test[0]).argmax(-1) == test[1]))
        teacher_row["flash_bytes"] = len(bytes(tfl)) + int(board.runtime_flash_bytes)
        teacher_row["estimated"].remove("flash_bytes")
    except Exception:  # a teacher need not be convertible
        pass
    student_row = {"params": best.params, "macs": best.macs, "flash_bytes": best.flash_bytes,
                   "ram_bytes": best.ram_bytes, "latency_ms": best.latency_ms,
                   "float_accuracy": test_acc.get("float"), "int8_accuracy": test_acc["int8"], "measured": True,
                   "estimated": ["latency_ms"]}
    return {"teacher": teacher_row, "student": student_row}
