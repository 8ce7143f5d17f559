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
import socket
import tempfile
import time
from typing import Any, Callable, Optional

import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from edgekd.errors import InvalidArgumentError, MissingExtraError, OutputError, invalid_value
from edgekd.students import registry

from . import shared
from .measurement import Setup, build_student, estimate, student_key, train_and_measure
from .records import Trial

__all__ = ["ARCHS", "STUDY_NAME", "Objective", "Opened", "SearchSpace", "archs", "check_storage", "default_study_name",
           "open_study", "records", "run"]


def archs() -> tuple[str, ...]:
    """The architectures ``fit`` can search: the student registry's now (one added with
    ``students.register`` included), then ``"shrink"`` (the teacher's own layers, narrowed)."""
    return (*registry.names(), "shrink")


ARCHS = archs()  # the built-in ones, at import; fit validates against archs() at call time
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
        raise invalid_value("storage", expected, shared.shown(storage)) from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise InvalidArgumentError(f"Unknown database {url.drivername!r} in the storage URL "
                                   f"{shared.shown(storage)!r}. Use sqlite:///PATH, postgresql://… or mysql://… "
                                   "(SQLAlchemy URLs).") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        extra = "pip install 'edgekd[distributed]' (psycopg 3, which SQLAlchemy 2 uses for postgresql://)" \
            if url.drivername == "postgresql" else "pip install it"
        raise MissingExtraError(f"The storage URL {shared.shown(storage)!r} needs the database driver "
                                f"{e.name or url.drivername}, which is not installed: {extra}, or use "
                                "sqlite:///PATH.") from None
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


def default_study_name(setup: Setup, objective: str) -> str:
    """The study's name when none is given: the board, the family, the objective and the budgets, so one
    database holds the searches of many boards (or budgets) side by side."""
    b = setup.budgets
    lat = "none" if b.latency_ms is None else f"{b.latency_ms:g}ms"
    engine = "" if setup.engine == "interpreter" else f":{setup.engine}"
    recipe = "" if setup.recipe is None else f":recipe={setup.recipe}"
    return (f"{STUDY_NAME}:{setup.board.id}:{setup.arch}:{objective}{engine}{recipe}:flash={b.flash_bytes}:"
            f"ram={b.ram_bytes}:latency={lat}")


@dataclasses.dataclass
class Opened:
    """A study and what its workers share: the claims table, the artifact store (None: in memory)."""

    study: Any
    claims: Any
    store: Any
    shared: bool  # in a database other processes may use
    running_at_open: frozenset = frozenset()  # trials running when this worker opened the study
    storage: Any = None  # Optuna's RDB storage (None: in memory)


def open_study(setup: Setup, *, objective: str, trials: int, storage: Optional[str], study_name: Optional[str],
               prune: bool, heartbeat: Optional[int] = 30, artifact_store: Optional[str] = None,
               report_only: bool = False, on_stale: Optional[Callable[[Any], None]] = None,
               space: SearchSpace = SearchSpace()) -> Opened:
    """Create the study, or load it to resume or to join other workers; a stored study run with other
    settings is refused. ``study_name`` None: :func:`default_study_name` (or the one study of an older edgekd)."""
    import optuna  # Optuna (and SQLAlchemy): loaded by a search, not by `import edgekd.fit` or `edgekd fit --help`

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if objective == "accuracy":
        def make(seed: int) -> Any:
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials), constant_liar=True)
        directions = ["maximize"]
    else:
        def make(seed: int) -> Any:
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials)))
        directions = ["maximize", "minimize"]
    dists = {n: optuna.distributions.CategoricalDistribution(list(getattr(space, n)))
             for n in ("width", "resolution", "depth", "temperature")}
    sampler = shared.DistinctSampler(make, setup.seed, dists, min(5, trials))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, setup.epochs // 3)) if prune \
        else optuna.pruners.NopPruner()
    if storage is None:
        engine = sqlalchemy.create_engine("sqlite://", poolclass=sqlalchemy.pool.StaticPool)
        rdb = None
    else:
        rdb = shared.rdb_storage(storage, heartbeat=heartbeat, on_stale=on_stale)
        engine = sqlalchemy.create_engine(storage, connect_args=shared.driver_args(make_url(storage)),
                                          pool_pre_ping=True)
    name = study_name or default_study_name(setup, objective)
    names = optuna.get_all_study_names(rdb) if rdb is not None else []
    if study_name is None and name not in names and STUDY_NAME in names:
        name = STUDY_NAME  # the one study of an output folder made by an earlier edgekd
    if report_only and name not in names:
        raise InvalidArgumentError(f"The storage {shared.shown(storage)} holds no study {name!r}"
                                   + (f" (it holds {', '.join(map(repr, names))})" if names else "")
                                   + ". Run the search first, or pass its --study-name.")
    study = optuna.create_study(storage=rdb, study_name=name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    _check_config(study, setup, objective)
    store = shared.artifact_store(artifact_store, engine) if rdb is not None else None  # after the check: a refused
    # study's database is left as it was
    running = frozenset(t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
    return Opened(study, shared.Claims(engine, name), store, rdb is not None, running, rdb)


def _check_config(study: Any, setup: Setup, objective: str) -> None:
    config = {"arch": setup.arch, "board": setup.board.id, "budgets": setup.budgets.to_dict(),
              "objective": objective, "input_shape": list(setup.input_shape), "num_classes": setup.num_classes,
              "epochs": setup.epochs}
    if setup.engine != "interpreter":
        config["engine"] = setup.engine
    if setup.recipe is not None:  # only when set: a study of an edgekd without recipes resumes as it was
        config["recipe"] = setup.recipe
    previous = study.user_attrs.get("config")
    if previous is None:
        study.set_user_attr("config", config)
    elif previous != config:
        changed = sorted(k for k in {*config, *previous} if previous.get(k) != config.get(k))
        raise InvalidArgumentError(
            f"The study {study.study_name!r} in this storage was run with different settings "
            f"({', '.join(changed)}). Use a new output directory (or --study-name), or the same settings to resume.")


def records(study: Any) -> list[Trial]:
    """Every candidate the study holds a record of, in trial order.

    A trial still training is ``running``; one whose worker stopped while training it (no heartbeat:
    Optuna failed it, and queued its candidate again) is ``failed``.
    """
    from optuna.trial import TrialState  # Optuna: loaded by a search, not on import

    out = []
    for ft in study.get_trials(deepcopy=False):
        d = ft.user_attrs.get("trial")
        if d is None or d.get("number") != ft.number or ft.state == TrialState.WAITING:
            continue
        t = Trial.from_dict(d)
        if t.state == "running" and ft.state == TrialState.FAIL:
            t = dataclasses.replace(t, state="failed", note="its worker stopped while training it (no heartbeat); "
                                    "the candidate was queued again")
        elif t.state == "running" and ft.state != TrialState.RUNNING:
            continue  # interrupted (Ctrl-C) before it was trained: as before, no record
        out.append(t)
    return out


def _constraints(t: Trial, budgets: Any) -> list[float]:
    """Measured figures where there are some, else the estimates; a model TFLM cannot run breaks the RAM budget."""
    measured = t.flash_bytes is not None
    ram = t.ram_bytes if t.ram_bytes is not None else (2 ** 31 if measured else t.est_ram_bytes)
    return budgets.excess(t.flash_bytes if measured else t.est_flash_bytes, ram,
                          t.latency_ms if t.latency_ms is not None else t.est_latency_ms)


class Objective:
    """Optuna's objective: one proposal becomes one :class:`Trial` (``models`` keeps what this call trained).

    A candidate is trained only under a claim (:class:`edgekd.fit.shared.Claims`): one of the study's
    ``trials`` slots and the candidate's key. A candidate another worker is training is waited for and
    its result reused; when every slot is held, the proposal ends without a record (``full``).
    """

    def __init__(self, setup: Setup, space: SearchSpace, objective: str, *, max_failures: int,
                 on_trial: Optional[Callable[[Trial], None]] = None, opened: Optional[Opened] = None,
                 trials: int = 1) -> None:
        self.setup, self.space, self.objective = setup, space, objective
        self.max_failures, self.on_trial = max_failures, on_trial
        self.opened, self.trials = opened, trials
        self.trainings = self.failures = 0
        self.models: dict[int, tuple[Any, Any]] = {}  # trial number -> (trained student, measured int8 model)
        self.interrupted = self.full = False

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
        if same is None and self.opened is not None:
            same = self._claim(ot, base["key"])
        if same is not None:  # trained already in this study: its result, not a second training
            return self._finish(ot, dataclasses.replace(same, note=f"same as trial {same.number}", **base),
                                pruned=same.state == "pruned")
        if self.full:  # every slot is held: the study has (or is training) its `trials` candidates
            import optuna  # Optuna: loaded by a search, not on import

            raise optuna.TrialPruned()
        ot.set_user_attr("trial", Trial(state="running", note=f"training (worker {socket.gethostname()}:{os.getpid()})",
                                        **base).to_dict())
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
            self._upload(ot, *made)
        return self._finish(ot, t, pruned=t.state == "pruned")

    def _upload(self, ot: Any, student: Any, model: Any) -> None:
        """Keep the trained candidate's .tflite and .keras in the study's artifact store (every worker reads them)."""
        if self.opened is None or self.opened.store is None:
            return
        shared.upload(self.opened.store, ot, f"trial_{ot.number:04d}.tflite", bytes(model))
        with tempfile.TemporaryDirectory(prefix="edgekd-student-") as d:
            path = os.path.join(d, "student.keras")
            student.save(path)
            with open(path, "rb") as f:
                shared.upload(self.opened.store, ot, f"trial_{ot.number:04d}.keras", f.read())

    def slots(self) -> tuple[int, set[int]]:
        """(slots left for claims, numbers of the trials holding a claim): ``trials`` less the candidates an
        earlier edgekd trained in this study without one."""
        claimed = {r[2] for r in self.opened.claims.rows()}
        older = sum(1 for t in records(self.opened.study) if t.trained and t.repeat_of is None
                    and t.number not in claimed)
        return self.trials - older, claimed

    def live(self, number: int, trials: Optional[list] = None) -> bool:
        """Whether trial ``number`` is training, or trained, a candidate (its claim holds); ``trials``: the
        study's trials, read once by the caller (a trial newer than them is running)."""
        from optuna.trial import TrialState  # Optuna: loaded by a search, not on import

        trials = trials if trials is not None else self.opened.study.get_trials(deepcopy=False)
        if number >= len(trials):
            return True
        ft = trials[number]
        if ft.state in (TrialState.RUNNING, TrialState.WAITING):
            return True
        d = ft.user_attrs.get("trial") or {}
        return ft.state != TrialState.FAIL and d.get("number") == number and d.get("epochs_run", 0) > 0

    def _claim(self, ot: Any, key: str) -> Optional[Trial]:
        """Claim ``key`` for trial ``ot``; the other trial's result when it trained it (waited for while it runs).
        Sets ``full`` when no slot is left."""
        while True:
            slots, _ = self.slots()
            trials = self.opened.study.get_trials(deepcopy=False)
            status, holder = self.opened.claims.claim(key, ot.number, slots, lambda n: self.live(n, trials))
            if status == "slot":
                return None
            if status == "full":
                self.full = True
                return None
            while not self.opened.study.get_trials(deepcopy=False)[holder].state.is_finished():
                self.pause()  # trained by another worker: its result, once it has one
            same = self._identical(ot, key)
            if same is not None:
                return same

    def pause(self) -> None:
        """Wait a moment for other workers; fail the trials of workers that stopped beating."""

        time.sleep(1.0)
        shared.fail_stale(self.opened.study)

    def _identical(self, ot: Any, key: str) -> Optional[Trial]:
        """The first trained candidate of the study identical to this one (by key; by parameters for records
        written before keys), or None."""
        for prev in ot.study.get_trials(deepcopy=False):
            if prev.number == ot.number or "trial" not in prev.user_attrs or not prev.state.is_finished():
                continue
            t = Trial.from_dict(prev.user_attrs["trial"])
            if t.state in ("passed", "over_budget", "pruned") and t.repeat_of is None and t.number == prev.number \
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

    def progress(self) -> str:
        """``"done"`` (every slot holds a trained candidate), ``"free"`` (a slot can be claimed) or ``"wait"``
        (the free slots are being trained by other workers)."""
        from optuna.trial import TrialState  # Optuna: loaded by a search, not on import

        slots, _ = self.slots()
        rows = self.opened.claims.rows()  # before the trials: every claim's trial is among them
        trials = self.opened.study.get_trials(deepcopy=False)
        held = [r for r in rows if r[0] < slots and self.live(r[2], trials)]
        done = sum(1 for r in held if trials[r[2]].state != TrialState.RUNNING)
        if done >= slots:
            return "done"
        return "free" if len(held) < slots else "wait"

    def settle(self) -> None:
        """Wait until no other worker's trial is running (a report then reads the whole study, as every
        worker will); trials left running by an earlier process without a claim are not waited for."""
        from optuna.trial import TrialState  # Optuna: loaded by a search, not on import

        if not self.opened.shared:
            return
        while True:
            claimed = {r[2] for r in self.opened.claims.rows()}
            running = [t.number for t in self.opened.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if t.number not in self.opened.running_at_open or t.number in claimed]
            if not running:
                return
            self.pause()


def run(study: Any, objective: Objective, *, trials: int) -> bool:
    """Propose candidates until the study holds ``trials`` trained ones (identical ones count once, every
    worker's count); True when interrupted.

    Rejecting a candidate by its profile costs milliseconds, so infeasible
    proposals do not use up ``trials``; at most ``max(5 * trials, 10)`` are
    proposed by this worker, and it stops once every point of the space has been seen. A worker whose
    remaining slots are being trained by others waits for them (and takes over a slot whose worker
    stopped), then waits for the other workers' last proposals, so every worker reports the same study.
    """
    from optuna.trial import TrialState  # Optuna: loaded by a search, not on import

    def seen() -> int:
        return len({tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False) if t.params})

    proposals = 0
    try:
        while proposals < max(5 * trials, 10) and not objective.interrupted:
            state = objective.progress()
            if state == "done":
                break
            if state == "wait":
                objective.pause()
                continue
            objective.full = False
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=True)
            proposals += 1
            if seen() >= objective.space.size and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                break  # the whole space has been explored
        if not objective.interrupted:
            objective.settle()
    except KeyboardInterrupt:
        objective.interrupted = True
    return objective.interrupted
