"""The search of ``fit``: the space, the Optuna study and the driver that proposes candidates.

Optuna proposes a point of the :class:`SearchSpace`; :class:`Objective`
rejects it by its profile (``infeasible``, never trained), reuses the result
of an identical candidate already in the study (same network, input and
temperature: :func:`edgekd.fit.measurement.student_key`), or trains and
measures it (:func:`edgekd.fit.measurement.train_and_measure`). Budgets are
Optuna constraints (relative excess, :meth:`edgekd.check.budgets.Budgets.excess`),
so the samplers steer away from candidates that break them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from edgekd.errors import InvalidArgumentError, MissingExtraError, OutputError, invalid_value

from .measurement import Setup, build_student, estimate, student_key, train_and_measure
from .records import Trial

__all__ = ["ARCHS", "STUDY_NAME", "Objective", "SearchSpace", "check_storage", "open_study", "records", "run"]

ARCHS = ("ds_cnn", "mobilenet_v1", "small_cnn", "shrink")
STUDY_NAME = "edgekd-fit"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The values the search may pick (categorical, so studies resume exactly)."""

    width: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    resolution: tuple[float, ...] = (0.5, 0.75, 1.0)
    depth: tuple[int, ...] = (1, 2, 3, 4)
    temperature: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

    @property
    def size(self) -> int:
        return len(self.width) * len(self.resolution) * len(self.depth) * len(self.temperature)


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
    expected = "an Optuna storage URL such as sqlite:///study.db or postgresql://user:pass@host/db"
    if not isinstance(storage, str) or not storage.strip():
        raise invalid_value("storage", expected, storage)
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


def open_study(setup: Setup, *, objective: str, trials: int, storage: Optional[str], study_name: str,
               prune: bool) -> Any:
    """Create the study, or load it to resume; a stored study run with other settings is refused."""
    import optuna  # Optuna (and SQLAlchemy): loaded by a search, not by `import edgekd.fit` or `edgekd fit --help`

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if objective == "accuracy":
        sampler = optuna.samplers.TPESampler(seed=setup.seed, n_startup_trials=min(5, trials))
        directions = ["maximize"]
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=setup.seed, population_size=max(4, min(20, trials)))
        directions = ["maximize", "minimize"]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, setup.epochs // 3)) if prune \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    config = {"arch": setup.arch, "board": setup.board.id, "budgets": setup.budgets.to_dict(),
              "objective": objective, "input_shape": list(setup.input_shape), "num_classes": setup.num_classes,
              "epochs": setup.epochs}
    previous = study.user_attrs.get("config")
    if previous is None:
        study.set_user_attr("config", config)
    elif previous != config:
        changed = sorted(k for k in config if previous.get(k) != config[k])
        raise InvalidArgumentError(
            f"The study in this output directory was run with different settings ({', '.join(changed)}). "
            "Use a new output directory, or the same settings to resume.")
    return study


def records(study: Any) -> list[Trial]:
    """Every candidate the study holds a record of, in trial order."""
    return sorted((Trial.from_dict(t.user_attrs["trial"]) for t in study.trials if "trial" in t.user_attrs),
                  key=lambda t: t.number)


def _constraints(t: Trial, budgets: Any) -> list[float]:
    """Measured figures where there are some, else the estimates; a model TFLM cannot run breaks the RAM budget."""
    measured = t.flash_bytes is not None
    ram = t.ram_bytes if t.ram_bytes is not None else (2 ** 31 if measured else t.est_ram_bytes)
    return budgets.excess(t.flash_bytes if measured else t.est_flash_bytes, ram,
                          t.latency_ms if t.latency_ms is not None else t.est_latency_ms)


class Objective:
    """Optuna's objective: one proposal becomes one :class:`Trial` (``models`` keeps what this call trained)."""

    def __init__(self, setup: Setup, space: SearchSpace, objective: str, *, max_failures: int,
                 on_trial: Optional[Callable[[Trial], None]] = None) -> None:
        self.setup, self.space, self.objective = setup, space, objective
        self.max_failures, self.on_trial = max_failures, on_trial
        self.trainings = self.failures = 0
        self.models: dict[int, tuple[Any, Any]] = {}  # trial number -> (trained student, measured int8 model)
        self.interrupted = False

    def __call__(self, ot: Any) -> Any:
        try:  # Ctrl-C / SIGTERM in a trial: end it as pruned (Optuna logs a failed trial with a traceback), stop
            return self._propose(ot)
        except KeyboardInterrupt:
            import optuna  # Optuna: loaded by a search, not by `import edgekd.fit` or `edgekd fit --help`

            self.interrupted = True
            raise optuna.TrialPruned() from None

    def _propose(self, ot: Any) -> Any:
        import keras  # TensorFlow: loaded when a search runs, not by `import edgekd.fit`

        s, space = self.setup, self.space
        width = ot.suggest_categorical("width", list(space.width))
        resolution = ot.suggest_categorical("resolution", list(space.resolution))
        depth = ot.suggest_categorical("depth", list(space.depth))
        temperature = ot.suggest_categorical("temperature", list(space.temperature))
        keras.utils.set_random_seed(s.seed + ot.number)
        student = build_student(s.arch, s.teacher, s.input_shape, s.num_classes, width, resolution, depth)
        est = estimate(student, s.board, engine=s.engine)
        base = dict(number=ot.number, arch=s.arch, width=width, resolution=resolution, depth=depth,
                    temperature=temperature, input_shape=tuple(int(d) for d in student.inputs[0].shape[1:]),
                    params=int(est.profile.params), macs=int(est.profile.macs), est_flash_bytes=est.flash_bytes,
                    est_ram_bytes=est.ram_bytes, est_latency_ms=est.latency_ms,
                    key=student_key(student, temperature))
        viol = s.budgets.violations(est.flash_bytes, est.ram_bytes, est.latency_ms)
        if viol:  # cannot meet the budgets: never trained
            return self._finish(ot, Trial(state="infeasible", violations=viol, note="profile exceeds budget", **base))
        same = self._identical(ot, base["key"])
        if same is not None:  # trained already in this study: its result, not a second training
            return self._finish(ot, dataclasses.replace(same, note=f"same as trial {same.number}", **base),
                                pruned=same.state == "pruned")
        self.trainings += 1
        try:
            t, made = train_and_measure(s, ot, student, base)
        except Exception as e:  # a candidate that breaks must not end the search
            self.failures += 1
            if self.failures >= self.max_failures:
                raise
            return self._finish(ot, Trial(state="failed", note=f"{type(e).__name__}: {str(e)[:120]}", **base))
        if made is not None:
            self.models[ot.number] = made
        return self._finish(ot, t, pruned=t.state == "pruned")

    def _identical(self, ot: Any, key: str) -> Optional[Trial]:
        """The first trained candidate of the study identical to this one (by key; by parameters for records
        written before keys), or None."""
        for prev in ot.study.get_trials(deepcopy=False):
            if prev.number == ot.number or "trial" not in prev.user_attrs:
                continue
            t = Trial.from_dict(prev.user_attrs["trial"])
            if t.state in ("passed", "over_budget", "pruned") and t.repeat_of is None \
                    and (t.key == key if t.key else prev.params == ot.params):
                return t
        return None

    def _finish(self, ot: Any, t: Trial, pruned: bool = False) -> Any:
        ot.set_user_attr("trial", t.to_dict())
        for name, value in zip(("flash", "ram", "latency"), _constraints(t, self.setup.budgets)):
            ot.set_constraint(name, value)  # ≤ 0 feasible; the samplers steer away from the rest
        if self.on_trial is not None:
            self.on_trial(t)
        if pruned:
            import optuna  # Optuna: loaded by a search, not by `import edgekd.fit` or `edgekd fit --help`

            raise optuna.TrialPruned()
        acc = t.int8_accuracy if t.int8_accuracy is not None else 0.0
        if self.objective == "accuracy":
            return acc
        return acc, t.latency_ms if t.latency_ms is not None else t.est_latency_ms


def run(study: Any, objective: Objective, *, trials: int) -> bool:
    """Propose candidates until ``trials`` were trained (identical ones count once); True when interrupted.

    Rejecting a candidate by its profile costs milliseconds, so infeasible
    proposals do not use up ``trials``; at most ``max(5 * trials, 10)`` are
    proposed, and the search stops once every point of the space has been seen.
    """
    def trained() -> int:
        return sum(1 for t in records(study) if t.trained and t.repeat_of is None)

    def seen() -> int:
        return len({tuple(sorted(t.params.items())) for t in study.trials if t.params})

    proposals = 0
    try:
        while trained() < trials and proposals < max(5 * trials, 10) and not objective.interrupted:
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=True)
            proposals += 1
            if seen() >= objective.space.size and all("trial" in t.user_attrs for t in study.trials):
                break  # the whole space has been explored
    except KeyboardInterrupt:
        objective.interrupted = True
    return objective.interrupted
