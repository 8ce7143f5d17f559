"""``edgekd.fit``: the most accurate distilled student that fits a board.

The search joins the pipeline: for each candidate (student family × width ×
resolution × depth × temperature) it

1. builds the student and **profiles it before any training** — params, MACs,
   int8 flash, peak RAM and the board's latency estimate; a candidate that
   cannot meet the budgets is recorded as ``infeasible`` and never trained;
2. distils it from the teacher (teacher logits cached), with Optuna's pruner
   stopping trials whose validation accuracy lags;
3. converts it to full int8, measures it with the real TFLM arena and the
   board's latency model (:func:`edgekd.check.check`), and scores it by int8
   validation accuracy.

Optuna drives the search (TPE with budget constraints by default, NSGA-II for
an accuracy/latency Pareto front), so a study can live in shared storage and
be resumed, or be run by many workers at once. Computation returns a
:class:`FitResult`; :func:`write_report` writes ``trials.csv``/``trials.json``,
``pareto.png`` and the chosen model's export.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgekd import _tmp, boards as _boards
from edgekd.errors import InvalidArgumentError, invalid_value

__all__ = ["ARCHS", "Budgets", "FitResult", "Trial", "SearchSpace", "binding_budget", "comparison_table", "fit",
           "write_report"]

ARCHS = ("ds_cnn", "mobilenet_v1", "small_cnn", "shrink")
STUDY_NAME = "edgekd-fit"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The values the search may pick (categorical, so studies resume exactly)."""

    width: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    resolution: tuple[float, ...] = (0.5, 0.75, 1.0)
    depth: tuple[int, ...] = (1, 2, 3, 4)
    temperature: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Resolved budgets, in bytes and milliseconds."""

    flash_bytes: int
    ram_bytes: int
    latency_ms: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One candidate: what it is, what the profile predicted, what was measured."""

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

    @property
    def trained(self) -> bool:
        return self.epochs_run > 0

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
    """The outcome of a search."""

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
        }


def binding_budget(trials: Sequence[Trial], budgets: Budgets) -> str:
    """A sentence naming the budget that bound the search when no candidate passed."""
    names = {"flash": ("flash", budgets.flash_bytes, "est_flash_bytes", "flash_bytes"),
             "ram": ("RAM", budgets.ram_bytes, "est_ram_bytes", "ram_bytes"),
             "latency": ("latency", budgets.latency_ms, "est_latency_ms", "latency_ms")}
    considered = [t for t in trials if t.state in ("infeasible", "over_budget")]
    if not considered:
        return "no candidate completed; run more --trials."
    counts = {k: sum(k in t.violations for t in considered) for k in names}
    key = max(counts, key=lambda k: counts[k])
    label, limit, est, meas = names[key]
    best = min((getattr(t, meas) if getattr(t, meas) is not None else getattr(t, est)) for t in considered)
    unit = (lambda v: f"{v / 1024:.1f} KB") if key != "latency" else (lambda v: f"{v:.2f} ms")
    flag = {"flash": "--max-flash", "ram": "--max-ram", "latency": "--max-latency-ms"}[key]
    every = "every one" if counts[key] == len(considered) else f"{counts[key]}"
    return (f"the {label} budget ({unit(limit)}) was exceeded by {every} of the {len(considered)} candidates; "
            f"the smallest needed {unit(best)}. Raise {flag}, pick a smaller --arch, or widen the search.")


# ----------------------------------------------------------------------------------------------
# building and estimating candidates


def _build(arch: str, teacher: Any, input_shape: tuple[int, ...], num_classes: int, width: float,
           resolution: float, depth: int) -> Any:
    from edgekd import students

    if arch == "shrink":
        return students.shrink(teacher, width=width, resolution=resolution, separable=True,
                               depth=None if depth >= 4 else depth, upsample=resolution > 1)
    builder = students.get(arch)
    return builder(input_shape=input_shape, num_classes=num_classes, width=width, resolution=resolution,
                   depth=depth)


def _estimate(model: Any, board: Any) -> tuple[Any, int, int, float]:
    """Profile a Keras student: (profile, flash bytes, RAM bytes, board latency ms), all before training."""
    from edgekd.check.latency import costs_from_profile, estimate_board_latency
    from edgekd.profile import profile

    p = profile(model)
    # Keras layers that vanish in the int8 graph (folded BatchNorm, Dropout) carry no per-op overhead
    costs = [c for c in costs_from_profile(p) if c.macs > 0 or c.op_class != "other"]
    lat = estimate_board_latency(costs, board)
    flash = int(p.flash_int8_bytes) + int(board.runtime_flash_bytes)
    ram = int(p.peak_ram_bytes) + int(board.runtime_ram_bytes)
    return p, flash, ram, float(lat.total_ms)


def _violations(flash: float, ram: float, latency: Optional[float], budgets: Budgets) -> tuple[str, ...]:
    v = []
    if flash > budgets.flash_bytes:
        v.append("flash")
    if ram > budgets.ram_bytes:
        v.append("ram")
    if budgets.latency_ms is not None and latency is not None and latency > budgets.latency_ms:
        v.append("latency")
    return tuple(v)


def _constraint_values(t: Trial, budgets: Budgets) -> list[float]:
    """Optuna constraints (≤ 0 feasible): relative excess over each budget."""
    flash = t.flash_bytes if t.flash_bytes is not None else t.est_flash_bytes
    ram = t.ram_bytes if t.ram_bytes is not None else t.est_ram_bytes
    lat = t.latency_ms if t.latency_ms is not None else t.est_latency_ms
    out = [flash / budgets.flash_bytes - 1.0, ram / budgets.ram_bytes - 1.0]
    out.append(lat / budgets.latency_ms - 1.0 if budgets.latency_ms else -1.0)
    return out


# ----------------------------------------------------------------------------------------------
# the search


def _resolve_budgets(board: Any, max_flash: Any, max_ram: Any, max_latency_ms: Optional[float]) -> Budgets:
    from edgekd.check.core import parse_size

    flash = parse_size(max_flash, name="max_flash") if max_flash is not None else board.flash_budget_bytes
    ram = parse_size(max_ram, name="max_ram") if max_ram is not None else board.ram_budget_bytes
    if max_latency_ms is not None and (not isinstance(max_latency_ms, (int, float)) or max_latency_ms <= 0):
        raise invalid_value("max_latency_ms", "a positive number of milliseconds", max_latency_ms)
    return Budgets(int(flash), int(ram), float(max_latency_ms) if max_latency_ms is not None else None)


def check_storage(storage: Any, *, will_create: Optional[str] = None) -> Optional[str]:
    """Check an Optuna storage URL before anything is created; returns the sqlite file's path, if any.

    Checked without connecting: the URL parses, SQLAlchemy knows the
    database and its driver is installed, and for sqlite the database file is
    a writable file in an existing writable directory (or ``will_create``,
    a directory the caller creates first).

    Raises:
        InvalidArgumentError: Not a storage URL, or an unknown database.
        MissingExtraError: The database's driver is not installed.
        OutputError: The sqlite file or its directory cannot be written.
    """
    from edgekd.errors import MissingExtraError, OutputError

    expected = "an Optuna storage URL such as sqlite:///study.db or postgresql://user:pass@host/db"
    if not isinstance(storage, str) or not storage.strip():
        raise invalid_value("storage", expected, storage)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(storage)
    except ArgumentError:
        raise invalid_value("storage", expected, storage) from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise InvalidArgumentError(f"Unknown database {url.drivername!r} in the storage URL {storage!r}. "
                                   "Use sqlite:///PATH, postgresql://… or mysql://… (SQLAlchemy URLs).") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise MissingExtraError(f"The storage URL {storage!r} needs the database driver {e.name or url.drivername}, "
                                "which is not installed. pip install it, or use sqlite:///PATH.") from None
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise InvalidArgumentError(f"The storage URL {storage!r} is an in-memory sqlite database, which cannot "
                                   "be resumed. Use sqlite:///PATH or omit the storage.")
    path = os.path.abspath(url.database)
    if os.path.isdir(path):
        raise OutputError(f"The sqlite storage {path} is a directory. Name a database file, e.g. "
                          f"sqlite:///{os.path.join(path, 'study.db')}.")
    parent = os.path.dirname(path)
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"Cannot write the sqlite storage {path}. Choose a database file you can write.")
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            raise InvalidArgumentError(f"The storage {path} exists and is not an sqlite database. Choose another "
                                       "path (or output directory); edgekd does not overwrite it.")
    elif parent != (os.path.abspath(will_create) if will_create else None):
        probe = parent
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
            raise OutputError(f"Cannot create the sqlite storage {url.database}: {probe} is not a writable "
                              "directory. Choose another path.")
        if probe != parent:
            raise OutputError(f"The directory of the sqlite storage {url.database} does not exist. Create it "
                              "first or choose another path.")
    return path


def _check_data(x: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    from edgekd.errors import DataError

    from edgekd.datasets import Split, validate_split

    if x is None or y is None:
        raise DataError(f"{name} needs inputs and labels (fit ranks students by labelled int8 accuracy).")
    split = validate_split(Split(x, y), source=name)
    return split.x, split.y


def check_teacher_data(teacher: Any, x_tr: np.ndarray, y_tr: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                       test: Optional[tuple[np.ndarray, np.ndarray]] = None) -> None:
    """Inputs shaped like the teacher's input, labels within its classes (raises DataError)."""
    from edgekd.datasets import check_labels
    from edgekd.errors import DataError

    input_shape = tuple(int(d) for d in teacher.inputs[0].shape[1:])
    splits = [("Training", x_tr, y_tr), ("Validation", x_val, y_val)] + ([("Test", *test)] if test else [])
    for name, x, y in splits:
        if tuple(x.shape[1:]) != input_shape:
            raise DataError(f"{name} inputs have shape {tuple(x.shape[1:])} but the teacher takes {input_shape}. "
                            "Pass data shaped like the teacher's input.")
        check_labels(y, int(teacher.outputs[0].shape[-1]), source=f"{name} labels")


def fit(
    teacher: Any,
    *,
    train: tuple[Any, Any],
    val: tuple[Any, Any],
    board: str | Any,
    test: Optional[tuple[Any, Any]] = None,
    max_flash: Any = None,
    max_ram: Any = None,
    max_latency_ms: Optional[float] = None,
    arch: str = "ds_cnn",
    trials: int = 12,
    epochs: int = 10,
    batch_size: int = 64,
    alpha: float = 0.1,
    space: SearchSpace = SearchSpace(),
    objective: str = "accuracy",
    storage: Optional[str] = None,
    study_name: str = STUDY_NAME,
    artifacts_dir: Optional[str] = None,
    prune: bool = True,
    seed: int = 0,
    verbose: int = 0,
    on_trial: Optional[Callable[[Trial], None]] = None,
    max_failures: int = 3,
    safe_mode: bool = True,
) -> FitResult:
    """Search the most accurate distilled student that fits ``board``'s budgets.

    Args:
        teacher: A Keras model (logits or softmax output) or a model path.
        train: ``(x, y)`` transfer set (labels used with weight ``alpha``).
        val: ``(x, y)`` validation split: candidates are ranked by int8 accuracy on it.
        board: Board id or :class:`edgekd.boards.Board`.
        test: Optional ``(x, y)`` held-out split, reported for the chosen student.
        max_flash, max_ram, max_latency_ms: Budgets overriding the board's
            (bytes or ``"256KB"``; milliseconds of the board estimate).
        arch: Student family: ``ds_cnn``, ``mobilenet_v1``, ``small_cnn`` or
            ``shrink`` (derived from the teacher).
        trials: How many candidates to *train* in the study (a resumed
            study trains only the missing ones). Candidates rejected by their
            profile are not counted; at most ``max(5 * trials, 10)`` are
            proposed per call, and the search stops early once every point of
            ``space`` has been seen.
        epochs: Distillation epochs per trained candidate.
        batch_size: Batch size.
        alpha: Weight of the hard-label loss.
        space: The values searched.
        objective: ``"accuracy"`` (TPE, budgets as constraints) or ``"pareto"``
            (NSGA-II over int8 accuracy and board latency, budgets as constraints).
        storage: Optuna storage URL (``sqlite:///study.db``, or a shared
            PostgreSQL/MySQL URL so many workers search together). ``None``
            keeps the study in memory (no resume).
        study_name: Study name within the storage.
        artifacts_dir: Where each trained trial's ``.tflite`` is kept (needed to
            recover the chosen model when resuming).
        prune: Let Optuna's median pruner stop lagging trials early.
        seed: Sampler and training seed.
        verbose: Keras verbosity inside each trial.
        on_trial: Called with each finished :class:`Trial` (progress bars).
        max_failures: Stop after this many trials fail with an error.
        safe_mode: When ``teacher`` is a path: refuse a file that needs code
            to load (see :func:`edgekd.convert.load_model`).

    Returns:
        A :class:`FitResult`; ``best`` is None when no candidate passed every budget.
    """
    # --- validate everything first -------------------------------------------------------------
    if arch not in ARCHS:
        raise invalid_value("arch", f"one of {', '.join(ARCHS)}", arch)
    if objective not in ("accuracy", "pareto"):
        raise invalid_value("objective", "'accuracy' or 'pareto'", objective)
    for name, v in (("trials", trials), ("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise invalid_value(name, "a positive integer", v)
    if not 0.0 <= alpha <= 1.0:
        raise invalid_value("alpha", "a float in [0, 1]", alpha)
    brd = _boards.get(board) if not isinstance(board, _boards.Board) else board
    if not getattr(brd, "tflm_supported", True):
        raise InvalidArgumentError(
            f"Board {brd.id} cannot run TFLite Micro: {brd.tflm_unsupported_reason or 'unsupported'}. "
            "Pick another `board` (`edgekd boards` lists them).")
    budgets = _resolve_budgets(brd, max_flash, max_ram, max_latency_ms)
    x_tr, y_tr = _check_data(*train, "train")
    x_val, y_val = _check_data(*val, "val")
    if test is not None:
        test = _check_data(*test, "test")
    if storage is not None:
        check_storage(storage)

    import keras
    import optuna

    from edgekd.convert import convert, evaluate_conversion, load_model
    from edgekd.distill import distill
    from edgekd.distill.distiller import adapt_inputs
    from edgekd.profile import profile

    teacher = load_model(teacher, safe_mode=safe_mode)
    input_shape = tuple(int(d) for d in teacher.inputs[0].shape[1:])
    check_teacher_data(teacher, x_tr, y_tr, x_val, y_val, test)
    num_classes = int(teacher.outputs[0].shape[-1])
    if arch == "shrink":  # a teacher shrink cannot transform fails here, not in the first trial of a new study
        _build(arch, teacher, input_shape, num_classes, min(space.width), min(space.resolution), min(space.depth))
    t_logits = np.asarray(teacher.predict(x_val, verbose=0))
    teacher_acc = float(np.mean(t_logits.argmax(-1) == y_val))
    teacher_profile = profile(teacher)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if objective == "accuracy":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials))
        directions = ["maximize"]
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials)))
        directions = ["maximize", "minimize"]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, epochs // 3)) if prune \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    config = {"arch": arch, "board": brd.id, "budgets": budgets.to_dict(), "objective": objective,
              "input_shape": list(input_shape), "num_classes": num_classes, "epochs": epochs}
    previous = study.user_attrs.get("config")
    if previous is None:
        study.set_user_attr("config", config)
    elif previous != config:
        changed = sorted(k for k in config if previous.get(k) != config[k])
        raise InvalidArgumentError(
            f"The study in this output directory was run with different settings ({', '.join(changed)}). "
            "Use a new output directory, or the same settings to resume.")

    trainings = 0
    failures = 0
    models: dict[int, Any] = {}

    def objective_fn(ot: Any) -> Any:
        nonlocal trainings, failures
        width = ot.suggest_categorical("width", list(space.width))
        resolution = ot.suggest_categorical("resolution", list(space.resolution))
        depth = ot.suggest_categorical("depth", list(space.depth))
        temperature = ot.suggest_categorical("temperature", list(space.temperature))
        keras.utils.set_random_seed(seed + ot.number)
        student = _build(arch, teacher, input_shape, num_classes, width, resolution, depth)
        s_shape = tuple(int(d) for d in student.inputs[0].shape[1:])
        p, e_flash, e_ram, e_lat = _estimate(student, brd)
        base = dict(number=ot.number, arch=arch, width=width, resolution=resolution, depth=depth,
                    temperature=temperature, input_shape=s_shape, params=int(p.params), macs=int(p.macs),
                    est_flash_bytes=e_flash, est_ram_bytes=e_ram, est_latency_ms=e_lat)
        viol = _violations(e_flash, e_ram, e_lat, budgets)
        if viol:  # cannot meet the budgets: never trained
            return _finish(ot, Trial(state="infeasible", violations=viol, note="profile exceeds budget", **base))
        # a candidate already measured in this study (categorical spaces repeat): reuse it
        for prev in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if prev.params == ot.params and "trial" in prev.user_attrs and prev.number != ot.number:
                old = Trial.from_dict(prev.user_attrs["trial"])
                return _finish(ot, dataclasses.replace(old, number=ot.number, note=f"same as trial {prev.number}"))
        xv = np.asarray(adapt_inputs(x_val, s_shape))
        callback = _pruning_callback(ot, xv, y_val)
        trainings += 1
        _tmp.checkpoint("fit:train")
        try:
            res = distill(teacher, student, x=x_tr, y=y_tr, epochs=epochs, batch_size=batch_size,
                          temperature=temperature, alpha=alpha, cache_teacher=True, callbacks=[callback],
                          seed=seed + ot.number, verbose=verbose)
        except Exception as e:  # a candidate that breaks must not end the search
            failures += 1
            if failures >= max_failures:
                raise
            return _finish(ot, Trial(state="failed", note=f"{type(e).__name__}: {str(e)[:120]}", **base))
        epochs_run = len(res.history.get("loss", [])) or epochs
        student = res.student
        float_acc = float(np.mean(np.asarray(student.predict(xv, verbose=0)).argmax(-1) == y_val))
        if callback.pruned:
            return _finish(ot, Trial(state="pruned", float_accuracy=float_acc, epochs_run=epochs_run,
                                     note=f"pruned after epoch {epochs_run}", **base), pruned=True)
        xt = np.asarray(adapt_inputs(x_tr, s_shape))
        try:
            tfl = convert(student, mode="int8", representative_data=xt)
            rep = evaluate_conversion(student, tfl, xv, y_val, max_accuracy_drop=None)
            measured = _measure(tfl, brd, budgets)
        except Exception as e:
            failures += 1
            if failures >= max_failures:
                raise
            return _finish(ot, Trial(state="failed", float_accuracy=float_acc, epochs_run=epochs_run,
                                     note=f"{type(e).__name__}: {str(e)[:120]}", **base))
        flash, ram, lat, ok_tflm = measured
        viol = _violations(flash, ram, lat, budgets) + (() if ok_tflm else ("ram",))
        t = Trial(state="passed" if not viol else "over_budget", violations=viol, flash_bytes=flash, ram_bytes=ram,
                  latency_ms=lat, float_accuracy=float_acc, int8_accuracy=rep.tflite_accuracy,
                  epochs_run=epochs_run, **base)
        if artifacts_dir:
            from edgekd._io import atomic_save, atomic_write_bytes

            atomic_write_bytes(os.path.join(artifacts_dir, f"trial_{ot.number:04d}.tflite"), tfl)
            atomic_save(os.path.join(artifacts_dir, f"trial_{ot.number:04d}.keras"), student.save)
        models[ot.number] = (student, tfl)
        return _finish(ot, t)

    def _finish(ot: Any, t: Trial, pruned: bool = False) -> Any:
        ot.set_user_attr("trial", t.to_dict())
        for key, value in zip(("flash", "ram", "latency"), _constraint_values(t, budgets)):
            ot.set_constraint(key, value)  # ≤ 0 feasible; the samplers steer away from the rest
        if on_trial is not None:
            on_trial(t)
        if pruned:
            raise optuna.TrialPruned()
        acc = t.int8_accuracy if t.int8_accuracy is not None else 0.0
        if objective == "accuracy":
            return acc
        lat = t.latency_ms if t.latency_ms is not None else t.est_latency_ms
        return acc, lat

    # `trials` counts candidates that were *trained*: rejecting one by its profile costs milliseconds, so
    # infeasible proposals do not use up the budget. Proposals are bounded, and the search stops once
    # every point of the space has been seen.
    grid = len(space.width) * len(space.resolution) * len(space.depth) * len(space.temperature)
    max_proposals = max(5 * trials, 10)

    def trained_so_far() -> int:
        return sum(1 for t in study.trials if "trial" in t.user_attrs
                   and t.user_attrs["trial"].get("epochs_run", 0) > 0
                   and not str(t.user_attrs["trial"].get("note", "")).startswith("same as"))

    def seen() -> int:
        return len({tuple(sorted(t.params.items())) for t in study.trials if t.params})

    interrupted = False
    proposals = 0

    def stoppable(ot: Any) -> Any:
        # Ctrl-C / SIGTERM in a trial: end it as pruned (Optuna logs a failed trial with a traceback) and stop.
        nonlocal interrupted
        try:
            return objective_fn(ot)
        except KeyboardInterrupt:
            interrupted = True
            raise optuna.TrialPruned() from None

    try:
        while trained_so_far() < trials and proposals < max_proposals and not interrupted:
            study.optimize(stoppable, n_trials=1, catch=(), gc_after_trial=True)
            proposals += 1
            if seen() >= grid and all("trial" in t.user_attrs for t in study.trials):
                break  # the whole space has been explored
    except KeyboardInterrupt:
        interrupted = True

    records = [Trial.from_dict(t.user_attrs["trial"]) for t in study.trials if "trial" in t.user_attrs]
    records.sort(key=lambda t: t.number)
    # repeats of a candidate ("same as trial N") carry no model of their own
    passed = [t for t in records if t.state == "passed" and not t.note.startswith("same as")]
    best = max(passed, key=lambda t: (t.int8_accuracy or 0.0, -t.flash_bytes)) if passed else None
    best_tflite = best_model = None
    test_acc = None
    if best is not None:
        if best.number in models:
            best_model, best_tflite = models[best.number]
        elif artifacts_dir and os.path.isfile(os.path.join(artifacts_dir, f"trial_{best.number:04d}.tflite")):
            with open(os.path.join(artifacts_dir, f"trial_{best.number:04d}.tflite"), "rb") as f:
                best_tflite = f.read()
        if best_tflite is not None and test is not None:
            from edgekd.convert.runtime import predict

            xs = np.asarray(adapt_inputs(test[0], best.input_shape))
            test_acc = {"int8": float(np.mean(predict(best_tflite, xs).argmax(-1) == test[1])),
                        "teacher": float(np.mean(np.asarray(teacher.predict(test[0], verbose=0)).argmax(-1)
                                                 == test[1]))}
            if best_model is not None:
                test_acc["float"] = float(np.mean(np.asarray(best_model.predict(xs, verbose=0)).argmax(-1)
                                                  == test[1]))
    comparison = None
    if best is not None and test_acc is not None:
        comparison = _comparison(teacher, best, brd, x_tr, test, test_acc)
    return FitResult(brd, budgets, arch, tuple(records), best, best_tflite, best_model, teacher_acc,
                     teacher_profile, trainings, interrupted, test_acc, comparison)


def _comparison(teacher: Any, best: Trial, board: Any, x_tr: np.ndarray, test: tuple[np.ndarray, np.ndarray],
                test_acc: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Teacher vs chosen student: size, cost and accuracy, side by side (test split)."""
    from edgekd.convert import convert
    from edgekd.convert.runtime import predict

    p, flash, ram, lat = _estimate(teacher, board)
    teacher_row: dict[str, Any] = {"params": int(p.params), "macs": int(p.macs), "flash_bytes": flash,
                                   "ram_bytes": ram, "latency_ms": lat, "float_accuracy": test_acc["teacher"],
                                   "int8_accuracy": None, "measured": False}
    try:
        tfl = convert(teacher, mode="int8", representative_data=x_tr)
        teacher_row["int8_accuracy"] = float(np.mean(predict(tfl, test[0]).argmax(-1) == test[1]))
        teacher_row["flash_bytes"] = len(tfl) + int(board.runtime_flash_bytes)
    except Exception:  # a teacher need not be convertible
        pass
    student_row = {"params": best.params, "macs": best.macs, "flash_bytes": best.flash_bytes,
                   "ram_bytes": best.ram_bytes, "latency_ms": best.latency_ms,
                   "float_accuracy": test_acc.get("float"), "int8_accuracy": test_acc["int8"], "measured": True}
    return {"teacher": teacher_row, "student": student_row}


def comparison_table(result: FitResult, *, print_fn: Optional[Callable[[Any], None]] = None) -> Any:
    """A rich table of teacher vs chosen student (returns it; prints it with ``print_fn`` when given)."""
    from rich.table import Table

    t = Table(title=f"teacher vs chosen student on {result.board.id} (test split)")
    t.add_column("")
    t.add_column("teacher", justify="right")
    t.add_column("student", justify="right")
    rows = result.comparison or {}
    te, st = rows.get("teacher", {}), rows.get("student", {})

    def f(key: str, fmt: Callable[[Any], str]) -> list[str]:
        return [fmt(d.get(key)) if d.get(key) is not None else "–" for d in (te, st)]

    t.add_row("params", *f("params", lambda v: f"{v:,}"))
    t.add_row("MACs", *f("macs", lambda v: f"{v:,}"))
    t.add_row("flash (int8 + runtime)", *f("flash_bytes", lambda v: f"{v / 1024:.1f} KB"))
    t.add_row("RAM (arena + runtime)", *f("ram_bytes", lambda v: f"{v / 1024:.1f} KB"))
    t.add_row(f"latency est. ({result.board.id})", *f("latency_ms", lambda v: f"{v:.2f} ms"))
    t.add_row("float accuracy", *f("float_accuracy", lambda v: f"{100 * v:.2f}%"))
    t.add_row("int8 accuracy", *f("int8_accuracy", lambda v: f"{100 * v:.2f}%"))
    if print_fn is not None:
        print_fn(t)
    return t


def _measure(tflite: bytes, board: Any, budgets: Budgets) -> tuple[int, int, float, bool]:
    """Flash, RAM (real TFLM arena) and board latency of an int8 model, via edgekd.check."""
    from edgekd.check import check

    rep = check(tflite, board=board, max_flash=budgets.flash_bytes, max_ram=budgets.ram_bytes,
                max_latency_ms=budgets.latency_ms, host_latency=False)
    flash = int(rep.model_bytes + rep.runtime_flash_bytes)
    arena = rep.arena
    ok = arena.failure is None and rep.inference_failure is None
    ram = int((arena.arena_bytes or 0) + rep.runtime_ram_bytes) if ok else 2 ** 31
    return flash, ram, float(rep.board_latency.total_ms), ok


def _pruning_callback(trial: Any, xv: np.ndarray, y_val: np.ndarray) -> Any:
    """A Keras callback reporting validation accuracy to Optuna each epoch; stops training when pruned.

    ``xv`` is the validation set already at the student's input shape.
    """
    import keras

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


# Every file a report may hold (write_report; the export's are edgekd.export.write_export's).
REPORT_FILES = ("trials.csv", "trials.json", "pareto.png", "model.tflite", "model_data.h", "model_data.cc",
                "model_ops.h", "export.json")


def write_report(result: FitResult, outdir: str | os.PathLike, *,
                 firmware: Optional[dict[str, Any]] = None) -> list[str]:
    """Write ``trials.csv``, ``trials.json``, ``pareto.png`` and (when one passed) the chosen model's export.

    With the chosen model also ``student.keras``, and each of ``firmware``'s
    projects (subfolder name -> :class:`edgekd.firmware.Project`). Everything
    replaces the previous report in one step (:func:`edgekd._io.staged_dir`):
    an interrupt or a killed process leaves the whole previous report or the
    whole new one. Other files in ``outdir`` (``study.db``, ``trials/``) are
    kept as they are.

    Returns:
        The paths written.
    """
    import csv
    import io
    import json

    from edgekd._io import atomic_write_bytes, staged_dir

    outdir = os.fspath(outdir)
    rows = [t.to_dict() for t in result.trials]
    cols = ["number", "state", "spec", "arch", "width", "resolution", "depth", "temperature", "input_shape",
            "params", "macs", "est_flash_bytes", "est_ram_bytes", "est_latency_ms", "flash_bytes", "ram_bytes",
            "latency_ms", "float_accuracy", "int8_accuracy", "violations", "epochs_run", "note"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "input_shape": "x".join(map(str, r["input_shape"])), "violations": ";".join(r["violations"])})
    files = {
        "trials.csv": buf.getvalue().encode(),
        "trials.json": (json.dumps(result.summary(), indent=2, sort_keys=True, default=float) + "\n").encode(),
        "pareto.png": pareto_png(result),
    }
    chosen = result.best is not None and result.best_tflite is not None
    if chosen:
        from edgekd.export import export_files

        files.update(export_files(result.best_tflite, name="model", source_model=result.best.spec, mode="int8")[0])
    # Chosen in an earlier run of a resumed study: the student saved with its trial (fit's artifacts).
    kept = os.path.join(outdir, "trials", f"trial_{result.best.number:04d}.keras") if chosen else None
    written = list(files)
    # A report's files replace the previous report's, all of them: a name this one lacks is dropped, so
    # no file of an earlier report stays beside this one (e.g. the student of another chosen model).
    owned = [*REPORT_FILES, "student.keras", *(f"firmware-{t}" for t in ("arduino", "esp-idf", "platformio")),
             *(firmware or {})]
    with staged_dir(outdir, owned=owned) as stage:
        for name, data in files.items():
            atomic_write_bytes(os.path.join(stage, name), data)
        if chosen and result.best_model is not None:
            result.best_model.save(os.path.join(stage, "student.keras"))
            written.append("student.keras")
        elif kept is not None and os.path.isfile(kept):
            shutil.copyfile(kept, os.path.join(stage, "student.keras"))
            written.append("student.keras")
        if firmware:
            from edgekd.firmware import write_project

            for sub, project in firmware.items():
                written += [os.path.relpath(p, stage) for p in write_project(project, os.path.join(stage, sub))]
    return [os.path.join(outdir, rel) for rel in written]


def pareto_png(result: FitResult) -> bytes:
    """int8 accuracy against flash and against board latency, budgets and the chosen model marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), dpi=110)
    trained = [t for t in result.trials if t.int8_accuracy is not None]
    infeasible = [t for t in result.trials if t.state == "infeasible"]
    specs = [("flash", "flash_bytes", "est_flash_bytes", 1 / 1024, "flash (KB, .tflite + runtime)",
              result.budgets.flash_bytes / 1024),
             ("latency", "latency_ms", "est_latency_ms", 1.0, f"estimated latency on {result.board.id} (ms)",
              result.budgets.latency_ms)]
    for ax, (_, meas, est, scale, label, limit) in zip(axes, specs):
        for state, color, marker in (("passed", "tab:green", "o"), ("over_budget", "tab:red", "x")):
            pts = [t for t in trained if t.state == state]
            ax.scatter([getattr(t, meas) * scale for t in pts], [100 * t.int8_accuracy for t in pts],
                       c=color, marker=marker, label=state.replace("_", " "), zorder=3)
        if infeasible:
            ax.scatter([getattr(t, est) * scale for t in infeasible], [0] * len(infeasible), c="lightgray",
                       marker="|", s=200, label="not trained (profile over budget)", zorder=2)
        if limit:
            ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1, label="budget")
        if result.teacher_accuracy is not None:
            ax.axhline(100 * result.teacher_accuracy, color="tab:blue", linestyle=":", linewidth=1,
                       label=f"teacher {100 * result.teacher_accuracy:.1f}%")
        if result.best is not None:
            ax.scatter([getattr(result.best, meas) * scale], [100 * result.best.int8_accuracy], marker="*", s=300,
                       c="gold", edgecolors="black", zorder=4, label="chosen")
        ax.set_xlabel(label)
        ax.set_ylabel("int8 validation accuracy (%)")
        ax.grid(alpha=0.3)
        if ax is axes[0]:
            ax.set_xscale("log")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"edgekd fit — {result.arch} students for {result.board.id}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, fit)
