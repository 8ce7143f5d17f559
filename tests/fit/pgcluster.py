"""A throwaway PostgreSQL cluster for tests and benchmarks: a temp folder, an unprivileged user, a Unix socket.

    with cluster() as pg:            # raises Unavailable when PostgreSQL is not installed
        url = pg.database("study")   # an empty database's SQLAlchemy URL (psycopg 3)

PostgreSQL refuses to run as root: as root, its commands run as ``nobody`` (runuser). The server listens on
its socket in the temp folder only (no TCP port to collide with), and needs a password (scram-sha-256).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from typing import Iterator

PASSWORD = "pg-s3cret-pw"
PORT = 5432  # names the socket file only: the server opens no TCP port


class Unavailable(RuntimeError):
    """PostgreSQL (or a way to run it as a non-root user) is not installed here."""


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Unavailable("running as root without runuser: PostgreSQL cannot be started as another user")
    return [runuser, "-u", "nobody", "--", *cmd]


class Cluster:
    def __init__(self, root: str) -> None:
        self.root = root

    def database(self, name: str) -> str:
        """Create an empty database; its URL."""
        import psycopg

        admin = f"host={self.root} port={PORT} user=edgekd password={PASSWORD} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str, password: str = PASSWORD) -> str:
        return f"postgresql://edgekd:{password}@/{name}?host={self.root}&port={PORT}"


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster in a temp folder; stop it and remove the folder afterwards."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise Unavailable("PostgreSQL is not installed (initdb/pg_ctl not found): `make sysdeps` installs it "
                          "(apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("the PostgreSQL driver is missing: pip install 'edgekd[distributed]'") from None
    # /tmp, not $TMPDIR: a test session's temporary folder is private to root; the server runs as nobody.
    root = tempfile.mkdtemp(prefix="edgekd-pg-", dir="/tmp")
    if os.geteuid() == 0:
        import pwd

        os.chown(root, pwd.getpwnam("nobody").pw_uid, -1)
    pwfile, data = os.path.join(root, "pw"), os.path.join(root, "data")
    with open(pwfile, "w") as f:
        f.write(PASSWORD)
    os.chmod(pwfile, 0o644)
    run = dict(capture_output=True, text=True, timeout=120)
    try:
        proc = subprocess.run(_as_server_user([initdb, "-D", data, "-U", "edgekd", "--pwfile", pwfile, "--no-sync",
                                               "-A", "scram-sha-256", "-E", "UTF8"]), **run)
        if proc.returncode != 0:
            raise Unavailable(f"initdb failed: {proc.stderr.strip()[-300:]}")
        opts = f"-k {root} -c listen_addresses='' -p {PORT} -F -c max_connections=200"
        proc = subprocess.run(_as_server_user([pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-o",
                                               opts, "start"]), **run)
        if proc.returncode != 0:
            raise Unavailable(f"pg_ctl start failed: {proc.stderr.strip()[-300:]}")
        yield Cluster(root)
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(_as_server_user([pg_ctl, "-D", data, "-m", "immediate", "stop"]), **run)
        shutil.rmtree(root, ignore_errors=True)
