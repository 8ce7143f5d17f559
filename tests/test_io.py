"""edgekd._io: an output folder is replaced whole, also when the writer is interrupted or killed at any step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from edgekd import _io
from edgekd._tmp import owner_token
from tests._interrupt import child_env, interrupt_at, leftovers, snapshot, strays
from tests._staged_writer import tree

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_staged_writer.py")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
MINE = {"notes.txt": b"the user's own notes\n", "build/firmware.bin": b"\x7fELF built by the user\n"}


def _expected(version: str) -> dict[str, str]:
    """The snapshot of the output folder holding ``version`` plus the user's own files."""
    import hashlib

    files = {**tree(version), **MINE}
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def _write(outdir, version: str, *flags: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, WRITER, str(outdir), version, *flags], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def old_output(tmp_path):
    """(outdir, env): an output folder holding version "old" and the user's own files; the writer's TMPDIR."""
    (tmp_path / "tmp").mkdir()
    env = child_env(tmp_path / "tmp")
    out = tmp_path / "work" / "out"
    proc = _write(out, "old", env=env)
    assert proc.returncode == 0, proc.stderr
    for rel, data in MINE.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    assert snapshot(out) == _expected("old")
    return out, env


def test_staged_dir_swaps_the_whole_folder_and_keeps_the_users_files(old_output):
    out, env = old_output
    before = os.stat(out).st_ino
    proc = _write(out, "new", env=env)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(out) == _expected("new")
    assert os.stat(out).st_ino != before  # a new folder took the name in one step, not files moved one by one
    assert strays(out.parent.parent / "tmp", out.parent) == []


def test_staged_dir_failure_changes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with _io.staged_dir(out) as stage:
            (tmp_path / "x").write_text("")
            open(os.path.join(stage, "a.txt"), "w").write("new")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "old"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".edgekd")] == []
    with pytest.raises(RuntimeError):
        with _io.staged_dir(tmp_path / "fresh"):
            raise RuntimeError("boom")
    assert not (tmp_path / "fresh").exists()


def test_staged_dir_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with _io.staged_dir(link) as stage:
        open(os.path.join(stage, "new.txt"), "w").write("new")
    assert link.is_symlink() and (real / "new.txt").read_text() == "new" and (real / "old.txt").exists()


def test_working_directory_inside_the_output_follows_the_new_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    with _io.staged_dir(".") as stage:
        open(os.path.join(stage, "new.txt"), "w").write("new")
    assert os.path.samefile(os.getcwd(), out) and os.path.exists("new.txt")


# Stage -> what the output folder must hold once the writer is interrupted there: the old version
# (not yet swapped) or the new one (the swap, one step, was done).
EXCHANGE_STAGES = {"write:stage": "old", "write:file": "old", "write:staged": "old", "write:swap": "old",
                   "write:swapped": "new"}
FALLBACK_STAGES = {"write:swap": "old", "write:aside": None, "write:swapped": "new"}


def _check_interrupted(out, env, stage, sig, want, flags=()):
    run = interrupt_at([sys.executable, WRITER, str(out), "new", *flags], env, stage, SIGNALS[sig], timeout=60)
    assert "Traceback" not in run.stderr, run.stderr
    if sig == "SIGKILL":
        assert run.returncode == -signal.SIGKILL
    elif want is None:  # SIGINT/SIGTERM between the two renames: held until the second is done
        assert run.returncode == 130
        want = "new"
    else:
        assert run.returncode == 130, (run.returncode, run.stderr)
    got = snapshot(out)
    if want is None:  # SIGKILL between the two renames: the old folder waits beside, the next run puts it back
        aside = [n for n in os.listdir(out.parent) if n.startswith(".edgekd-old-")]
        assert not out.exists() and len(aside) == 1
        assert snapshot(out.parent / aside[0]) == _expected("old")
    else:
        assert got == _expected(want), f"{sig} at {stage}: a mix of old and new"
    if sig != "SIGKILL":  # the interrupted run cleaned up after itself
        assert strays(out.parent.parent / "tmp", out.parent) == []
    # The next run: any edgekd write into the same parent clears what the killed one left.
    proc = _write(out, "new", env=env)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(out) == _expected("new")
    assert strays(out.parent.parent / "tmp", out.parent) == []


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("stage", EXCHANGE_STAGES)
def test_interrupt_at_every_stage_leaves_old_or_new(old_output, stage, sig):
    out, env = old_output
    _check_interrupted(out, env, stage, sig, EXCHANGE_STAGES[stage])


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("stage", FALLBACK_STAGES)
def test_interrupt_with_the_two_rename_fallback(old_output, stage, sig):
    out, env = old_output
    _check_interrupted(out, env, stage, sig, FALLBACK_STAGES[stage], flags=("--no-exchange",))


@pytest.mark.parametrize("sig", SIGNALS)
def test_interrupted_single_file_write_leaves_the_old_file_and_no_temporary(tmp_path, sig):
    (tmp_path / "tmp").mkdir()
    env = child_env(tmp_path / "tmp")
    target = tmp_path / "out" / "model.tflite"
    target.parent.mkdir()
    target.write_bytes(b"old")
    run = interrupt_at([sys.executable, WRITER, str(target), "new", "--file"], env, "write:file", SIGNALS[sig])
    assert "Traceback" not in run.stderr, run.stderr
    assert target.read_bytes() == b"old"
    proc = _write(target, "new", "--file", env=env)
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == tree("new")["model.tflite"]
    assert os.listdir(target.parent) == ["model.tflite"]


def _dead_token() -> str:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        token = owner_token(child.pid)
    finally:
        child.kill()
        child.wait()
    return token


def test_clean_stale_touches_only_dead_owners_edgekd_siblings(tmp_path):
    dead, alive = _dead_token(), owner_token()
    names = [f".edgekd-stage-{dead}-{_io._key('out')}-abc", f".edgekd-tmp-{dead}-xyz",
             f".edgekd-stage-{alive}-{_io._key('out')}-abc", f".edgekd-tmp-{alive}-xyz",
             ".edgekd-stage-1-2-nothex-abc", ".edgekd-notes", "out"]
    for n in names:
        (tmp_path / n).mkdir() if "tmp-" not in n else (tmp_path / n).write_text("")
    assert sorted(_io.clean_stale(str(tmp_path))) == sorted(names[:2])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:])
    # a pid recycled by another process is not the owner: same pid, another start time
    pid, start, where = alive.split("-")
    recycled = f".edgekd-tmp-{pid}-{int(start) + 1 if start != 'x' else 'x'}-{where}-q"
    (tmp_path / recycled).write_text("")
    assert _io.clean_stale(str(tmp_path)) == ([recycled] if start != "x" else [])


def test_clean_stale_puts_back_an_old_folder_whose_name_did_not_fit(tmp_path):
    name = "o" * 250  # too long to fit in the sibling's name: only a write to that folder can put it back
    dead = _dead_token()
    old = tmp_path / (f".edgekd-old-{dead}-{_io._key(name)}-" + "o" * 10)
    old.mkdir()
    (old / "mine.txt").write_text("mine")
    assert _io.clean_stale(str(tmp_path)) == [] and old.exists()
    with _io.staged_dir(tmp_path / name) as stage:
        open(os.path.join(stage, "new.txt"), "w").write("new")
    assert sorted(os.listdir(tmp_path / name)) == ["mine.txt", "new.txt"]
    assert os.listdir(tmp_path) == [name]


def test_owned_names_of_the_previous_output_do_not_survive(tmp_path):
    out = tmp_path / "out"
    (out / "firmware-arduino").mkdir(parents=True)
    (out / "student.keras").write_text("the previous report's student")
    (out / "firmware-arduino" / "sketch.ino").write_text("old")
    (out / "notes.txt").write_text("mine")
    with _io.staged_dir(out, owned=["student.keras", "firmware-arduino", "trials.csv"]) as stage:
        open(os.path.join(stage, "trials.csv"), "w").write("new")
    assert sorted(os.listdir(out)) == ["notes.txt", "trials.csv"]
    # the same where the folder cannot be swapped and files are moved in one by one
    (out / "student.keras").write_text("old")
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "a.txt").write_text("new")
    _io._merge(str(stage), str(out), frozenset(["student.keras"]))
    assert sorted(os.listdir(out)) == ["a.txt", "notes.txt", "trials.csv"]


def test_atomic_save_renames_a_finished_file_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "student.keras"
    target.write_text("old")

    def fails(path):
        assert path.endswith(".keras") and os.path.dirname(path) == str(tmp_path)
        open(path, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _io.atomic_save(target, fails)
    assert os.listdir(tmp_path) == ["student.keras"] and target.read_text() == "old"
    _io.atomic_save(target, lambda path: open(path, "w").write("new"))
    assert os.listdir(tmp_path) == ["student.keras"] and target.read_text() == "new"


def test_clean_stale_removes_what_earlier_versions_left_once_an_hour_old(tmp_path):
    old = leftovers(tmp_path, (".edgekd-stage-k2j4_x9a", ".edgekd-a8d7q1zz.keras"), ".edgekd-stage-bbbbbbbb",
                    age_s=2 * _io.LEGACY_AGE_S)
    assert sorted(_io.clean_stale(str(tmp_path))) == old
    assert os.listdir(tmp_path) == [".edgekd-stage-bbbbbbbb"]  # maybe still being written by an older edgekd
