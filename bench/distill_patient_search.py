"""Single-seed runs on the digits **validation** split for choosing distill_patient's configuration.

Each positional argument is one run, ``key=value`` pairs joined with commas, e.g.
``setting=clean,student=cnn0.5,mode=patient,aug=shift+mixup,T=4,alpha=0.1,epochs=150,teachers=3``.
Modes: ``teacher`` (the teacher or ensemble), ``scratch`` (constant LR, hard labels), ``scratch_patient``
(patient schedule, ``aug``, hard labels), ``patient`` (``distill(recipe="patient")``). One JSON line per
run is appended to ``--log``. Teachers are kept on disk (``--cache``) so later calls reuse them.
The test split is never read.

Usage: python bench/distill_patient_search.py RUN [RUN ...] [--log FILE] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import distill_patient as dp  # noqa: E402
from distill_common import train_ce  # noqa: E402

DEFAULTS = {"setting": "clean", "student": "mlp", "mode": "patient", "aug": "none", "T": 4.0, "alpha": 0.1,
            "epochs": 150, "teachers": 1, "seed": 0, "lr": 3e-3, "batch": 64}


def parse(text: str) -> dict:
    cfg = dict(DEFAULTS)
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        cfg[key] = type(DEFAULTS[key])(value) if key in DEFAULTS else value
    return cfg


def teachers(ds, cfg, cache: str):
    """The run's teacher (ensemble list when teachers > 1), trained once and kept under ``cache``."""
    setting, seed = cfg["setting"], cfg["seed"]
    _, _, _, xt, yt, t_epochs = dp._data(ds, setting, seed)
    few = setting == "few-labels"
    out = dp.saved_teachers([os.path.join(cache, f"teacher_{'few' if few else 'all'}_{seed}_{i}.keras")
                             for i in range(cfg["teachers"])], xt, yt, epochs=t_epochs, seed=seed)
    return out[0] if len(out) == 1 else out


def run(ds, cfg, cache: str) -> dict:
    from edgekd.distill import distill

    xl, yl, xu, _, _, _ = dp._data(ds, cfg["setting"], cfg["seed"])
    teacher = teachers(ds, cfg, cache)
    seed = cfg["seed"] + 100
    t0 = time.time()
    if cfg["mode"] == "teacher":
        model = teacher
    elif cfg["mode"] == "scratch":
        model = train_ce(dp.make_student(cfg["student"], seed, cfg["setting"]), xl, yl,
                         epochs=cfg["epochs"], seed=seed)
    elif cfg["mode"] == "scratch_patient":
        model = dp.train_scratch_patient(dp.make_student(cfg["student"], seed, cfg["setting"]), xl, yl,
                                         epochs=cfg["epochs"], augment=cfg["aug"], batch_size=cfg["batch"],
                                         lr=cfg["lr"], seed=seed)
    else:
        model = distill(teacher, dp.make_student(cfg["student"], seed, cfg["setting"]), x=xl, y=yl,
                        unlabeled_x=xu, epochs=cfg["epochs"], batch_size=cfg["batch"], learning_rate=cfg["lr"],
                        temperature=cfg["T"], alpha=cfg["alpha"], recipe="patient",
                        augment=None if cfg["aug"] == "none" else cfg["aug"], seed=seed, verbose=0).student
    out = dict(cfg, seconds=round(time.time() - t0, 1))
    if cfg["setting"] == "omitted":
        out.update({k: round(v, 4) for k, v in dp._omitted_scores(model, ds, ds.val).items()})
    else:
        out["val"] = round(dp._accuracy(model, ds.val.x, ds.val.y), 4)
    if not isinstance(model, list):
        out["params"] = int(model.count_params())
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--log", default="/tmp/h16/search.jsonl")
    parser.add_argument("--cache", default="/tmp/h16/teachers")
    args = parser.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    os.makedirs(os.path.dirname(args.log), exist_ok=True)
    from edgekd.datasets import digits

    ds = digits()
    for text in args.runs:
        out = run(ds, parse(text), args.cache)
        print(json.dumps(out), flush=True)
        with open(args.log, "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
