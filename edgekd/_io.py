"""Atomic file output: write to a temporary path, then rename.

Only the CLI, the export writers and the firmware renderer touch disk, and
they all go through these helpers so a failure never leaves a half-written
file or directory behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from edgekd.errors import OutputError


def _writable_parent(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path)) or "."
    probe = parent
    while not os.path.exists(probe):
        nxt = os.path.dirname(probe)
        if nxt == probe:
            break
        probe = nxt
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"Cannot write to {path}: {probe} is not a writable directory. "
            "Choose an output path in a directory you can write to."
        )
    return parent


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Returns:
        The path written.
    """
    path = os.fspath(path)
    parent = _writable_parent(path)
    try:
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".edgekd-", dir=parent)
    except OSError as e:
        raise OutputError(f"Cannot write to {path}: {e.strerror}. Choose a writable output path.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8, ``\\n`` newlines) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_dir(outdir: str | os.PathLike) -> Iterator[str]:
    """Stage a directory's files in a temporary sibling; move them in on success.

    Files already in ``outdir`` that the stage does not produce are kept;
    produced files replace existing ones. On any exception nothing in
    ``outdir`` changes (and a new ``outdir`` is not created).

    Yields:
        The staging directory to write into (mirror the final tree there).
    """
    outdir = os.path.abspath(os.fspath(outdir))
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise OutputError(f"Output path {outdir} exists and is not a directory. Choose a directory path.")
    parent = _writable_parent(outdir)
    if os.path.isdir(outdir) and not os.access(outdir, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write to {outdir}: permission denied. Choose a writable output directory.")
    try:
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".edgekd-stage-", dir=parent)
    except OSError as e:
        raise OutputError(f"Cannot write to {outdir}: {e.strerror}. Choose a writable output directory.") from None
    try:
        yield stage
        created = not os.path.exists(outdir)
        if created:
            os.replace(stage, outdir)
            os.chmod(outdir, 0o755)
            return
        for root, dirs, files in os.walk(stage):
            rel = os.path.relpath(root, stage)
            dest_root = outdir if rel == "." else os.path.join(outdir, rel)
            os.makedirs(dest_root, exist_ok=True)
            for name in files:
                os.replace(os.path.join(root, name), os.path.join(dest_root, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what native code (the TFLite converter, LiteRT) prints straight to fds 1 and 2.

    Python-level exceptions still propagate; only the C++ chatter is dropped.
    Set ``EDGEKD_VERBOSE=1`` to keep it.
    """
    if os.environ.get("EDGEKD_VERBOSE"):
        yield
        return
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
