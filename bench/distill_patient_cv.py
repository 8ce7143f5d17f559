"""Choosing distill_patient's configuration by 5-fold cross-validation on the digits **training** split.

The validation split cannot choose between configurations: the 3-CNN teacher ensemble and the student
trained from scratch both score 98.5 % there (4 of 269 images wrong), so every difference is one image.
Here each fold of the training split (~252 images) is held out in turn; the teachers and students of that
fold are trained on the other four (~1,007 images). Every held-out prediction (1,259 per model) and the
validation split's are kept, so rules such as the omitted-class bias adjustment can be compared on
predictions no model was trained on. The test split is never read.

Models (positional, ``KIND:STUDENT[:key=value...]``):
  ``scratch:cnn0.5`` — hard labels on the patient schedule (no augmentation);
  ``patient:cnn0.5:T=4:alpha=0.1`` — ``distill(recipe="patient")`` from the fold's teacher ensemble;
  ``omitted:cnn0.5:T=4:alpha=0.1`` — the same without any 3 in the transfer set.
Options ``epochs=`` and ``aug=`` apply to any kind. Logits go to ``--out``/fold{k}/{name}.npz (keys ``ho``,
``val``); the teachers' ensemble logits to ``teacher.npz``. Finished files are not recomputed, so a run
can be split over processes (``--folds 0,2,4`` and ``--folds 1,3``) and resumed.

Usage: python bench/distill_patient_cv.py MODEL [MODEL ...] [--folds 0,1,2,3,4] [--seed 0] [--out DIR]
       python bench/distill_patient_cv.py --report [--write] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import distill_patient as dp  # noqa: E402
from distill_common import ci95  # noqa: E402

FOLDS = 5
DIGIT = dp.DIGIT


def folds(y: np.ndarray, seed: int) -> np.ndarray:
    """A stratified fold number (0..4) for each training example."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        out[idx] = np.arange(len(idx)) % FOLDS
    return out


def _spec(text: str) -> dict:
    kind, student, *rest = text.split(":")
    cfg = {"kind": kind, "student": student, "T": 4.0, "alpha": 0.1, "epochs": 150, "aug": "none"}
    for part in rest:
        key, _, value = part.partition("=")
        cfg[key] = type(cfg[key])(value)
    return cfg


def _teachers(x, y, seed: int, folder: str, members: int = 3):
    """The fold's teacher ensemble, trained once and kept in ``folder`` (later models of the fold reuse it)."""
    return dp.saved_teachers([os.path.join(folder, f"teacher{i}.keras") for i in range(members)], x, y,
                             epochs=30, seed=seed)


def _train(cfg: dict, teachers, x, y, seed: int):
    from edgekd.distill import distill

    student = dp.make_student(cfg["student"], seed + 100)
    if cfg["kind"] == "scratch":
        return dp.train_scratch_patient(student, x, y, epochs=cfg["epochs"], augment=cfg["aug"], batch_size=64,
                                        lr=3e-3, seed=seed + 100)
    if cfg["kind"] == "omitted":
        keep = y != DIGIT
        x, y = x[keep], y[keep]
    return distill(teachers, student, x=x, y=y, epochs=cfg["epochs"], batch_size=64, learning_rate=3e-3,
                   temperature=cfg["T"], alpha=cfg["alpha"], recipe="patient",
                   augment=None if cfg["aug"] == "none" else cfg["aug"], seed=seed + 100, verbose=0).student


def run(models: list[str], fold_ids: list[int], seed: int, out: str) -> None:
    from edgekd.datasets import digits

    ds = digits()
    fold = folds(ds.train.y, seed)
    t0 = time.time()
    for k in fold_ids:
        d = os.path.join(out, f"fold{k}")
        os.makedirs(d, exist_ok=True)
        tr, ho = fold != k, fold == k
        x, y = ds.train.x[tr], ds.train.y[tr]
        teachers = None
        todo = [m for m in ["teacher"] + models if not os.path.exists(os.path.join(d, f"{m}.npz"))]
        for name in todo:
            if teachers is None:
                teachers = _teachers(x, y, seed + 10 * k, d)
            model = teachers if name == "teacher" else _train(_spec(name), teachers, x, y, seed + 10 * k)
            tmp = os.path.join(d, f".{name}.tmp.npz")
            np.savez(tmp, ho=dp.predict_logits(model, ds.train.x[ho]), val=dp.predict_logits(model, ds.val.x))
            os.replace(tmp, os.path.join(d, f"{name}.npz"))
            print(f"fold {k} {name}: {time.time() - t0:.0f}s", flush=True)


_LABELS = {"teacher": "teacher: ensemble of 3 CNNs"}


def _label(name: str) -> str:
    if name in _LABELS:
        return _LABELS[name]
    cfg = _spec(name)
    kind = {"scratch": "from scratch, patient schedule, hard labels", "patient": "distilled, patient",
            "omitted": "distilled, patient, no 3 in the transfer set"}[cfg["kind"]]
    extra = f", T = {cfg['T']:g}, alpha = {cfg['alpha']:g}" if cfg["kind"] != "scratch" else ""
    return f"`{cfg['student']}` {kind}, {cfg['epochs']} epochs, augmentation {cfg['aug']}{extra}"


def report(out: str, seed: int, section: str = "distill_patient_cv") -> str:
    """The section: held-out errors of each model over the folds, and the omitted-class bias rules."""
    from edgekd.datasets import digits

    ds = digits()
    fold = folds(ds.train.y, seed)
    order = {"teacher": 0, "scratch": 1, "patient": 2, "omitted": 3}
    names = sorted({f[:-4] for k in range(FOLDS) if os.path.isdir(os.path.join(out, f"fold{k}"))
                    for f in os.listdir(os.path.join(out, f"fold{k}")) if f.endswith(".npz")},
                   key=lambda n: (order[n.split(":")[0]], n))
    rows, omitted = [], []
    for name in names:
        ks = [k for k in range(FOLDS) if os.path.exists(os.path.join(out, f"fold{k}", f"{name}.npz"))]
        if len(ks) < FOLDS:
            continue  # an unfinished model is not reported
        errors, rules = 0, {}
        per_fold = []
        for k in ks:
            z = np.load(os.path.join(out, f"fold{k}", f"{name}.npz"))
            y = ds.train.y[fold == k]
            wrong = z["ho"].argmax(-1) != y
            errors += int(wrong.sum())
            per_fold.append(1 - wrong.mean())
            if name.startswith("omitted"):
                is3 = y == DIGIT
                for rule, d in dp.bias_deltas(z["val"], ds.val.y).items():
                    rules.setdefault(rule, []).append(np.mean(dp.shift_logit(z["ho"], d).argmax(-1)[is3] == DIGIT))
        m, h = ci95(per_fold)
        if name.startswith("omitted"):
            omitted.append(f"| {_label(name)} | {100 * m:.1f}% ± {100 * h:.1f} | "
                           + " | ".join(f"{100 * np.mean(rules[r]):.1f}%" for r in ("nll", "acc", "prior")) + " |")
        else:
            rows.append(f"| {_label(name)} | {errors} | {100 * m:.2f}% ± {100 * h:.2f} |")
    n3 = int(np.sum(ds.train.y == DIGIT))
    why = ("The validation split cannot separate configurations (the teacher ensemble and the from-scratch "
           "student both get 265 of its 269 images right), so configurations were compared on the training "
           if section == "distill_patient_cv" else
           "The validation split (269 images) is too small to choose between configurations, so they were compared "
           "on the training ")
    lines = [f"## {section} — choosing the configuration by 5-fold cross-validation (digits training split)",
             "", why + f"split: 5 stratified folds (seed {seed}), each held out in turn while the fold's 3-CNN teacher "
             "ensemble and the students trained on the other four. Every row's errors are over the same "
             f"{len(ds.train.y):,} held-out predictions, each from a model that never saw that image; accuracy is "
             "the mean ± 95% CI over the folds. The test split is never read.", "",
             "| model | held-out errors | accuracy |", "|---|---|---|"] + rows
    specs = {_spec(n)["student"] for n in names if n != "teacher"}
    mlps = sorted(int(s[3:]) for s in specs if s.startswith("mlp") and s[3:].isdigit())
    if mlps:
        lines += ["", "`mlpN`: Flatten → Dense(N, ReLU) → Dense(10) logits, " + ", ".join(
            f"{64 * n + n + 10 * n + 10:,} parameters at N = {n}" for n in mlps)
            + " (N = 512 is the architecture of `edgekd.students.dense((8, 8, 1), 10, width=4)`)."]
    if omitted:
        lines += ["", f"Omitted class: the share of the {n3} held-out 3s right after raising the class-3 logit by δ "
                  "chosen on the validation split by each rule — `nll` (lowest validation cross-entropy, the "
                  "class-3 bias fitted by maximum likelihood), `acc` (first δ of the best validation accuracy; the "
                  "former rule), `prior` (share of predicted 3s on the validation inputs closest to the share of 3s).",
                  "", "| model | held-out accuracy (raw) | 3s, δ by nll | 3s, δ by acc | 3s, δ by prior |",
                  "|---|---|---|---|---|"] + omitted
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/h16/cv")
    parser.add_argument("--report", action="store_true", help="Print the section of the runs kept in --out.")
    parser.add_argument("--section", default="distill_patient_cv", help="With --report: the section's name.")
    parser.add_argument("--write", action="store_true", help="With --report: also write it to docs/benchmarks.md.")
    args = parser.parse_args(argv)
    if args.report:
        body = report(args.out, args.seed, args.section)
        if args.write:
            from _report import write_section

            opt = "" if args.section == "distill_patient_cv" else f" --section {args.section}"
            write_section(args.section, body, command=f"python bench/distill_patient_cv.py MODEL... --out DIR && "
                          f"python bench/distill_patient_cv.py --report --write --out DIR{opt} "
                          "(models: the rows' specs)")
        print(body)
        return
    run(args.models, [int(k) for k in args.folds.split(",")], args.seed, args.out)


if __name__ == "__main__":
    main()
