"""edgekd.fit / `edgekd fit`: a tiny search end to end, pruning before training, resume, budgets."""

from __future__ import annotations

import json
import os
import re

import pytest

import edgekd.distill
from edgekd.fit import SearchSpace, fit
from tests.conftest import assert_clean_error, run_cli

TINY = SearchSpace(width=(0.25, 0.5), resolution=(1.0,), depth=(1, 2), temperature=(2.0,))


@pytest.fixture
def count_trainings(monkeypatch):
    """Count real calls of edgekd.distill.distill (the real function still runs)."""
    calls = []
    real = edgekd.distill.distill

    def counting(*args, **kwargs):
        calls.append(kwargs.get("epochs"))
        return real(*args, **kwargs)

    monkeypatch.setattr(edgekd.distill, "distill", counting)
    return calls


def test_infeasible_candidates_are_never_trained(small_cnn, digits, count_trainings):
    # DS-CNN depth 2 at width 0.5 estimates ~2x the latency of depth 1 at width 0.25 on the nano33ble: pick a
    # budget between the smallest and the largest candidate's estimate so the profile rejects some.
    from edgekd.fit import build_student, estimate
    from edgekd import boards

    board = boards.get("nano33ble")
    lats = sorted(estimate(build_student("ds_cnn", small_cnn, (8, 8, 1), 10, w, 1.0, d), board)[3]
                  for w in TINY.width for d in TINY.depth)
    budget = (lats[0] + lats[1]) / 2  # only the cheapest candidate fits
    result = fit(small_cnn, train=(digits.train.x, digits.train.y), val=(digits.val.x, digits.val.y),
                 board="nano33ble", max_latency_ms=budget, trials=6, epochs=1, space=TINY, prune=False)
    infeasible = [t for t in result.trials if t.state == "infeasible"]
    assert infeasible and all(t.epochs_run == 0 and "latency" in t.violations for t in infeasible)
    trained = [t for t in result.trials if t.trained and not t.note.startswith("same as")]
    assert len(count_trainings) == result.trainings == len(trained)
    assert all(t.est_latency_ms <= budget for t in trained)


def test_cli_tiny_search_resume_and_check(small_cnn_path, tmp_path):
    out = tmp_path / "fit"
    args = ["fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nano33ble", "--epochs", "1",
            "--arch", "small_cnn", "--no-prune", "-o", out]
    proc = run_cli(*args, "--trials", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for f in ("trials.csv", "trials.json", "pareto.png", "model.tflite", "model_data.h", "model_data.cc",
              "study.db", "student.keras"):
        assert (out / f).is_file(), f
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = json.loads((out / "trials.json").read_text())
    assert sum(t["epochs_run"] > 0 and not t["note"].startswith("same as") for t in first["trials"]) == 2
    assert first["best"]["state"] == "passed"
    assert "teacher vs chosen student" in proc.stdout
    # resume: the same directory continues the study with one more trial
    proc = run_cli(*args, "--trials", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = json.loads((out / "trials.json").read_text())
    n = len(first["trials"])
    assert second["trials"][:n] == first["trials"]  # the earlier trials are kept, not rerun
    assert sum(t["epochs_run"] > 0 and not t["note"].startswith("same as") for t in second["trials"]) == 3
    # the chosen model passes `edgekd check` for the board
    proc = run_cli("check", out / "model.tflite", "--board", "nano33ble")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_budget_nothing_meets_exits_1_and_names_it(small_cnn_path, tmp_path):
    out = tmp_path / "fit"
    proc = run_cli("fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nano33ble",
                   "--max-ram", "1KB", "--trials", "3", "--epochs", "1", "-o", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"RAM budget \(1\.0 KB\) was exceeded by every one of the \d+ candidates", proc.stderr)
    data = json.loads((out / "trials.json").read_text())
    assert all(t["state"] == "infeasible" and t["epochs_run"] == 0 for t in data["trials"])
    assert not os.path.exists(out / "model.tflite")


def test_bad_input(small_cnn_path, tmp_path):
    assert_clean_error(run_cli("fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nope",
                               "-o", tmp_path / "o"), "Unknown board")
    assert_clean_error(run_cli("fit", "--teacher", str(tmp_path / "missing.keras"), "--dataset", "digits",
                               "--board", "nano33ble", "-o", tmp_path / "o"), "not found")
    assert_clean_error(run_cli("fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "uno",
                               "-o", tmp_path / "o"), "uno")


def test_identical_candidates_are_trained_once(small_cnn, digits, tmp_path, count_trainings):
    # small_cnn rounds its channels up to a multiple of 8: at depth 1, width 0.25 and 0.5 build one network.
    # The study proposes both (enqueued): the second candidate reuses the first's result.
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="edgekd-fit", directions=["maximize"])
    for width in (0.25, 0.5):
        study.enqueue_trial({"width": width, "resolution": 1.0, "depth": 1, "temperature": 2.0})
    result = fit(small_cnn, train=(digits.train.x, digits.train.y), val=(digits.val.x, digits.val.y),
                 board="nano33ble", arch="small_cnn", trials=2, epochs=1, prune=False, storage=storage,
                 space=SearchSpace(width=(0.25, 0.5), resolution=(1.0,), depth=(1,), temperature=(2.0,)))
    assert [t.width for t in result.trials] == [0.25, 0.5]
    assert len(count_trainings) == result.trainings == 1
    first, repeat = result.trials
    assert repeat.repeat_of == first.number and repeat.key == first.key
    assert repeat.int8_accuracy == first.int8_accuracy and repeat.epochs_run == first.epochs_run
    assert result.best.number == first.number  # a repeat is never the chosen model (it has no model of its own)


def test_resume_shows_the_chosen_students_float_accuracy(small_cnn, digits, tmp_path, count_trainings):
    from rich.console import Console

    from edgekd.fit import comparison_table

    kw = dict(train=(digits.train.x, digits.train.y), val=(digits.val.x, digits.val.y),
              test=(digits.test.x, digits.test.y), board="nano33ble", arch="small_cnn", trials=1, epochs=1,
              space=SearchSpace(width=(0.5,), resolution=(1.0,), depth=(1,), temperature=(2.0,)), prune=False,
              storage=f"sqlite:///{tmp_path / 'study.db'}", artifacts_dir=str(tmp_path / "trials"))
    first = fit(small_cnn, **kw)
    resumed = fit(small_cnn, **kw)  # nothing left to train: the chosen student is the first call's
    assert len(count_trainings) == 1 and resumed.trainings == 0 and resumed.best.number == first.best.number
    assert resumed.best_model is not None
    assert resumed.test_accuracy["float"] == pytest.approx(first.test_accuracy["float"])
    assert resumed.comparison["student"]["float_accuracy"] == pytest.approx(first.test_accuracy["float"])
    con = Console(record=True, width=160)
    comparison_table(resumed, print_fn=con.print)
    row = next(ln for ln in con.export_text().splitlines() if "float accuracy" in ln)
    assert "–" not in row, row
    # the chosen model carries the arena its trial measured (the firmware does not bisect it again)
    assert resumed.best_tflite.arena_bytes == first.best.arena_bytes == first.best_tflite.arena_bytes > 0
