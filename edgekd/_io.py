"""Atomic file output: write to a temporary path, then rename.

Only the CLI, the export writers and the firmware renderer touch disk, and
they all go through these helpers so a failure never leaves a half-written
file or directory behind. A file is written to a temporary beside it and
renamed over it (:func:`atomic_save`); an output folder is built in a
temporary sibling that replaces it in one atomic exchange of the two names
(:func:`staged_dir`). Interrupted or killed at any point, a writer leaves the
previous version or the new one, never a mix. Temporaries beside an output are
named after their owner process (:func:`edgekd._tmp.owner_token`); those of a
killed writer are removed by the next write into the same folder
(:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import importlib.util
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Iterator, Optional

from edgekd._tmp import checkpoint, owner_alive, owner_token, signals_deferred
from edgekd.errors import OutputError


def writable_parent(path: str) -> str:
    """The folder ``path`` will be written into, checked writable before any work (creating it is left to the writer).

    Raises:
        OutputError: No writable folder on the way to ``path``.
    """
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
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``; see :func:`atomic_save`.

    Returns:
        The path written.
    """
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_save(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8, ``\\n`` newlines) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path: str | os.PathLike, save: Callable[[str], Any]) -> str:
    """Call ``save(tmp)`` (e.g. ``model.save``) on a temporary path beside ``path``, then rename it to ``path``.

    The temporary (``.edgekd-tmp-<owner>-*``, with ``path``'s extension, by
    which Keras picks the format) is removed on any exception; one left by a
    killed process is removed by the next write into the same folder (see
    :func:`clean_stale`). The file is made readable by all (0644).

    Returns:
        The path written.
    """
    path = os.fspath(path)
    parent = writable_parent(path)
    try:
        os.makedirs(parent, exist_ok=True)
        clean_stale(parent)
        fd, tmp = tempfile.mkstemp(prefix=f".edgekd-tmp-{owner_token()}-", suffix=os.path.splitext(path)[1].lower(),
                                   dir=parent)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"Cannot write to {path}: {e.strerror}. Choose a writable output path.") from None
    try:
        save(tmp)
        os.chmod(tmp, 0o644)
        checkpoint("write:file")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


# ---------------------------------------------------------------- output folders, replaced whole

# .edgekd-<kind>-<owner token>-[<key>-]<rest>: kind "stage" (a folder being built, or after the swap the
# previous folder being removed), "old" (the previous folder set aside by the two-rename fallback; <rest>
# is the output folder's name, cut to fit) or "tmp" (a file being written by atomic_write_bytes). <key>
# names the output folder (:func:`_key`).
_SIBLING = re.compile(r"^\.edgekd-(stage|old|tmp)-(\d+-(?:\d+|x)-[0-9a-f]{8})-(?:([0-9a-f]{12})-)?(.*)$", re.S)
_NAME_MAX = 255
# What edgekd before owner tokens left when killed: ".edgekd-stage-" + 8 random characters (a staging
# folder) or ".edgekd-" + 8 (a file being written; ".keras" for a student). No owner to ask: removed once
# an hour old, when no write of that version can still be running.
_LEGACY = re.compile(r"^\.edgekd-(?:stage-)?[a-z0-9_]{8}(?:\.keras)?$")
LEGACY_AGE_S = 3600.0


def _key(name: str) -> str:
    """12 hex digits naming an output folder (by its base name) in its staging siblings' names."""
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _old_name(name: str) -> str:
    head = f".edgekd-old-{owner_token()}-{_key(name)}-"
    room = _NAME_MAX - len(head.encode())
    rest = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return head + rest


def clean_stale(parent: str, name: Optional[str] = None) -> list[str]:
    """Clear what killed edgekd processes left in ``parent``; return the entries handled.

    Only ``.edgekd-stage-*``, ``.edgekd-old-*`` and ``.edgekd-tmp-*`` entries
    whose owner process is gone (:func:`edgekd._tmp.owner_alive`) are touched,
    and those of earlier edgekd versions (no owner recorded) an hour old.
    A stage or temporary file is removed. A previous output folder that the
    two-rename fallback set aside is renamed back if its folder is missing
    (the process died between the two renames), removed if its folder exists,
    and kept when its folder's name is unknown (a name too long to fit in the
    sibling's, unless ``name``, the output folder being written, is that one).
    """
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    handled = []
    for entry in names:
        path = os.path.join(parent, entry)
        m = _SIBLING.match(entry)
        if not m:
            if _LEGACY.match(entry) and _older_than(path, LEGACY_AGE_S):
                _remove(path)
                handled.append(entry)
            continue
        if owner_alive(m.group(2)):
            continue
        if m.group(1) == "old":
            key, rest = m.group(3), m.group(4)
            target = name if name is not None and _key(name) == key else rest if _key(rest) == key else None
            if target is None:
                if not any(_key(n) == key for n in names if not n.startswith(".edgekd-")):
                    continue  # its folder is missing and its name unknown: keep the only copy
            elif not os.path.lexists(os.path.join(parent, target)):
                with contextlib.suppress(OSError):
                    os.rename(path, os.path.join(parent, target))
                    handled.append(entry)
                continue
        _remove(path)
        handled.append(entry)
    return handled


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _older_than(path: str, seconds: float) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > seconds
    except OSError:
        return False


def _carry_over(old: str, stage: str, owned: frozenset[str] = frozenset()) -> None:
    """Give ``stage`` every entry of ``old`` it does not produce itself (hard links, else copies).

    A folder of ``old`` is merged with the stage's folder of the same name; an
    entry where the stage has a file of that name, or a top-level entry named
    in ``owned``, is dropped. Raises OSError when an entry can be neither
    linked nor copied.
    """
    for root, dirs, files in os.walk(old):
        rel = os.path.relpath(root, old)
        dest = stage if rel == "." else os.path.join(stage, rel)
        if rel == ".":
            dirs[:] = [d for d in dirs if d not in owned]
            files = [f for f in files if f not in owned]
        keep = []
        for d in dirs:
            src, dst = os.path.join(root, d), os.path.join(dest, d)
            if os.path.islink(src):
                if not os.path.lexists(dst):
                    os.symlink(os.readlink(src), dst)
            elif not os.path.lexists(dst):
                os.mkdir(dst)
                shutil.copystat(src, dst)
                keep.append(d)
            elif os.path.isdir(dst) and not os.path.islink(dst):
                keep.append(d)
        dirs[:] = keep
        for f in files:
            src, dst = os.path.join(root, f), os.path.join(dest, f)
            if os.path.lexists(dst):
                continue
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:
                if not os.path.isfile(src):
                    raise
                shutil.copy2(src, dst)


def _merge(stage: str, outdir: str, owned: frozenset[str] = frozenset()) -> None:
    """Move the stage's files into ``outdir`` one by one (not atomic: where a folder cannot be swapped)."""
    for name in owned - set(os.listdir(stage)):
        path = os.path.join(outdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
    for root, _dirs, files in os.walk(stage):
        rel = os.path.relpath(root, stage)
        dest_root = outdir if rel == "." else os.path.join(outdir, rel)
        os.makedirs(dest_root, exist_ok=True)
        for name in files:
            os.replace(os.path.join(root, name), os.path.join(dest_root, name))


_EXCHANGE: list[Any] = []


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE, macOS renamex_np RENAME_SWAP).

    Returns False where the system or file system cannot; raises OSError on other failures.
    """
    if not _EXCHANGE:
        fn = None
        with contextlib.suppress(Exception):
            import ctypes  # inside the suppress: without ctypes, the switch falls back to two renames

            libc = ctypes.CDLL(None, use_errno=True)
            if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
                raw = libc.renameat2
                raw.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn = lambda x, y: raw(-100, x, -100, y, 2)  # noqa: E731  AT_FDCWD, RENAME_EXCHANGE
            elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
                raw = libc.renamex_np
                raw.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
                fn = lambda x, y: raw(x, y, 2)  # noqa: E731  RENAME_SWAP
            _EXCHANGE.append((fn, ctypes))
        if not _EXCHANGE:
            _EXCHANGE.append((None, None))
    fn, ctypes = _EXCHANGE[0]
    if fn is None:
        return False
    if fn(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), b)


def _publish(stage: str, outdir: str, owned: frozenset[str] = frozenset()) -> None:
    """Make the finished ``stage`` the folder ``outdir``; on return the stage path holds nothing of value."""
    if not os.path.lexists(outdir):
        os.chmod(stage, 0o755)
        checkpoint("write:swap")
        try:
            os.rename(stage, outdir)
            return
        except OSError as e:  # created meanwhile by someone else: replace it like an existing folder
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    try:
        _carry_over(outdir, stage, owned)
        os.chmod(stage, stat.S_IMODE(os.stat(outdir).st_mode))
    except OSError:
        _merge(stage, outdir, owned)
        return
    checkpoint("write:swap")
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    inside = cwd is not None and (cwd == outdir or cwd.startswith(outdir.rstrip(os.sep) + os.sep))
    aside = None  # the old folder, once the new one holds the name (two-rename fallback only)
    try:
        with signals_deferred():
            if not _exchange(stage, outdir):  # after an exchange the stage path holds the old folder
                old = os.path.join(os.path.dirname(outdir), _old_name(os.path.basename(outdir)))
                try:
                    os.rename(outdir, old)
                except OSError:  # e.g. a mount point
                    _merge(stage, outdir, owned)
                    return
                try:
                    checkpoint("write:aside")
                    os.rename(stage, outdir)
                except BaseException:
                    os.rename(old, outdir)
                    raise
                aside = old
        if inside:  # this process's working directory was in the old folder: follow the name
            with contextlib.suppress(OSError):
                os.chdir(cwd if os.path.isdir(cwd) else outdir)
        checkpoint("write:swapped")
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(outdir: str | os.PathLike, *, owned: Iterable[str] = ()) -> Iterator[str]:
    """Build a folder in a temporary sibling, then put it in place of ``outdir`` in one step.

    Files already in ``outdir`` that the stage does not produce are kept (hard
    links to them, or copies, join the stage before the swap), except the
    top-level names in ``owned``: entries of the output that a new version may
    leave out (the old one would not match the rest); produced files replace
    existing ones. The finished stage replaces ``outdir`` with one
    atomic exchange of the two names (``renameat2(RENAME_EXCHANGE)`` on Linux,
    ``renamex_np(RENAME_SWAP)`` on macOS), so a reader, or a process killed at
    any point, sees the whole previous folder or the whole new one, never a
    mix. Where the system cannot exchange, the old folder is renamed aside
    (``.edgekd-old-*``) and the stage renamed in: a process killed between the
    two renames leaves the folder missing until the next edgekd write into the
    same parent renames the old one back. Where the folder cannot be renamed at
    all (a mount point) or its other files cannot be carried over, the files
    are moved in one by one, as a fallback that is not atomic.

    On any exception nothing in ``outdir`` changes (and a new ``outdir`` is not
    created). Staging siblings left by a killed process are removed by the next
    write into the same parent (:func:`clean_stale`). A symbolic link given as
    ``outdir`` stays; the folder it points to is replaced.

    Yields:
        The staging directory to write into (mirror the final tree there).
    """
    outdir = os.path.abspath(os.fspath(outdir))
    if os.path.islink(outdir):
        outdir = os.path.realpath(outdir)
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise OutputError(f"Output path {outdir} exists and is not a directory. Choose a directory path.")
    parent = writable_parent(outdir)
    if os.path.isdir(outdir) and not os.access(outdir, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write to {outdir}: permission denied. Choose a writable output directory.")
    try:
        os.makedirs(parent, exist_ok=True)
        clean_stale(parent, os.path.basename(outdir))
        stage = tempfile.mkdtemp(prefix=f".edgekd-stage-{owner_token()}-{_key(os.path.basename(outdir))}-",
                                 dir=parent)
    except OSError as e:
        raise OutputError(f"Cannot write to {outdir}: {e.strerror}. Choose a writable output directory.") from None
    try:
        checkpoint("write:stage")
        yield stage
        checkpoint("write:staged")
        _publish(stage, outdir, frozenset(owned))
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


class QuietTensorFlowImport:
    """Meta-path hook: the first ``import tensorflow`` runs with its native chatter silenced.

    TensorFlow prints CUDA probes and absl banners straight to fds 1/2 at import; a CLI user should see
    none of it. Commands import TensorFlow only after their cheap argument checks, so a bad-input error
    stays instant; this hook makes whichever import comes first quiet.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        with quiet_native_output():
            module = importlib.import_module("tensorflow")
            try:
                module.constant(0)  # the CUDA probe logs on first use
            except Exception:  # pragma: no cover
                pass
        return importlib.util.spec_from_loader(name, _Loaded(module), origin=getattr(module, "__file__", None))


class _Loaded:
    """Loader that hands back a module already imported."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def create_module(self, spec: Any) -> Any:
        return self.module

    def exec_module(self, module: Any) -> None:
        pass


def quiet_tensorflow() -> None:
    """Silence TensorFlow's native start-up chatter (CUDA probes, absl banners) for this process.

    Call it before anything imports TensorFlow; the ``edgekd`` command does. Set ``EDGEKD_VERBOSE=1``
    to keep the chatter.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())
