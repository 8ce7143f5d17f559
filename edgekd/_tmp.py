"""edgekd's temporary files: one folder per process, which the next run cleans if the process died.

Every temporary edgekd creates (TFLM request folders and logs, TensorFlow's
SavedModel during conversion when edgekd runs it, the CLI's other scratch
files) lives under one folder per user, ``<tmp>/edgekd-<uid>/``, in a
sub-folder named after the process that owns it: ``<pid>-<start>-<where>``
(``start`` is the process start time where the system exposes it, so a
recycled pid is not mistaken for the owner; ``where`` names the machine and
pid namespace, outside which a pid means nothing). The folder is removed when its process exits
normally; a process killed by SIGKILL, a timeout or a crash leaves it behind,
and the next edgekd process that makes a temporary (and every CLI run) removes
the folders whose owner is no longer running.

The same owner token names the staging siblings of output folders
(:mod:`edgekd._io`), so those are cleaned by the same rule.

:func:`checkpoint` is a test hook: with ``EDGEKD_TEST_PAUSE_AT=<stage>`` in the
environment a process waits at that stage (and says so in
``EDGEKD_TEST_PAUSE_FILE``) so a test can interrupt it there;
``EDGEKD_TEST_TRACE_FILE`` records every stage passed. Nothing here is public API.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
from typing import Any, Iterator, Optional
import socket
import threading
import zlib

from edgekd.errors import OutputError

__all__ = ["checkpoint", "mkdtemp", "mkstemp", "owner_alive", "owner_token", "process_dir", "python_tempdir",
           "root", "signals_deferred", "sweep"]

_TOKEN = re.compile(r"^(\d+)-(\d+|x)-([0-9a-f]{8})$")
_state: dict[str, object] = {}  # pid -> process folder (forked children get their own)


# ---------------------------------------------------------------- owner tokens

def _start_time(pid: int) -> Optional[str]:
    """The process start time (clock ticks since boot) from /proc, or None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return data[data.rindex(b")") + 2:].split()[19].decode()
    except (ValueError, IndexError):
        return None


def _where() -> str:
    """8 hex digits naming this machine and pid namespace: a pid means something only there."""
    if "where" not in _state:
        try:
            ns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            ns = 0
        _state["where"] = f"{zlib.crc32(f'{socket.gethostname()}:{ns}'.encode()):08x}"
    return str(_state["where"])


def owner_token(pid: Optional[int] = None) -> str:
    """``<pid>-<start time>-<where>`` of a process (this one by default).

    ``start time`` is ``x`` where the system does not expose it; ``where``
    names the machine and pid namespace (:func:`owner_alive` judges only its own).
    """
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{_start_time(pid) or 'x'}-{_where()}"


def owner_alive(token: str) -> bool:
    """Whether the process a token names may still be running (the same process, not a recycled pid).

    Only a token of this machine and pid namespace can be judged dead: anything
    else, and any name that is not a token, counts as alive, so nothing that may
    be in use is ever removed.
    """
    m = _TOKEN.match(token)
    if not m or m.group(3) != _where() or os.name == "nt":  # Windows' os.kill(pid, 0) would end the process
        return True
    pid, start = int(m.group(1)), m.group(2)
    if pid == os.getpid():
        return start in ("x", _start_time(pid) or "x")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        pass
    if start == "x":
        return True
    now = _start_time(pid)
    return now is None or now == start


# ---------------------------------------------------------------- the per-user root and per-process folders

def root() -> str:
    """``<tmp>/edgekd-<uid>``: created mode 0700 on first use; refused if another user owns it."""
    base = tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = os.path.join(base, "edgekd" if uid is None else f"edgekd-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise OutputError(f"Cannot create edgekd's temporary folder {path}: {e.strerror}. "
                          "Set TMPDIR to a writable directory.") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or (uid is not None and (st.st_uid != uid or st.st_mode & 0o077)):
        raise OutputError(f"edgekd's temporary folder {path} is not a private directory of yours (a link, "
                          "another user's, or open to others). Remove it, or set TMPDIR to a directory of yours.")
    return path


def process_dir() -> str:
    """This process's temporary folder (created on first use, removed at exit; stale folders swept then)."""
    pid = os.getpid()
    path = _state.get(str(pid))
    if isinstance(path, str) and os.path.isdir(path):
        return path
    top = root()
    sweep(top)
    path = os.path.join(top, owner_token(pid))
    os.makedirs(path, mode=0o700, exist_ok=True)
    _state[str(pid)] = path
    if not _state.get("atexit"):
        atexit.register(_remove_own)
        _state["atexit"] = True
    return path


def _remove_own() -> None:
    path = _state.get(str(os.getpid()))  # a forked child never removes its parent's folder
    if isinstance(path, str):
        shutil.rmtree(path, ignore_errors=True)


def sweep(top: Optional[str] = None) -> list[str]:
    """Remove the per-process folders under :func:`root` whose process is gone; return what was removed."""
    try:
        top = top or root()
        names = os.listdir(top)
    except (OSError, OutputError):
        return []
    removed = []
    for name in names:
        if _TOKEN.match(name) and not owner_alive(name):
            shutil.rmtree(os.path.join(top, name), ignore_errors=True)
            removed.append(name)
    return removed + _sweep_legacy(os.path.dirname(top))


# What edgekd before this folder left in the temporary directory when killed: TFLM request folders and
# probe logs. No owner recorded: removed when this user's and an hour old.
_LEGACY = re.compile(r"^edgekd_(?:check_[a-z0-9_]{8}|tflm_[a-z0-9_]{8}\.log)$")


def _sweep_legacy(base: str) -> list[str]:
    try:
        names = [n for n in os.listdir(base) if _LEGACY.match(n)]
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if time.time() - st.st_mtime < 3600 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            continue
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
        removed.append(name)
    return removed


def mkdtemp(prefix: str = "edgekd_") -> str:
    """A new private folder in this process's temporary folder (:func:`tempfile.mkdtemp` there)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=process_dir())
    checkpoint(f"tmp:{prefix}")
    return path


def mkstemp(prefix: str = "edgekd_", suffix: str = "") -> tuple[int, str]:
    """``(fd, path)`` of a new file in this process's temporary folder (:func:`tempfile.mkstemp` there)."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=process_dir())
    checkpoint(f"tmp:{prefix}")
    return fd, path


@contextlib.contextmanager
def python_tempdir() -> Iterator[str]:
    """Point Python's :mod:`tempfile` default at this process's folder while the block runs.

    For libraries that make their own temporaries with ``tempfile.mkdtemp()``
    (TensorFlow's converter saves a SavedModel there): killed mid-way, they
    leave it where the next run finds and removes it.
    """
    path = process_dir()
    saved = tempfile.tempdir
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved


# ---------------------------------------------------------------- test hook

def checkpoint(stage: str) -> None:
    """Test hook at a named stage: trace it, and wait there if ``EDGEKD_TEST_PAUSE_AT`` names it.

    Costs one dictionary lookup when the variables are unset. The wait lasts
    until a signal ends it (SIGINT raises KeyboardInterrupt, as SIGTERM does in
    the CLI); a process waits at most once.
    """
    env = os.environ
    trace = env.get("EDGEKD_TEST_TRACE_FILE")
    if trace:
        with contextlib.suppress(OSError), open(trace, "a") as f:
            f.write(f"{stage}\n")
    if env.get("EDGEKD_TEST_PAUSE_AT") != stage or _state.get("paused"):
        return
    _state["paused"] = True
    where = env.get("EDGEKD_TEST_PAUSE_FILE")
    if where:
        with open(where, "a") as f:
            f.write(f"{stage} {os.getpid()}\n")
    else:
        print(f"edgekd: paused at {stage} (pid {os.getpid()})", file=sys.stderr, flush=True)
    while not _state.get("deferred"):  # a signal held by signals_deferred() ends the wait too
        time.sleep(0.05)


# ---------------------------------------------------------------- signals

_HELD = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while the block runs; deliver them, in order, when it ends.

    For the few steps that must not be split (renaming an output folder aside
    and the new one in): an interrupt then takes effect right after them. Python
    runs signal handlers in the main thread only, so from another thread this
    does nothing (no handler can interrupt it there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        held.append(signum)
        _state["deferred"] = True

    saved = {}
    try:
        for sig in _HELD:
            if signal.getsignal(sig) is not None:  # None: a handler installed outside Python, left alone
                saved[sig] = signal.signal(sig, hold)
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        _state.pop("deferred", None)
        for sig in held:
            signal.raise_signal(sig)
