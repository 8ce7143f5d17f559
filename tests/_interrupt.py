"""Helpers of the interrupt tests: run a child that waits at a named stage, signal it there, snapshot folders.

The child is started with ``EDGEKD_TEST_PAUSE_AT=<stage>`` (see :func:`edgekd._tmp.checkpoint`): on
reaching the stage it appends ``<stage> <pid>`` to ``EDGEKD_TEST_PAUSE_FILE`` and waits. Every child
carries a unique ``EDGEKD_TEST_RUN`` tag in its environment so that processes it leaves behind (a
worker orphaned by SIGKILL of its parent) can be found and ended.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Interrupted:
    """How an interrupted child ended."""

    paused_pid: Optional[int]  # the process that reached the stage (the child or one of its own children)
    returncode: int
    stdout: str
    stderr: str


def child_env(tmpdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a child: its own TMPDIR, the checkout importable, a run tag."""
    env = dict(os.environ)
    env.update(TMPDIR=str(tmpdir), PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
               EDGEKD_TEST_RUN=uuid.uuid4().hex, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    for k in ("EDGEKD_TEST_PAUSE_AT", "EDGEKD_TEST_PAUSE_FILE", "EDGEKD_TEST_TRACE_FILE"):
        env.pop(k, None)
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgekd", *map(str, args)]


def tagged_pids(tag: str) -> list[int]:
    """Live processes whose environment carries ``EDGEKD_TEST_RUN=tag``."""
    needle = f"EDGEKD_TEST_RUN={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def end_stragglers(tag: str, timeout: float = 10.0) -> None:
    """SIGKILL what a run left running (e.g. a worker whose parent was killed) and wait for it to go."""
    deadline = time.monotonic() + timeout
    while True:
        pids = tagged_pids(tag)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {pids} of run {tag} do not end")
        time.sleep(0.05)


def interrupt_at(cmd: list[str], env: dict[str, str], stage: str, sig: int, *, cwd: Optional[str] = None,
                 timeout: float = 300.0, survives: tuple[int, ...] = ()) -> Interrupted:
    """Run ``cmd`` until it reaches ``stage``, send ``sig`` to it (the top process), wait for it to end.

    Fails if the run ends before reaching the stage. Processes it leaves behind are killed.
    ``survives``: signals sent first, each of which the run must outlive by a second (an ignored one).
    """
    pause_file = Path(env["TMPDIR"]).parent / f"pause-{uuid.uuid4().hex[:8]}.txt"
    env = dict(env, EDGEKD_TEST_PAUSE_AT=stage, EDGEKD_TEST_PAUSE_FILE=str(pause_file))
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    paused = None
    try:
        while paused is None:
            if pause_file.exists() and pause_file.read_text().endswith("\n"):
                paused = int(pause_file.read_text().split()[1])
            elif proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended ({proc.returncode}) before reaching {stage}:\n{out}\n{err}")
            elif time.monotonic() > deadline:
                raise AssertionError(f"the run did not reach {stage} in {timeout} s")
            else:
                time.sleep(0.02)
        for first in survives:
            proc.send_signal(first)
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
            out, err = proc.communicate()
            raise AssertionError(f"the run ended ({proc.returncode}) on signal {first}, which it should ignore:\n"
                                 f"{out}\n{err}")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        end_stragglers(env["EDGEKD_TEST_RUN"])
        pause_file.unlink(missing_ok=True)
    return Interrupted(paused, proc.returncode, out, err)


def trace(cmd: list[str], env: dict[str, str], *, cwd: Optional[str] = None,
          timeout: float = 600.0) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``cmd`` to the end, recording the stages it passes (in order, each once)."""
    trace_file = Path(env["TMPDIR"]).parent / f"trace-{uuid.uuid4().hex[:8]}.txt"
    env = dict(env, EDGEKD_TEST_TRACE_FILE=str(trace_file))
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        stages = list(dict.fromkeys(trace_file.read_text().split())) if trace_file.exists() else []
    finally:
        trace_file.unlink(missing_ok=True)
    return proc, stages


def snapshot(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (links by target), minus the top-level ``skip``."""
    out = {}
    if not folder.exists():
        return out
    for root, dirs, files in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel in skip:
                continue
            if os.path.islink(path):
                out[rel] = "link:" + os.readlink(path)
            else:
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def strays(tmpdir: Path, *parents: Path) -> list[str]:
    """What is left in ``tmpdir`` beyond edgekd's empty per-user root, and edgekd siblings in ``parents``."""
    left = []
    for root, dirs, files in os.walk(tmpdir):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.dirname(path) == str(tmpdir) and name.startswith("edgekd-") and os.path.isdir(path):
                continue
            left.append(os.path.relpath(path, tmpdir))
    for parent in parents:
        left += [str(parent / n) for n in os.listdir(parent) if n.startswith(".edgekd")]
    return sorted(left)


def leftovers(folder: Path, old: tuple[str, str], fresh: str, *, age_s: float = 7200.0) -> list[str]:
    """Make in ``folder`` what an earlier version left: ``old`` = (a folder, a file) aged ``age_s``, and
    ``fresh``, a folder made now; return the names of the two old ones."""
    (folder / old[0]).mkdir()
    (folder / old[0] / "model.tflite").write_text("x")
    (folder / old[1]).write_text("x")
    (folder / fresh).mkdir()
    then = time.time() - age_s
    for name in old:
        os.utime(folder / name, (then, then))
    return sorted(old)
