"""Distributed `edgekd fit`: many workers, one PostgreSQL study, one result.

A real PostgreSQL server (a throwaway cluster in a temp folder, run as an unprivileged user, reached
through its Unix socket only) holds the study; `edgekd fit` workers are separate processes started
together on an empty database, as on several machines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, assert_clean_error, run_cli

from tests.fit.pgcluster import PASSWORD, Unavailable, cluster


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster for this module: yields a function making an empty database's URL."""
    try:
        with cluster() as pg:
            yield pg.database
    except Unavailable as e:
        pytest.skip(str(e))


def _worker(*args, log: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "edgekd", *map(str, args)], cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT, text=True)


def _fit_args(teacher: str, url: str, trials: int, *extra) -> list:
    return ["fit", "--teacher", teacher, "--dataset", "digits", "--board", "nano33ble", "--arch", "small_cnn",
            "--epochs", "1", "--trials", str(trials), "--no-prune", "--storage", url, *extra]


def _study(url: str) -> list:
    """Every trial of the one study in ``url``: (number, Optuna state, edgekd record or None)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    return [(t.number, t.state.name, t.user_attrs.get("trial")) for t in study.get_trials(deepcopy=False)]


def _trained(trials: list) -> list:
    return [r for _, state, r in trials if r and r["epochs_run"] > 0 and not r["note"].startswith("same as")
            and r["state"] != "failed" and state != "FAIL"]


def test_two_workers_divide_the_trials_and_write_one_result(postgres, small_cnn_path, tmp_path):
    url = postgres("two_workers")
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [_worker(*_fit_args(small_cnn_path, url, 3), "-o", out, log=str(tmp_path / f"{out.name}.log"))
             for out in outs]
    codes = [p.wait(timeout=300) for p in procs]
    logs = [(tmp_path / f"{out.name}.log").read_text() for out in outs]
    assert codes == [0, 0], "\n\n".join(logs)
    assert all(PASSWORD not in log for log in logs)
    trials = _study(url)
    trained = _trained(trials)
    assert len(trained) == 3, trials  # exactly --trials across both workers
    assert len({r["key"] for r in trained}) == 3  # no candidate trained twice
    # distinct proposals without seeds picked per worker: no trial repeats another's point
    points = [(r["width"], r["resolution"], r["depth"], r["temperature"]) for _, _, r in trials if r]
    assert len(set(points)) == len(points), points
    assert all(state != "RUNNING" for _, state, _ in trials)
    # both workers trained (the work was divided) and both wrote the whole study's result
    assert all("trial" in log and "→ int8" in log for log in logs), "\n\n".join(logs)
    a, b = (json.loads((out / "trials.json").read_text()) for out in outs)
    assert a["trials"] == b["trials"] and a["best"] == b["best"] and a["best"] is not None
    for name in ("model.tflite", "model_data.cc", "student.keras", "trials.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    # a report alone, from the database: the same result, nothing trained
    rep = run_cli(*_fit_args(small_cnn_path, url, 3, "--report"), "-o", tmp_path / "r")
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert (tmp_path / "r" / "model.tflite").read_bytes() == (outs[0] / "model.tflite").read_bytes()
    assert json.loads((tmp_path / "r" / "trials.json").read_text())["trials"] == a["trials"]
    assert len(_study(url)) == len(trials)


def test_killed_worker_trial_is_failed_and_the_other_finishes(postgres, small_cnn_path, tmp_path):
    url = postgres("killed_worker")
    args = _fit_args(small_cnn_path, url, 2, "--heartbeat", "1")
    victim, survivor = (_worker(*args, "-o", tmp_path / n, log=str(tmp_path / f"{n}.log")) for n in ("a", "b"))
    deadline, mine = time.time() + 150, []
    while time.time() < deadline and not mine and victim.poll() is None:  # kill it while it trains a candidate
        mine = [r for _, state, r in _safe_study(url) if state == "RUNNING" and r and r["state"] == "running"
                and r["note"].endswith(f":{victim.pid})")]
        time.sleep(0.2)
    assert mine, (tmp_path / "a.log").read_text()
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert survivor.wait(timeout=300) == 0, (tmp_path / "b.log").read_text()
    log = (tmp_path / "b.log").read_text()
    trials = _study(url)
    killed = trials[mine[0]["number"]]
    assert killed[1] == "FAIL", trials  # Optuna failed it: its worker stopped beating
    assert len(_trained(trials)) == 2 and all(state != "RUNNING" for _, state, _ in trials), trials
    assert f"trial {killed[0]}: " in log and "failed" in log, log  # the survivor reported the lost trial
    # its candidate was queued again and trained by the survivor
    assert mine[0]["key"] in {r["key"] for r in _trained(trials)}
    rows = json.loads((tmp_path / "b" / "trials.json").read_text())["trials"]
    lost = next(r for r in rows if r["number"] == killed[0])
    assert lost["state"] == "failed" and "no heartbeat" in lost["note"]
    assert (tmp_path / "b" / "model.tflite").is_file()


def _safe_study(url: str) -> list:
    try:
        return _study(url)
    except (ValueError, KeyError, Exception):  # no study (or tables) yet: the worker is still starting
        return []


def test_storage_errors_are_one_line_before_anything_loads(postgres, small_cnn_path, tmp_path):
    url = postgres("storage_errors")
    wrong = url.replace(PASSWORD, "not-the-password")
    missing = url.replace("/storage_errors?", "/no_such_db?")
    refused = f"postgresql://edgekd:{PASSWORD}@/x?host={tmp_path}&port=1"
    for bad, fragment in ((wrong, "password authentication failed"), (missing, "no_such_db"),
                          (refused, "Cannot open the storage")):
        out = tmp_path / "out"
        proc = run_cli(*_fit_args(small_cnn_path, bad, 1), "-o", out)
        assert_clean_error(proc, fragment)
        assert PASSWORD not in proc.stderr + proc.stdout and "not-the-password" not in proc.stderr
        assert not out.exists()
    assert_clean_error(run_cli(*_fit_args(small_cnn_path, url, 1, "--report"), "-o", tmp_path / "r"),
                       "holds no study")
    assert not (tmp_path / "r").exists()


_CREATE = """
import sys, time
from edgekd.fit import shared
import sqlalchemy
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start together
storage = shared.rdb_storage(sys.argv[1], heartbeat=None)
import optuna
optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
shared.Claims(sqlalchemy.create_engine(sys.argv[1]), "s")
shared.DatabaseArtifactStore(sqlalchemy.create_engine(sys.argv[1]))
print("ok")
"""


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_workers_starting_together_on_an_empty_database_all_start(postgres, tmp_path, backend):
    """Optuna's table creation races (optuna#1092: a unique violation in PostgreSQL's catalog, alembic_version's
    key in sqlite); edgekd's own tables too. Six processes creating them at the same instant all succeed."""
    url = postgres("race") if backend == "postgresql" else f"sqlite:///{tmp_path / 'study.db'}"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    at = str(time.time() + 4)
    procs = [subprocess.Popen([sys.executable, "-c", _CREATE, url, at], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err[-1500:] for _, err in outs]
    assert all(out.strip() == "ok" for out, _ in outs)
