"""Run native interpreters where their crashes and hangs cannot reach edgekd.

A model file is untrusted input, and the C++ interpreters that read it (LiteRT,
TFLM) can segfault, abort or loop forever on a malformed one. edgekd never runs
them in its own process. Two layers:

* :func:`run_worker` starts a worker module (``python -m …``, a fresh
  interpreter without TensorFlow) in its **own process group** with a deadline;
  on time-out, interrupt or any exception the whole group is killed
  (``killpg``), grandchildren included, and the last stage the worker announced
  says what was running.
* :func:`in_fork`, used inside a worker, runs one interpreter call sequence in
  a forked grandchild with its own deadline: a crash costs one fork, the worker
  gets ``{ok, value | error | signal | timed_out, stage, log}``. The grandchild
  announces its stage (``load``, ``allocate``, ``invoke`` …) through a pipe
  before each call, so a crash or a hang is attributed to the call it happened
  in. It also dies with its parent (``PR_SET_PDEATHSIG``).

Nothing here is public API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional

from edgekd.flatbuffer import prefix_model

STAGE_MARK = "edgekd-stage:"  # a worker announces its stage on stderr with lines "edgekd-stage: <name>"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (no orphan keeps a CPU busy)."""
    with contextlib.suppress(Exception):
        import ctypes  # inside the suppress: a Python built without ctypes still runs, without this guard

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _flush_c_stdio() -> None:
    with contextlib.suppress(Exception):
        import ctypes  # inside the suppress: a Python built without ctypes still runs, without the flush

        ctypes.CDLL(None).fflush(None)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def in_fork(fn: Callable[[Callable[[str], None]], Any], *, timeout: float, log_limit: int = 20000) -> dict:
    """Run ``fn(stage)`` in a forked grandchild with a deadline; never raises for what ``fn`` does.

    ``fn`` calls ``stage("allocate")`` (any name) before each native call; its
    return value must be JSON-serialisable. The grandchild's stdout and stderr
    (where the interpreters log) are captured.

    Returns:
        ``{"ok": True, "value": …}`` or ``{"ok": False, "error" | "signal" |
        "timed_out": …}``, plus ``"stage"`` (the last one announced, or
        ``"start"``), ``"log"`` (the captured output, last ``log_limit``
        characters) and ``"seconds"``.
    """
    # One function on purpose (over ~80 lines): the fork, the grandchild's straight-line path to os._exit and
    # the parent's read-with-deadline share the pipes' file descriptors, which must each be closed on every path.
    ctl_r, ctl_w = os.pipe()
    out_r, out_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # grandchild: report through ctl_w, log to out_w, never return
        code = 0
        try:
            os.close(ctl_r)
            os.close(out_r)
            _die_with_parent()
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(out_w)
            ctl = os.fdopen(ctl_w, "wb", buffering=0)

            def stage(name: str) -> None:
                ctl.write(b"S " + str(name).encode("ascii", "replace") + b"\n")

            try:
                payload = {"ok": True, "value": fn(stage)}
            except Exception as e:  # interpreters raise RuntimeError/ValueError on ordinary failures
                payload = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            _flush_c_stdio()
            ctl.write(b"R " + json.dumps(payload).encode() + b"\n")
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(ctl_w)
    os.close(out_w)
    ctl_buf, log_buf = bytearray(), bytearray()
    open_fds = {ctl_r: ctl_buf, out_r: log_buf}
    deadline = t0 + max(0.0, float(timeout))
    timed_out = False
    status = None
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select(list(open_fds), [], [], min(left, 1.0))
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    open_fds[fd].extend(chunk)
                    if fd == out_r and len(log_buf) > 4 * log_limit:
                        del log_buf[: len(log_buf) - 2 * log_limit]
                else:
                    del open_fds[fd]
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        else:  # both pipes closed: the grandchild is exiting (or closed them and hangs: bounded wait)
            while status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                elif time.monotonic() > deadline:
                    timed_out = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    break
                else:
                    time.sleep(0.001)
    finally:
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(pid, 0)
        for fd in (ctl_r, out_r):
            with contextlib.suppress(OSError):
                os.close(fd)
    seconds = time.monotonic() - t0
    stage_name, result = "start", None
    for line in bytes(ctl_buf).split(b"\n"):
        if line.startswith(b"S "):
            stage_name = line[2:].decode("ascii", "replace")
        elif line.startswith(b"R "):
            with contextlib.suppress(ValueError):
                result = json.loads(line[2:])
    log = bytes(log_buf).decode("utf-8", "replace")[-log_limit:]
    out: dict[str, Any]
    if timed_out:
        out = {"ok": False, "timed_out": True, "error": f"timed out after {timeout:.3g} s"}
    elif status is not None and os.WIFSIGNALED(status):
        out = {"ok": False, "signal": _signal_name(os.WTERMSIG(status))}
    elif result is None:
        code = os.WEXITSTATUS(status) if status is not None else None
        out = {"ok": False, "error": f"the interpreter process exited with status {code} and no result"}
    else:
        out = dict(result)
    out.update(stage=stage_name, log=log, seconds=seconds)
    return out


def failure_message(runtime: str, failure: Any) -> str:
    """``"<runtime> crashed with SIGSEGV during allocate at op 1 (SPLIT)"``: one line for a failed interpreter run.

    ``failure`` has ``timed_out``, ``signal``, ``error``, ``stage``, ``op_index`` and ``op_name``.
    """
    if failure.timed_out:
        what = failure.error or "timed out"
    elif failure.signal:
        what = f"crashed with {failure.signal}"
    else:
        lines = [ln.strip() for ln in (failure.error or "").splitlines() if ln.strip()]
        what = f"failed ({lines[0][:300] if lines else 'no message'})"
    where = ""
    if failure.op_index is not None:
        where = f" at op {failure.op_index}" + (f" ({failure.op_name})" if failure.op_name else "")
    return f"{runtime} {what} during {failure.stage}{where}"


def announce(stage: str) -> None:
    """Inside a worker: tell the parent which stage runs now (read back on a time-out)."""
    sys.stderr.write(f"{STAGE_MARK} {stage}\n")
    sys.stderr.flush()


@dataclasses.dataclass(frozen=True)
class WorkerExit:
    """How a worker process ended."""

    returncode: Optional[int]
    signal: Optional[str]
    timed_out: bool
    stage: str  # the last stage it announced ("start" if none)
    stderr: str
    seconds: float


def worker_env() -> dict:
    """Environment of a worker: this checkout importable, TensorFlow's C++ logging off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_worker(module: str, *args: str, timeout: float) -> WorkerExit:
    """Run ``python -m module ARGS`` in its own process group; kill the group at the deadline.

    The group is also killed when the caller is interrupted (KeyboardInterrupt,
    SystemExit from a signal handler), so no worker or grandchild outlives edgekd.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", module, *args], env=worker_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    err = b""
    try:
        try:
            _, err = proc.communicate(timeout=max(0.1, float(timeout)))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            _, err = proc.communicate()
    finally:
        if proc.poll() is None:  # interrupted: the group is still ours, take it down
            _kill_group(proc)
            with contextlib.suppress(Exception):
                proc.wait(5)
    text = (err or b"").decode("utf-8", "replace")
    stage = "start"
    for line in text.splitlines():
        if line.startswith(STAGE_MARK):
            stage = line[len(STAGE_MARK):].strip()
    rc = proc.returncode
    sig = _signal_name(-rc) if rc is not None and rc < 0 and not timed_out else None
    clean = "\n".join(ln for ln in text.splitlines() if not ln.startswith(STAGE_MARK))
    return WorkerExit(rc, sig, timed_out, stage, clean[-4000:], time.monotonic() - t0)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def narrow_to_op(model: bytes, n_ops: int, fails: Callable[[bytes], Optional[bool]]) -> Optional[int]:
    """The index of the first op whose prefix model fails, by bisection over prefixes.

    Args:
        model: The whole model (it fails).
        n_ops: Its operator count (main subgraph).
        fails: Runs a prefix model (:func:`edgekd.flatbuffer.prefix_model`) and
            says whether it fails; ``None`` when there is no time left.

    Returns:
        The op index, or None when it could not be narrowed down.
    """
    lo, hi = 0, n_ops  # a prefix of lo ops is fine (0 trivially), a prefix of hi ops fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            sub = prefix_model(model, mid)
        except Exception:  # a prefix that cannot be re-packed: give up narrowing, keep the failure
            return None
        verdict = fails(sub)
        if verdict is None:
            return None
        if verdict:
            hi = mid
        else:
            lo = mid
    return hi - 1
