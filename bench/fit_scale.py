"""Distributed `edgekd fit`: wall time to a fixed number of trials with 1, 2 and 4 workers on one PostgreSQL study.

    python bench/fit_scale.py [--trials 8 --epochs 2 --workers 1,2,4]

A throwaway PostgreSQL cluster (tests/fit/pgcluster.py) holds one empty database per run; N
`edgekd fit` processes start together with the same command (small_cnn students of a digits
teacher, nano33ble budgets) and divide the trials. Reported per N: the wall time from the
start to the last worker's exit, the speed-up over one worker, the ideal (one worker's time / N,
and no better than the machine's cores allow), the trials trained per worker, and whether
every worker wrote the same model.tflite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench._report import write_section  # noqa: E402
from tests.fit.pgcluster import cluster  # noqa: E402


def teacher(path: str) -> None:
    """A small CNN teacher on digits (as tests/conftest.py's)."""
    import keras

    from edgekd.datasets import digits

    ds = digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.train.x, ds.train.y, epochs=10, batch_size=64, verbose=0)
    model.save(path)


def run(n: int, url: str, teacher_path: str, work: str, trials: int, epochs: int) -> dict:
    """N workers at once on an empty study: wall time, trials per worker, identical outputs."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    outs = [os.path.join(work, f"w{n}_{i}") for i in range(n)]
    load = os.getloadavg()[0]  # other processes on the machine: they take cores from the workers
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "edgekd", "fit", "--teacher", teacher_path, "--dataset", "digits",
                               "--board", "nano33ble", "--arch", "small_cnn", "--epochs", str(epochs), "--trials",
                               str(trials), "--no-prune", "--storage", url, "-o", out], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for out in outs]
    logs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    codes = [p.returncode for p in procs]
    if any(codes):
        raise SystemExit(f"{n} workers: exit statuses {codes}\n" + logs[codes.index(max(codes))][-3000:])
    rows = json.loads(open(os.path.join(outs[0], "trials.json")).read())["trials"]
    trained = [r for r in rows if r["epochs_run"] > 0 and not r["note"].startswith("same as")
               and r["state"] != "failed"]
    models = {open(os.path.join(o, "model.tflite"), "rb").read() for o in outs}
    return {"wall": wall, "load": load, "trained": len(trained), "keys": len({r["key"] for r in trained}),
            "per_worker": [sum(f"  trial {r['number']}: " in log for r in trained) for log in logs],
            "identical": len(models) == 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-fit-scale-") as work, cluster() as pg:
        teacher_path = os.path.join(work, "teacher.keras")
        teacher(teacher_path)
        for n in counts:
            results[n] = run(n, pg.database(f"scale_{n}"), teacher_path, work, args.trials, args.epochs)
            print(n, results[n], flush=True)
    one = results[counts[0]]["wall"] * counts[0]
    cores = os.cpu_count() or 1
    lines = ["| workers | wall time (s) | speed-up | ideal (s) | trials trained (per worker) | distinct "
             "candidates | same model.tflite in every -o | load average before |",
             "|---|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        ideal = one / min(n, cores)
        lines.append(f"| {n} | {r['wall']:.1f} | {one / r['wall']:.2f}× | {ideal:.1f} | {r['trained']} "
                     f"({' + '.join(map(str, r['per_worker']))}) | {r['keys']} | {'yes' if r['identical'] else 'NO'} "
                     f"| {r['load']:.1f} |")
    loads = [r["load"] for r in results.values()]
    busy = (f" This run had no free core (load average {min(loads):.1f}–{max(loads):.1f} on {cores} cores): it "
            "shows that the work is divided exactly, not the speed-up.") if min(loads) >= cores else ""
    body = f"""## fit_scale — distributed `edgekd fit`: 1, 2 and 4 workers on one PostgreSQL study

Each row: N `edgekd fit` processes started at once with the same command on an empty PostgreSQL 15
database (a throwaway local cluster), `--arch small_cnn --trials {args.trials} --epochs {args.epochs}
--no-prune` on digits for the nano33ble. Wall time runs from the start to the last worker's exit
(each worker also loads TensorFlow and the teacher, tests the chosen model and writes the report).
Ideal = one worker's time / N, but no better than the machine's {cores} cores allow (N > cores cannot
run N trainings at once). The load average is the machine's before the run: other processes sharing
the cores leave the workers less than the ideal assumes.

{chr(10).join(lines)}

Workers divide the trials through the database (one claim per trained candidate, docs/fit.md): every
row trains exactly {args.trials} distinct candidates and every worker writes the same model.tflite.
The speed-up is bounded by free cores: where the load average before a run is at or above the
machine's {cores} cores, more workers only share the same CPU time (and each adds its fixed cost:
TensorFlow import, teacher, the final report); on a machine (or machines) with a free core per
worker, the trials run side by side.{busy}
"""
    write_section("fit_scale", body, command="python bench/fit_scale.py")


if __name__ == "__main__":
    main()
