"""SIGINT, SIGTERM and SIGKILL at every stage of `export`, `firmware` and `fit`: old output or new, never a mix.

Each test drives the real CLI in child processes. A run is made to wait at a named stage
(``EDGEKD_TEST_PAUSE_AT``, :func:`edgekd._tmp.checkpoint`), signalled there, and then the output folder
must hold the whole previous output or the whole new one (with the user's own files in it either way),
the run must have removed its temporaries unless it was SIGKILLed, and after the next run nothing
edgekd made may be left: not in TMPDIR, not beside or inside the output folder. The stages are the
ones a traced run passes, so a stage added later is covered too (the slow variant: every stage times
every signal; the default run: a representative subset).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests._interrupt import child_env, cli_command, interrupt_at, snapshot, strays, trace

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
MINE = {"notes.txt": "the user's own notes\n", "build/app.bin": "built by the user\n"}
# Stages each command must pass (more may be traced: they are interrupted too).
KEY_STAGES = {
    "export": ("cli:command", "convert:calibrate", "convert:validate", "write:stage", "write:file", "write:staged",
               "write:swap", "write:swapped"),
    "firmware": ("cli:command", "tmp:edgekd_check_", "write:stage", "write:file", "write:staged", "write:swap",
                 "write:swapped"),
    "fit": ("cli:command", "fit:train", "convert:calibrate", "convert:validate", "tmp:edgekd_check_", "write:file",
            "write:stage", "write:staged", "write:swap", "write:swapped"),
}
# The default run's subset: (stage, signal) per command.
SUBSET = {
    "export": [("convert:calibrate", signal.SIGKILL), ("write:swap", signal.SIGTERM),
               ("write:swapped", signal.SIGINT)],
    "firmware": [("tmp:edgekd_check_", signal.SIGKILL), ("write:file", signal.SIGINT),
                 ("write:swap", signal.SIGKILL), ("write:swapped", signal.SIGTERM)],
    "fit": [("fit:train", signal.SIGTERM)],  # the write:* stages are export's and firmware's staged_dir
}


def _add_mine(out: Path) -> None:
    for rel, text in MINE.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)


def _left_inside(out: Path) -> list[str]:
    """edgekd's temporary entries inside the output folder (nested stages, half-written files)."""
    return sorted(os.path.relpath(os.path.join(r, n), out) for r, ds, fs in os.walk(out) for n in ds + fs
                  if n.startswith(".edgekd") or n.endswith(".tmp.keras"))


def _all_strays(tmp: Path, out: Path) -> list[str]:
    return strays(tmp, out.parent) + _left_inside(out)


class Case:
    """One command's output folder, run by the CLI again and again, interrupted at chosen stages."""

    def __init__(self, tmp_path: Path, args: list[str]):
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir(parents=True)
        self.out = tmp_path / "work" / "out"
        self.env = child_env(self.tmp)
        self.cwd = str(tmp_path)
        self.args(args)

    def args(self, args: list[str]) -> "Case":
        self.cmd = cli_command(*args, "-o", str(self.out))
        return self

    def traced_stages(self) -> list[str]:
        proc, stages = trace(self.cmd, self.env, cwd=self.cwd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return stages

    def interrupt(self, stage: str, sig: int):
        run = interrupt_at(self.cmd, self.env, stage, sig, cwd=self.cwd)
        assert "Traceback" not in run.stderr, f"{stage} {sig!r}:\n{run.stderr}"
        if sig == signal.SIGKILL:
            assert run.returncode == -signal.SIGKILL
        else:
            assert run.returncode in (0, 1, 128 + sig), (stage, sig, run.returncode, run.stderr)
            assert strays(self.tmp) == [], f"{stage} {sig!r}: the run left temporaries"
            if stage.startswith("write:"):  # it also cleared what earlier killed runs left beside the output
                assert _all_strays(self.tmp, self.out) == [], f"{stage} {sig!r}"
        return run

    def finish(self) -> None:
        """The next run, to the end: it clears what the killed runs left."""
        proc = self.run()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _all_strays(self.tmp, self.out) == []

    def run(self):
        import subprocess

        return subprocess.run(self.cmd, env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=900)


def _deterministic(case: Case, cases: list[tuple[str, int]], after_swap: set[str]) -> None:
    """Export / firmware: each interruption leaves exactly the old snapshot or exactly the new one.

    Interrupted before the swap the output is unchanged; from the swap on (``after_swap``) it is the new
    one, as the next complete run writes it (both commands are deterministic).
    """
    old = snapshot(case.out)
    seen = []
    for stage, sig in cases:
        before = snapshot(case.out)
        case.interrupt(stage, sig)
        seen.append((stage, sig, before, snapshot(case.out)))
    case.finish()
    new = snapshot(case.out)
    assert new != old and all(new[rel] == old[rel] for rel in MINE)
    for stage, sig, before, after in seen:
        want = "new" if stage in after_swap else "previous"
        assert after == (new if stage in after_swap else before), f"{stage} {sig!r}: not the {want} output"


def _pairs(case: Case, full: bool, command: str) -> tuple[list[tuple[str, int]], set[str]]:
    """The (stage, signal) runs and the stages after the switch: every traced stage by every signal, or the subset."""
    if not full:
        return SUBSET[command], {"write:swapped"}
    stages = case.traced_stages()
    missing = [s for s in KEY_STAGES[command] if s not in stages]
    assert not missing, f"{command} no longer passes {missing} (traced: {stages})"
    return [(s, sig) for s in stages for sig in SIGNALS], set(stages[stages.index("write:swapped"):])


# ---------------------------------------------------------------- export, firmware

def _old_export(out: Path, small_cnn_tflite, digits) -> None:
    from edgekd.export import write_export

    write_export(out, small_cnn_tflite[1], name="old_model")


def _old_firmware(out: Path, small_cnn_tflite, digits) -> None:
    from edgekd.firmware import render, write_project

    write_project(render(small_cnn_tflite[1], board="esp32s3", target="esp-idf", samples=digits.val,
                         num_samples=2), out)


# command -> (its arguments from the Keras model's and the .tflite's paths, how the previous output is made)
DETERMINISTIC = {
    "export": (lambda keras, tflite: ["export", keras, "--dataset", "digits"], _old_export),
    "firmware": (lambda keras, tflite: ["firmware", tflite, "-b", "esp32s3", "-t", "esp-idf", "--data", "digits",
                                        "--samples", "3"], _old_firmware),
}


def _check_deterministic(command, tmp_path, small_cnn_path, small_cnn_tflite, digits, full):
    args, make_old = DETERMINISTIC[command]

    def case(where: Path) -> Case:
        c = Case(where, args(small_cnn_path, small_cnn_tflite[0]))
        make_old(c.out, small_cnn_tflite, digits)
        _add_mine(c.out)
        return c

    pairs, after_swap = _pairs(case(tmp_path / "traced"), full, command)
    _deterministic(case(tmp_path), pairs, after_swap)


@pytest.mark.parametrize("command", DETERMINISTIC)
def test_interrupted_at_key_stages(command, tmp_path, small_cnn_path, small_cnn_tflite, digits):
    _check_deterministic(command, tmp_path, small_cnn_path, small_cnn_tflite, digits, full=False)


@pytest.mark.slow
@pytest.mark.parametrize("command", DETERMINISTIC)
def test_interrupted_at_every_stage_by_every_signal(command, tmp_path, small_cnn_path, small_cnn_tflite, digits):
    _check_deterministic(command, tmp_path, small_cnn_path, small_cnn_tflite, digits, full=True)


# ---------------------------------------------------------------- fit

# What one fit report is: replaced together. study.db and trials/ are the study itself (kept, each trial
# committed on its own) and the user's files are carried over.
FIT_KEPT = ("study.db", "trials", *MINE, "build")


def _report_inodes(out: Path) -> dict[str, int]:
    skip = set(FIT_KEPT)
    return {os.path.relpath(os.path.join(r, n), out): os.stat(os.path.join(r, n)).st_ino
            for r, ds, fs in os.walk(out) for n in fs
            if os.path.relpath(os.path.join(r, n), out).split(os.sep)[0] not in skip}


def _keras_weights(path: Path) -> bytes:
    """The weights file inside a .keras archive (its metadata holds the save time)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.read("model.weights.h5")


def _check_report(out: Path) -> None:
    """The report's files belong together: trials.json/csv, the chosen model, its export and firmware."""
    summary = json.loads((out / "trials.json").read_text())
    with open(out / "trials.csv", newline="") as f:
        assert [int(r["number"]) for r in csv.DictReader(f)] == [t["number"] for t in summary["trials"]]
    number = summary["best"]["number"]
    model = (out / "model.tflite").read_bytes()
    assert model == (out / "trials" / f"trial_{number:04d}.tflite").read_bytes()
    sha = hashlib.sha256(model).hexdigest()
    assert json.loads((out / "export.json").read_text())["sha256"] == sha and sha in (out / "model_data.h").read_text()
    marker = json.loads((out / "firmware-arduino" / "edgekd-project.json").read_text())
    assert marker["model"]["sha256"] == sha
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # the chosen trial's student, saved with the trial (by this run or, resumed, an earlier one)
    assert _keras_weights(out / "student.keras") == _keras_weights(out / "trials" / f"trial_{number:04d}.keras")
    assert all((out / rel).read_text() == text for rel, text in MINE.items())


def _check_fit(tmp_path, small_cnn_path, full):
    base = ["fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nano33ble", "--epochs", "1",
            "--arch", "small_cnn", "--no-prune", "--firmware", "arduino"]
    case = Case(tmp_path, base + ["--trials", "1"])
    proc = case.run()  # the previous report: one trial
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _add_mine(case.out)
    case.args(base + ["--trials", "2"])  # the same folder: the study resumes with one more trial
    if full:
        backup = tmp_path / "backup"
        shutil.copytree(case.out, backup, symlinks=True)
        pairs, after_swap = _pairs(case, full, "fit")
        shutil.rmtree(case.out)
        shutil.copytree(backup, case.out, symlinks=True)
    else:
        pairs, after_swap = _pairs(case, full, "fit")
    for stage, sig in pairs:
        before = _report_inodes(case.out)
        case.interrupt(stage, sig)
        after = _report_inodes(case.out)
        same = {rel for rel in after if before.get(rel) == after[rel]}
        if sig == signal.SIGKILL and stage not in after_swap:
            assert after == before, f"{stage} {sig!r}: the report changed"
        elif stage in after_swap:
            assert not same, f"{stage} {sig!r}: old files {sorted(same)} in the new report"
        else:  # fit stops the study and writes the report of the finished trials, or keeps the old one
            assert after == before or not same, f"{stage} {sig!r}: a mix: {sorted(same)} old"
        _check_report(case.out)
    case.finish()
    _check_report(case.out)
    assert len(json.loads((case.out / "trials.json").read_text())["trials"]) >= 2


@pytest.mark.slow  # ~50 s; `make test-slow`. test_io and the export/firmware cases cover the staged writes
def test_fit_interrupted_at_key_stages(tmp_path, small_cnn_path):
    _check_fit(tmp_path, small_cnn_path, full=False)


@pytest.mark.slow
def test_fit_interrupted_at_every_stage_by_every_signal(tmp_path, small_cnn_path):
    _check_fit(tmp_path, small_cnn_path, full=True)


# ---------------------------------------------------------------- single files (shrink; distill saves the same way)

@pytest.mark.slow
def test_shrink_killed_while_saving_keeps_the_old_student(tmp_path, small_cnn_path):
    case = Case(tmp_path, ["shrink", small_cnn_path, "--width", "0.5"])
    case.cmd[-1] = str(case.out.parent / "student.keras")  # -o FILE
    target = Path(case.cmd[-1])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the previous student")
    case.interrupt("write:file", signal.SIGKILL)
    assert target.read_bytes() == b"the previous student"
    assert len(os.listdir(target.parent)) == 2  # and the half-done temporary beside it
    proc = case.run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.read_bytes()[:2] == b"PK" and os.listdir(target.parent) == ["student.keras"]
    assert strays(case.tmp) == []
