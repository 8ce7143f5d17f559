"""Many workers, one study: the storage, the claims that divide the work, the artifacts every worker reads.

Workers that run the same ``fit`` against one database share the study through four things:

- :func:`connect` opens the database before anything is loaded (bad URL, credentials, database or
  path: one :class:`~edgekd.errors.StorageError`, the password never shown), and :func:`rdb_storage`
  creates Optuna's tables with retries (two workers on an empty database race to create them, optuna#1092),
  with heartbeats so that a killed worker's trial is failed and retried
  (Optuna's ``heartbeat_interval`` and ``RetryHeartbeatStaleTrialCallback``).
- :class:`Claims`, a table beside Optuna's (``edgekd_fit_claims``): a trial trains a candidate only after
  inserting a row that holds one of the study's ``trials`` slots *and* the candidate's key, both unique.
  The database settles every race: exactly ``trials`` candidates are trained across all workers, and no
  candidate is trained twice. A slot whose trial failed (or whose worker stopped beating) is taken over.
- :class:`DatabaseArtifactStore`, an Optuna artifact store in the same database (``edgekd_fit_artifacts``):
  each trained candidate's ``.tflite`` and ``.keras`` go there through :func:`optuna.artifacts.upload_artifact`
  (or to a shared folder: Optuna's ``FileSystemArtifactStore``), so any worker writes the chosen model.
- :class:`DistinctSampler`: each trial draws from its own seed (the study's seed and the trial's number),
  the first proposals are points no other trial has taken, and TPE sees the running trials
  (``constant_liar``), so workers started with one command propose different candidates.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import re
import tempfile
import time
import warnings
from typing import Any, BinaryIO, Callable, Optional

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url

from edgekd.errors import StorageError

__all__ = ["Claims", "DatabaseArtifactStore", "DistinctSampler", "artifact_store", "connect", "download",
           "fail_stale", "rdb_storage", "shown", "upload"]

CLAIMS_TABLE = "edgekd_fit_claims"
ARTIFACTS_TABLE = "edgekd_fit_artifacts"


def shown(storage: Any) -> str:
    """The storage URL as messages show it: the password replaced by ``***``."""
    text = str(storage)
    try:

        return make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: hide what looks like user:password@
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", text)


def _reason(e: BaseException, password: Optional[str]) -> str:
    """The first line of a driver's error, without the password (drivers may quote the connection string)."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    line = next((ln.strip() for ln in text if ln.strip()), type(e).__name__)
    line = re.sub(r"^\(\S+\)\s*", "", line)
    if password:
        line = line.replace(password, "***")
    return line[:300]


def connect(storage: str) -> None:
    """Open a server database (PostgreSQL, MySQL) once, now: before TensorFlow, the teacher or any file.

    An sqlite file is checked by its path instead (:func:`edgekd.fit.search.check_storage`).

    Raises:
        StorageError: The server cannot be reached, refuses the credentials, or lacks the database.
    """

    url = make_url(storage)
    if url.get_backend_name() == "sqlite":
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=driver_args(url))
    try:
        with engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
    except Exception as e:  # the driver's errors (OperationalError, InterfaceError, …): one line
        raise StorageError(f"Cannot open the storage {shown(storage)}: {_reason(e, url.password)}. Check the "
                           "server, the user and password, and that the database exists (createdb).") from None
    finally:
        engine.dispose()


def driver_args(url: Any) -> dict[str, Any]:
    """Driver arguments: a connect timeout for servers, a busy timeout for sqlite (many workers, one file)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"timeout": 60}
    return {"connect_timeout": 10} if backend in ("postgresql", "mysql") else {}


def rdb_storage(storage: str, *, heartbeat: Optional[int], on_stale: Optional[Callable[[Any], None]] = None) -> Any:
    """Optuna's RDB storage of ``storage``, its tables created once even when many workers start together.

    With ``heartbeat`` (seconds), each running trial records a heartbeat; a trial silent for twice
    as long (its worker killed) is failed by the next worker that looks, reported through
    ``on_stale`` (the failed :class:`optuna.trial.FrozenTrial`) and queued again
    (``RetryHeartbeatStaleTrialCallback``).

    Raises:
        StorageError: The tables cannot be created or read.
    """
    import optuna  # Optuna: loaded by a search, not on import

    url = make_url(storage)
    with warnings.catch_warnings():  # heartbeats and the retry callback are "experimental" in Optuna 5.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)

    def stale(study: Any, trial: Any) -> None:
        if on_stale is not None:
            on_stale(trial)
        retry(study, trial)

    kwargs: dict[str, Any] = {"engine_kwargs": {"connect_args": driver_args(url), "pool_pre_ping": True}}
    if heartbeat:
        kwargs.update(heartbeat_interval=int(heartbeat), grace_period=2 * int(heartbeat),
                      heartbeat_stale_trial_callback=stale)
    last: Optional[BaseException] = None
    for attempt in range(10):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(storage, **kwargs)
        except (sa.exc.DBAPIError, optuna.exceptions.StorageInternalError) as e:
            # two workers creating the tables at once: one loses the race (a unique violation in
            # PostgreSQL's catalog, alembic_version's key in sqlite, "already exists"); the tables are there now
            last = e
            time.sleep(0.2 + random.random() * 0.3 * (attempt + 1))
    raise StorageError(f"Cannot create or read the study tables in {shown(storage)}: {_reason(last, url.password)}. "
                       "Check that the user may create tables in this database.")


def fail_stale(study: Any) -> None:
    """Fail the running trials whose worker stopped beating (Optuna's ``fail_stale_trials``), now."""
    import optuna  # Optuna: loaded by a search, not on import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# ------------------------------------------------------------------------------------------------ claims

def _tables(metadata: Any) -> tuple[Any, Any]:

    claims = sa.Table(CLAIMS_TABLE, metadata,
                      sa.Column("study", sa.String(512), primary_key=True),
                      sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("key", sa.String(64), nullable=False),
                      sa.Column("trial", sa.Integer, nullable=False),
                      sa.UniqueConstraint("study", "key", name=f"{CLAIMS_TABLE}_key"))
    artifacts = sa.Table(ARTIFACTS_TABLE, metadata,
                         sa.Column("artifact_id", sa.String(64), primary_key=True),
                         sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=False))
    return claims, artifacts


def _create_tables(engine: Any) -> tuple[Any, Any]:
    """edgekd's two tables, created when missing (with retries: workers starting together race to create them)."""

    metadata = sa.MetaData()
    tables = _tables(metadata)
    for attempt in range(10):
        try:
            metadata.create_all(engine)
            return tables
        except sa.exc.DBAPIError:
            time.sleep(0.2 + random.random() * 0.3 * (attempt + 1))
    metadata.create_all(engine)
    return tables


class Claims:
    """Which trial trains which candidate, in which of the study's slots (one row each, in the database).

    A row holds a slot (``0 .. trials - 1``) and a candidate key, each unique within the study: the
    insert that succeeds wins. A row whose trial is neither running nor trained (it failed, was
    interrupted, or its worker stopped beating) is dead: its slot and key are taken over.
    """

    def __init__(self, engine: Any, study_name: str) -> None:
        self.engine, self.study_name = engine, study_name
        self.table = _create_tables(engine)[0]

    def rows(self) -> list[tuple[int, str, int]]:
        """(slot, key, trial number) of every claim of the study."""

        t = self.table
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.select(t.c.slot, t.c.key, t.c.trial)
                                                .where(t.c.study == self.study_name))]

    def claim(self, key: str, number: int, slots: int, live: Callable[[int], bool]) -> tuple[str, Optional[int]]:
        """Claim a slot to train candidate ``key`` in trial ``number``.

        Returns:
            ``("slot", k)``: train it; ``("busy", n)``: trial ``n`` trains (or trained) it; ``("full", None)``:
            every slot is held by a running or trained trial.
        """
        for _ in range(20):  # each pass either decides or lost a race to another worker
            rows = self.rows()
            mine = next((r for r in rows if r[1] == key), None)
            if mine is not None and mine[2] == number:
                return "slot", mine[0]
            if mine is not None:
                if live(mine[2]):
                    return "busy", mine[2]
                if self._take(mine[0], mine[2], key, number):
                    return "slot", mine[0]
                continue
            taken = {r[0] for r in rows}
            free = [k for k in range(slots) if k not in taken]
            if free:
                if self._insert(free[0], key, number):
                    return "slot", free[0]
                continue
            dead = [r for r in rows if r[0] < slots and not live(r[2])]
            if not dead:
                return "full", None
            self._take(dead[0][0], dead[0][2], key, number)
        return "full", None

    def _insert(self, slot: int, key: str, number: int) -> bool:

        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(self.table).values(study=self.study_name, slot=slot, key=key, trial=number))
            return True
        except sa.exc.IntegrityError:  # another worker took the slot or the key first
            return False

    def _take(self, slot: int, holder: int, key: str, number: int) -> bool:
        """Take over a dead claim: only if it still belongs to ``holder`` (one worker wins)."""

        t = self.table
        try:
            with self.engine.begin() as c:
                res = c.execute(sa.update(t).where(t.c.study == self.study_name, t.c.slot == slot,
                                                   t.c.trial == holder).values(key=key, trial=number))
            return res.rowcount == 1
        except sa.exc.IntegrityError:
            return False


# --------------------------------------------------------------------------------------------- artifacts

class DatabaseArtifactStore:
    """An Optuna artifact store in the study's own database: every worker that reaches the study reads it.

    TinyML students are kilobytes to a few hundred kilobytes, so a table of blobs
    (``edgekd_fit_artifacts``) needs no shared folder or object storage. Implements
    :class:`optuna.artifacts._protocol.ArtifactStore` (``open_reader``, ``write``, ``remove``).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.table = _create_tables(engine)[1]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        from optuna.artifacts.exceptions import ArtifactNotFound  # Optuna: loaded by a search, not on import

        with self.engine.connect() as c:
            data = c.execute(sa.select(self.table.c.data).where(self.table.c.artifact_id == artifact_id)).scalar()
        if data is None:
            raise ArtifactNotFound(f"Artifact {artifact_id} is not in the study's database.")
        return io.BytesIO(bytes(data))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:

        with self.engine.begin() as c:
            c.execute(sa.insert(self.table).values(artifact_id=artifact_id, data=content_body.read()))

    def remove(self, artifact_id: str) -> None:

        with self.engine.begin() as c:
            c.execute(sa.delete(self.table).where(self.table.c.artifact_id == artifact_id))


def artifact_store(artifacts: Optional[str], engine: Any) -> Any:
    """The study's artifact store: a folder (Optuna's ``FileSystemArtifactStore``; shared between machines
    through NFS or similar) when ``artifacts`` names one, else the study's database."""
    if artifacts:

        from optuna.artifacts import FileSystemArtifactStore  # Optuna: loaded by a search, not on import

        os.makedirs(artifacts, exist_ok=True)
        return FileSystemArtifactStore(artifacts)
    return DatabaseArtifactStore(engine)


def upload(store: Any, ot: Any, name: str, data: bytes) -> None:
    """Store ``data`` as trial ``ot``'s artifact ``name`` (its id kept in the trial, where every worker sees it)."""

    from optuna.artifacts import upload_artifact  # Optuna: loaded by a search, not on import

    with tempfile.TemporaryDirectory(prefix="edgekd-artifact-") as d:
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data)
        upload_artifact(artifact_store=store, file_path=path, study_or_trial=ot)


def download(store: Any, frozen: Any, name: str, storage: Any) -> Optional[bytes]:
    """Trial ``frozen``'s artifact ``name`` (its ids are kept in ``storage``), or None when it has none (or the
    store lost it)."""
    from optuna.artifacts import get_all_artifact_meta  # Optuna: loaded by a search, not on import
    from optuna.artifacts.exceptions import ArtifactNotFound  # Optuna: loaded by a search, not on import

    metas = [m for m in get_all_artifact_meta(frozen, storage=storage) if m.filename == name]
    if store is None or not metas:
        return None
    try:
        with store.open_reader(metas[-1].artifact_id) as r:
            return r.read()
    except (ArtifactNotFound, OSError):
        return None


# ----------------------------------------------------------------------------------------------- sampler

class DistinctSampler:
    """A sampler whose proposals differ across workers without the user picking seeds.

    Each trial gets a fresh ``make(seed)`` sampler seeded from the study's seed and the trial's
    number (numbers are unique across workers, and a resumed or repeated study proposes the same
    points); the first ``startup`` proposals are drawn from the points no trial has taken yet
    (running ones included); later ones come from the inner sampler (TPE with ``constant_liar``,
    which counts running trials, or NSGA-II).
    """

    def __init__(self, make: Callable[[int], Any], seed: int, space: dict[str, Any], startup: int) -> None:
        self.make, self.seed, self.space, self.startup = make, seed, space, startup
        self.inner = make(seed)

    def _seed(self, number: int) -> int:
        return (self.seed * 1_000_003 + number * 7919) % (2 ** 31)

    def before_trial(self, study: Any, trial: Any) -> None:
        self.inner = self.make(self._seed(trial.number))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self.space)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:

        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        if len(others) >= self.startup or not search_space:
            inner = self.inner.infer_relative_search_space(study, trial)
            return self.inner.sample_relative(study, trial, inner) if inner else {}
        names = sorted(search_space)
        seen = {tuple(t.params.get(n) for n in names) for t in others}
        points = [p for p in itertools.product(*(search_space[n].choices for n in names)) if p not in seen]
        if not points:
            return {}
        rng = random.Random(self._seed(trial.number))
        return dict(zip(names, rng.choice(points)))

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, name, distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
