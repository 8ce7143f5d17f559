"""edgekd._tmp: every temporary lives in a per-process folder that the next run removes once its owner is gone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile

import pytest

from edgekd import _tmp
from tests._interrupt import child_env, interrupt_at, leftovers, strays

MAKE_TEMPS = """
import sys
from edgekd import _tmp
d = _tmp.mkdtemp(prefix="edgekd_check_")
fd, f = _tmp.mkstemp(prefix="edgekd_tflm_", suffix=".log")
print(_tmp.process_dir(), d, f)
_tmp.checkpoint("made")
"""


def _run(code: str, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(tmp_path):
    (tmp_path / "tmp").mkdir()
    return child_env(tmp_path / "tmp")


def test_temporaries_live_in_one_private_per_process_folder_removed_at_exit(env, tmp_path):
    proc = _run(MAKE_TEMPS, env)
    assert proc.returncode == 0, proc.stderr
    folder, d, f = proc.stdout.split()
    root = tmp_path / "tmp" / f"edgekd-{os.getuid()}"
    assert os.path.dirname(folder) == str(root) and os.path.dirname(d) == folder and os.path.dirname(f) == folder
    assert re.match(r"^\d+-(\d+|x)-[0-9a-f]{8}$", os.path.basename(folder))
    assert oct(os.stat(root).st_mode & 0o777) == "0o700"
    assert strays(tmp_path / "tmp") == []  # removed when the process ended


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_processs_folder_is_removed_by_the_next_run(env, tmp_path, sig):
    run = interrupt_at([sys.executable, "-c", MAKE_TEMPS], env, "made", sig, timeout=60)
    assert run.returncode == -sig
    left = strays(tmp_path / "tmp")
    assert len(left) == 3 and any("edgekd_check_" in p for p in left) and any("edgekd_tflm_" in p for p in left)
    # a live process's folder stays
    sleeper = subprocess.Popen([sys.executable, "-c", "from edgekd import _tmp; import time\n"
                                "print(_tmp.process_dir(), flush=True); time.sleep(60)"],
                               env=env, stdout=subprocess.PIPE, text=True)
    try:
        live = sleeper.stdout.readline().strip()
        # the sleeper's start swept the killed process's folder; the next run leaves the sleeper's alone
        proc = _run("from edgekd import _tmp; print(_tmp.process_dir())", env)
        assert proc.returncode == 0, proc.stderr
        assert strays(tmp_path / "tmp") == [os.path.relpath(live, tmp_path / "tmp")]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _tmp.sweep(os.path.dirname(live)) == [os.path.basename(live)]


def test_a_recycled_pid_is_not_the_owner():
    token = _tmp.owner_token()
    pid, start, where = token.split("-")
    assert _tmp.owner_alive(token)
    if start == "x":
        pytest.skip("no process start times here (/proc)")
    assert not _tmp.owner_alive(f"{pid}-{int(start) + 1}-{where}")
    assert _tmp.owner_alive(f"{pid}-{int(start) + 1}-{int(where, 16) ^ 1:08x}")  # another machine's: unknown
    assert _tmp.owner_alive("not-a-token")


def test_a_forked_child_does_not_remove_its_parents_folder(env):
    code = ("import os, sys\nfrom edgekd import _tmp\nd = _tmp.process_dir()\npid = os.fork()\n"
            "if pid == 0:\n    sys.exit(0)\nos.waitpid(pid, 0)\nprint(os.path.isdir(d))\n")
    proc = _run(code, env)
    assert proc.returncode == 0 and proc.stdout.split() == ["True"], proc.stderr


def test_root_that_is_not_private_is_refused(tmp_path, monkeypatch):
    from edgekd.errors import OutputError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    other = tmp_path / "elsewhere"
    other.mkdir()
    (tmp_path / f"edgekd-{os.getuid()}").symlink_to(other)
    with pytest.raises(OutputError, match="not a private directory"):
        _tmp.root()
    (tmp_path / f"edgekd-{os.getuid()}").unlink()
    (tmp_path / f"edgekd-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(tmp_path / f"edgekd-{os.getuid()}", 0o777)
    with pytest.raises(OutputError, match="TMPDIR"):
        _tmp.root()


def test_python_tempdir_sends_library_temporaries_to_the_process_folder(env):
    code = ("import tempfile\nfrom edgekd import _tmp\nwith _tmp.python_tempdir() as d:\n"
            "    t = tempfile.mkdtemp()\nprint(d, t, tempfile.gettempdir() != d)\n")
    proc = _run(code, env)
    d, t, restored = proc.stdout.split()
    assert os.path.dirname(t) == d and restored == "True"


def test_signals_deferred_delivers_after_the_block():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(("handler", s)))
        try:
            with _tmp.signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                seen.append("inside")
            assert seen == ["inside", ("handler", signal.SIGTERM)]
        finally:
            signal.signal(signal.SIGTERM, old)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_what_earlier_versions_left_in_tmp_goes_once_an_hour_old(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = leftovers(tmp_path, ("edgekd_check_ab12cd34", "edgekd_tflm_zz99yy88.log"), "edgekd_check_freshone")
    (tmp_path / "someone_elses").mkdir()
    assert sorted(_tmp.sweep()) == old
    assert sorted(os.listdir(tmp_path)) == sorted(["edgekd_check_freshone", "someone_elses", f"edgekd-{os.getuid()}"])
