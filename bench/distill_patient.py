"""Consistent-view, patient distillation (``recipe="patient"``) vs training from scratch on digits, ≥ 5 seeds.

Beyer et al. (2022): the teacher and the student see the same augmented view (here a pad-and-crop shift
and mixup, applied once per batch in the Distiller's train_step), and training is long with a warm-up and
a cosine decay. Settings (every model of a setting sees the same labels):

- ``clean``: all training labels.
- ``few-labels``: 10 labels per class; the rest of the training split is an unlabeled transfer set.
- ``omitted``: the transfer set has no 3 at all (Hinton et al. 2015, §3.1); the teacher saw every digit.
  Test 3s correct, raw and after the bias adjustment (class-3 logit raised by δ fitted on validation by
  maximum likelihood; the former rule, δ of the best validation accuracy, is reported beside it).

Rows of each setting: the teacher; the student from scratch (constant learning rate, as in distill_gap);
the student from scratch **with the same augmentation and schedule** as the patient distillation (so a
gain is distillation's, not augmentation's); the student distilled with edgekd's former defaults (T = 4,
alpha = 0.1, teacher cache, 40 epochs); the student distilled with ``recipe="patient"``. Every student
row uses the same student architecture and initial weights; epochs are stated per row.

The per-epoch cost section times one epoch of the student alone, with the augmentation, distilled with
the teacher cache, and distilled with augmentation (uncached teacher).

``--student`` picks the student of every row (``mlp``: Dense(16), Dense(32) for ``omitted``; ``mlpN``; ``cnnW``:
``edgekd.students.small_cnn(width=W)``), ``--teachers N`` an ensemble of N CNN teachers (``ensemble="probs"``).
Configurations are chosen on the validation split with ``bench/distill_patient_search.py``.

Usage: python bench/distill_patient.py [--seeds 5] [--epochs 150] [--settings clean,few-labels,omitted]
       [--student mlp|mlpN|cnnW] [--teachers N] [--augment SPEC|none] [--temperature T] [--alpha A]
       [--section NAME] [--runs-json FILE[,FILE...]] [--shard I/N] [--looks K] [--eval test|val] [--no-write]
       (--eval val is for choosing settings: never tune on test)

Long runs: ``--runs-json`` keeps every finished seed (a stopped run resumes); ``--shard I/N`` splits the seeds
over N processes, each with its own file, and a last call naming all the files writes the section. A run
extended after its result was read says so with ``--looks 2``: the clean goal is then judged at the
Bonferroni 97.5% level, so that reading the test split twice does not raise the chance of a false "met".
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from distill_common import (  # noqa: E402
    ci95, fmt, labeled_subset, student_mlp, teacher_cnn, train_ce)

from _report import write_section  # noqa: E402

_mlp = student_mlp

SETTINGS = ("clean", "few-labels", "omitted")
DIGIT = 3
GRID = np.arange(0.0, 12.01, 0.25)


def train_scratch_patient(model, x, y, *, epochs: int, augment: str, batch_size: int, lr: float, seed: int):
    """The student from scratch with the patient recipe's augmentation and schedule (hard labels only)."""
    from edgekd.distill import augment as aug_mod, train_from_scratch

    layer = None if augment == "none" else aug_mod.get(augment, seed=seed)
    return train_from_scratch(model, x=x, y=y, epochs=epochs, batch_size=batch_size, learning_rate=lr,
                              recipe="patient", augment=layer, seed=seed, verbose=0)


def _spec(augment: str):
    return None if augment == "none" else augment


def shift_logit(z, delta: float):
    """A copy of logits ``z`` with ``delta`` added to the omitted digit's logit (the bias adjustment)."""
    z = np.array(z, dtype=np.float64)
    z[:, DIGIT] += delta
    return z


def _nll(z, y) -> float:
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), y]))


def bias_deltas(val_logits, val_y) -> dict:
    """δ chosen on the validation split by each rule (grid 0–12, step 0.25).

    ``nll`` (reported): the δ of the lowest validation cross-entropy, i.e. the class-3 bias fitted by maximum
    likelihood. ``acc``: the first δ of the highest validation accuracy (the rule of distill_omitted_class; its
    maximum is a plateau a few images wide, so it is noisy). ``prior``: the δ whose share of predicted 3s on
    the validation inputs is closest to the share of 3s there.
    """
    accs, nll, share = [], [], []
    for d in GRID:
        z = shift_logit(val_logits, d)
        pred = z.argmax(-1)
        accs.append(np.mean(pred == val_y))
        nll.append(_nll(z, val_y))
        share.append(np.mean(pred == DIGIT))
    return {"nll": float(GRID[int(np.argmin(nll))]), "acc": float(GRID[int(np.argmax(accs))]),
            "prior": float(GRID[int(np.argmin(np.abs(np.array(share) - np.mean(val_y == DIGIT))))])}


def _omitted_scores(model, ds, split):
    """(accuracy, 3s correct) raw and after the validation-chosen bias adjustment (δ by ``nll``; ``_acc``: by
    validation accuracy, the former rule), and δ."""
    deltas = bias_deltas(predict_logits(model, ds.val.x), ds.val.y)
    z = predict_logits(model, split.x)
    raw = z.argmax(-1)
    is3 = split.y == DIGIT
    out = {"acc": float(np.mean(raw == split.y)), "3s": float(np.mean(raw[is3] == DIGIT))}
    for rule, suffix in (("nll", ""), ("acc", "_acc")):
        adj = shift_logit(z, deltas[rule]).argmax(-1)
        out.update({f"acc_adj{suffix}": float(np.mean(adj == split.y)),
                    f"3s_adj{suffix}": float(np.mean(adj[is3] == DIGIT)), f"delta{suffix}": deltas[rule]})
    return out


def _data(ds, setting: str, seed: int):
    """(x_labeled, y_labeled, x_unlabeled or None, teacher inputs, teacher labels, teacher epochs)."""
    x, y = ds.train.x, ds.train.y
    if setting == "few-labels":
        idx = labeled_subset(y, 10, seed)
        rest = np.setdiff1d(np.arange(len(y)), idx)
        return x[idx], y[idx], x[rest], x[idx], y[idx], 150
    if setting == "omitted":
        keep = y != DIGIT
        return x[keep], y[keep], None, x, y, 30
    return x, y, None, x, y, 30


_TEACHERS: dict = {}


def _teacher(xt, yt, t_epochs, seed, key, members: int = 1):
    """The setting's teacher of a seed; ``members`` > 1: a list, an ensemble of CNNs of distinct seeds.

    Member ``i`` has seed ``seed + 1000 i`` (member 0 is the single teacher of the other sections).
    """
    out = []
    for i in range(members):
        k = key + (i,) if i else key
        if k not in _TEACHERS:  # clean and omitted share the all-digits teacher of a seed
            _TEACHERS[k] = train_teacher(xt, yt, epochs=t_epochs, seed=seed, member=i)
        out.append(_TEACHERS[k])
    return out[0] if members == 1 else out


def train_teacher(x, y, *, epochs: int, seed: int, member: int = 0):
    """Member ``member`` of a seed's CNN teacher ensemble: seed ``seed + 1000 member``, batch 32 past 30 epochs."""
    s = seed + 1000 * member
    return train_ce(teacher_cnn(s, name=f"teacher{member or ''}"), x, y, epochs=epochs,
                    batch_size=32 if epochs > 30 else 64, seed=s)


def saved_teachers(paths, x, y, *, epochs: int, seed: int) -> list:
    """The ensemble members kept at ``paths`` (member i at ``paths[i]``), each trained and saved if absent."""
    import keras

    out = []
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            train_teacher(x, y, epochs=epochs, seed=seed, member=i).save(path + ".tmp.keras")
            os.replace(path + ".tmp.keras", path)
        out.append(keras.saving.load_model(path))
    return out


def make_student(spec: str, seed: int, setting: str = "clean"):
    """A student: ``mlp`` (Dense(16); ``omitted``: Dense(32), as in distill_gap/distill_omitted_class),
    ``mlpN`` (Dense(N)), ``denseW`` (``edgekd.students.dense(width=W)``: Dense(128·W) → logits) or ``cnnW``
    (``edgekd.students.small_cnn(width=W)``: 2 conv stages, GAP, logits).

    The same spec and seed give the same initial weights.
    """
    import keras

    if spec == "mlp":
        return _mlp(seed, units=32 if setting == "omitted" else 16)
    if spec.startswith("mlp"):
        return _mlp(seed, units=int(spec[3:]))
    if spec.startswith("dense"):
        from edgekd.students import dense

        keras.utils.set_random_seed(seed)
        return dense((8, 8, 1), 10, width=float(spec[5:] or 1), name="student")
    if spec.startswith("cnn"):
        from edgekd.students import small_cnn

        keras.utils.set_random_seed(seed)
        return small_cnn((8, 8, 1), 10, width=float(spec[3:] or 1), name="student")
    raise ValueError(f"unknown student {spec!r}")


def predict_logits(model, x):
    """Logits of a model, or of an ensemble list: log of the mean of the members' softmax."""
    if isinstance(model, (list, tuple)):
        probs = [np.exp(z - z.max(-1, keepdims=True)) for z in (predict_logits(m, x) for m in model)]
        return np.log(np.mean([p / p.sum(-1, keepdims=True) for p in probs], axis=0) + 1e-12)
    return np.asarray(model.predict(x, verbose=0, batch_size=512))


def _accuracy(model, x, y) -> float:
    return float(np.mean(predict_logits(model, x).argmax(-1) == y))


def _extras(args) -> list[tuple[str, int]]:
    """``--scratch-also``'s (augmentation, epochs) pairs: more from-scratch rows on the patient schedule."""
    out = []
    for part in filter(None, (args.scratch_also or "").split(",")):
        augment, _, epochs = part.partition(":")
        out.append((augment, int(epochs)))
    return out


def extra_key(augment: str, epochs: int) -> str:
    return f"scratch_{augment}_{epochs}"


def _scratch_keys(run: dict) -> list[str]:
    return [k for k in run if k.startswith("scratch")]


def run_seed(ds, setting: str, seed: int, args) -> dict:
    from edgekd.distill import distill

    xl, yl, xu, xt, yt, t_epochs = _data(ds, setting, seed)
    split = ds.val if args.eval == "val" else ds.test
    teacher = _teacher(xt, yt, t_epochs, seed, (seed, setting == "few-labels"), args.teachers)
    s_epochs = 150 if setting == "few-labels" else 40

    def student():  # every row: the same architecture and initial weights
        return make_student(args.student, seed + 100, setting)

    models, times = {"teacher": teacher}, {}
    t = time.time()
    models["scratch"] = train_ce(student(), xl, yl, epochs=s_epochs, seed=seed + 100)
    times["scratch"] = time.time() - t
    scratch_rows = [("scratch_patient", args.augment)]
    if args.augment != "none" and args.scratch_plain_schedule:
        scratch_rows.append(("scratch_schedule", "none"))
    scratch_rows = [(key, augment, args.scratch_epochs or args.epochs) for key, augment in scratch_rows]
    scratch_rows += [(extra_key(augment, epochs), augment, epochs) for augment, epochs in _extras(args)]
    for key, augment, epochs in scratch_rows:
        t = time.time()
        models[key] = train_scratch_patient(student(), xl, yl, epochs=epochs, augment=augment,
                                            batch_size=args.batch_size, lr=args.lr, seed=seed + 100)
        times[key] = time.time() - t
    t = time.time()
    models["distilled"] = distill(teacher, student(), x=xl, y=yl, unlabeled_x=xu, epochs=40,
                                  batch_size=32, seed=seed + 100, verbose=0).student
    times["distilled"] = time.time() - t
    t = time.time()
    models["patient"] = distill(teacher, student(), x=xl, y=yl, unlabeled_x=xu, epochs=args.epochs,
                                batch_size=args.batch_size, learning_rate=args.lr, temperature=args.temperature,
                                alpha=args.alpha, recipe="patient", augment=_spec(args.augment), seed=seed + 100,
                                verbose=0).student
    times["patient"] = time.time() - t
    out = {"times": times}
    for name, m in models.items():
        out[name] = _omitted_scores(m, ds, split) if setting == "omitted" else _accuracy(m, split.x, split.y)
    return out


def epoch_sweep(ds, args) -> str:
    """Validation accuracy of the patient recipe against its length (the schedule is stretched to each length)."""
    from edgekd.distill import distill

    counts = [int(e) for e in args.sweep.split(",")]
    lines = ["## distill_patient_epochs — how long the patient recipe needs (digits, validation split)", "",
             f"Validation accuracy (269 images), mean ± 95% CI over {args.seeds} seeds, of the student distilled "
             f"with `recipe=\"patient\"` (augmentation `{args.augment}`, T = {args.temperature:g}, alpha = "
             f"{args.alpha:g}) for each length; the warm-up and cosine decay span the whole run. Models, data and "
             "seeds as in distill_patient. The validation split is used so that the recipe's default length is "
             "not chosen on the test split.", "",
             "| setting | " + " | ".join(f"{e} epochs" for e in counts) + " |", "|---|" + "---|" * len(counts)]
    t0 = time.time()
    for setting in [s for s in args.settings.split(",") if s]:
        acc = {e: [] for e in counts}
        for seed in range(args.seeds):
            xl, yl, xu, xt, yt, t_epochs = _data(ds, setting, seed)
            teacher = _teacher(xt, yt, t_epochs, seed, (seed, setting == "few-labels"), args.teachers)
            for e in counts:
                student = distill(teacher, make_student(args.student, seed + 100, setting), x=xl, y=yl,
                                  unlabeled_x=xu, epochs=e,
                                  batch_size=args.batch_size, learning_rate=args.lr, temperature=args.temperature,
                                  alpha=args.alpha, recipe="patient", augment=_spec(args.augment), seed=seed + 100,
                                  verbose=0).student
                if setting == "omitted":
                    acc[e].append(_omitted_scores(student, ds, ds.val)["3s_adj"])
                else:
                    acc[e].append(_accuracy(student, ds.val.x, ds.val.y))
                print(f"sweep {setting} seed {seed} {e} epochs: {acc[e][-1]:.4f} ({time.time() - t0:.0f}s)",
                      flush=True)
        label = f"{setting} ({DIGIT}s correct after bias adjustment)" if setting == "omitted" else setting
        lines.append(f"| {label} | " + " | ".join(fmt(np.array(acc[e])) for e in counts) + " |")
    lines += ["", f"Wall time: {(time.time() - t0) / 60:.1f} min."]
    return "\n".join(lines)


def _epoch_costs(ds, args, repeats: int = 10) -> dict:
    """Seconds per epoch (fastest of the epochs after the first) of each way of training the student."""
    import keras

    from bench.distill_cache_speed import _EpochTimer
    from edgekd.distill import Distiller, augment as aug_mod, train_from_scratch

    teacher = _teacher(ds.train.x, ds.train.y, 30, 0, (0, False), args.teachers)  # seed 0's (trained if absent)
    x, y = ds.train.x, ds.train.y
    costs: dict = {}
    modes = ["student alone", "student + augmentation", "distilled, teacher cached", "distilled, teacher every batch",
             "distilled + augmentation (teacher every batch)"]
    for mode in [m for m in modes if args.augment != "none" or "augmentation" not in m]:
        timer = _EpochTimer()
        keras.utils.set_random_seed(0)
        student = make_student(args.student, 0)
        if mode == "student alone":
            student.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model = student
        elif mode == "student + augmentation":
            train_from_scratch(student, x=x, y=y, epochs=repeats + 1, batch_size=args.batch_size,
                               augment=aug_mod.get(args.augment, seed=0), verbose=0, callbacks=[timer.callback])
            costs[mode] = timer.per_epoch()
            continue
        else:
            aug = _spec(args.augment) if "augmentation" in mode else None
            model = Distiller(student, teacher, cache_teacher=mode == "distilled, teacher cached", augment=aug)
            model.compile(optimizer="adam")
        model.fit(x, y, epochs=repeats + 1, batch_size=args.batch_size, verbose=0, callbacks=[timer.callback])
        costs[mode] = timer.per_epoch()
    return costs


def _rows(setting, runs, args) -> list[str]:
    names = [("teacher", "teacher"),
             ("scratch", f"student from scratch ({150 if setting == 'few-labels' else 40} epochs, constant LR)"),
             ("scratch_patient", "student from scratch + same " + (
                 "schedule, no augmentation " if args.augment == "none" else "augmentation and schedule ")
              + f"({args.scratch_epochs or args.epochs} epochs, hard labels)"),
             ("scratch_schedule", f"student from scratch, same schedule without augmentation "
                                  f"({args.scratch_epochs or args.epochs} epochs, hard labels)"),
             *[(extra_key(a, e), "student from scratch, patient schedule, " + (
                 "no augmentation" if a == "none" else f"augmentation `{a}`") + f" ({e} epochs, hard labels)")
               for a, e in _extras(args)],
             ("distilled", "distilled, former defaults (40 epochs, cached)"),
             ("patient", f"distilled, `recipe=\"patient\"` ({args.epochs} epochs)")]
    lines = []
    for key, label in [n for n in names if n[0] in runs[0]]:
        if setting == "omitted":
            r = [run[key] for run in runs]
            col = {k: np.array([v[k] for v in r]) for k in r[0]}
            delta = "—" if key == "teacher" else fmt(col["delta"], pct=False, digits=2)
            lines.append(f"| {setting} | {label} | {fmt(col['acc'])} | {fmt(col['3s'])} | {fmt(col['3s_adj'])} "
                         f"| {delta} | {fmt(col['3s_adj_acc'])} |")
        else:
            lines.append(f"| {setting} | {label} | {fmt(np.array([run[key] for run in runs]))} |")
    return lines


def _summary(setting, runs, looks: int = 1) -> str:
    if setting == "omitted":
        three = np.array([r["patient"]["3s_adj"] for r in runs])
        raw = np.array([r["patient"]["3s"] for r in runs])
        by_acc = np.array([r["patient"]["3s_adj_acc"] for r in runs])
        return (f"omitted: test 3s correct after the bias adjustment {fmt(three)} (goal ≥ 90%: "
                f"{'met' if three.mean() >= 0.9 else 'not met'}); raw {fmt(raw)}; with δ chosen by validation "
                f"accuracy instead of likelihood {fmt(by_acc)}")
    scratch = _scratch_keys(runs[0])
    acc = {k: np.array([r[k] for r in runs]) for k in ["teacher", "patient"] + scratch}
    best_scratch = max(scratch, key=lambda k: acc[k].mean())
    gap = acc["teacher"].mean() - acc[best_scratch].mean()
    delta = acc["patient"] - acc[best_scratch]
    m, h = ci95(delta)
    rec = (acc["patient"].mean() - acc[best_scratch].mean()) / gap if gap > 1e-9 else float("nan")
    goal = 0.5 if setting == "clean" else 0.9
    verdict = "ahead beyond the 95% CI" if m - h > 0 else "behind beyond the 95% CI" if m + h < 0 else \
        "within the 95% CI"
    text = (f"{setting}: patient distilled − best scratch ({best_scratch.replace('_', ' ')}) = "
            f"{100 * m:+.1f} ± {100 * h:.1f} pts ({verdict}), "
            f"{100 * rec:.0f}% of the teacher–scratch gap recovered (≥ {100 * goal:.0f}% asked), "
            f"{int(np.sum(delta > 0))}/{len(delta)} seeds ahead. ")
    if setting != "clean":
        return text + f"Goal: {'met' if rec >= goal else 'not met'}"
    # clean: ahead beyond the interval and >= 50% of the gap, judged at 95% and, where the test split was
    # read more than once, at the Bonferroni level those readings call for
    levels = [0.95] + ([1 - 0.05 / looks] if looks > 1 else [])
    parts = []
    for level in levels:
        _, h_l = ci95(delta, level=level)
        met = rec >= goal and m - h_l > 0
        why = "" if level == 0.95 else f" for {looks} readings of the test split (± {100 * h_l:.1f})"
        parts.append(f"{'met' if met else 'not met'} at the {100 * level:g}% level{why}")
    return text + "Goal (ahead beyond the interval and ≥ 50% of the gap): " + "; ".join(parts)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--scratch-epochs", type=int, default=None, help="Default: --epochs.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--augment", default="mixup", help="The patient recipe's default for 8x8 images.")
    parser.add_argument("--student", default="mlp", help="mlp (Dense(16); omitted: Dense(32)), mlpN, denseW "
                        "(edgekd.students.dense(width=W)) or cnnW (edgekd.students.small_cnn(width=W)); every row of a "
                        "setting uses it.")
    parser.add_argument("--teachers", type=int, default=1, help="CNN teachers; > 1: an ensemble (ensemble='probs').")
    parser.add_argument("--scratch-also", default=None, metavar="AUG:EPOCHS,...",
                        help="More from-scratch rows on the patient schedule, e.g. mixup:150 (the cross-validated "
                        "best from-scratch setting); the goal compares against the best scratch row.")
    parser.add_argument("--scratch-plain-schedule", action="store_true",
                        help="Also the student from scratch on the patient schedule without augmentation.")
    parser.add_argument("--section", default=None, help="docs/benchmarks.md section name (default: from options).")
    parser.add_argument("--runs-json", default=None, help="Keep each finished setting's runs in this file; settings "
                        "already in it are not run again (a run stopped part way resumes).")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="Run only the seeds s with s %% N == I (several processes, each its own --runs-json "
                        "file); no report: a last call naming every file writes it.")
    parser.add_argument("--looks", type=int, default=1,
                        help="How many times this comparison has been read on the test split (a run extended "
                        "after a first reading: 2). The clean goal then needs the Bonferroni-widened "
                        "1 - 0.05/LOOKS interval of the paired difference to exclude 0.")
    parser.add_argument("--eval", choices=("test", "val"), default="test")
    parser.add_argument("--sweep", default=None, metavar="E1,E2,...",
                        help="Instead: validation accuracy of the patient recipe at these lengths.")
    parser.add_argument("--no-write", action="store_true", help="Print the section instead of writing docs.")
    args = parser.parse_args(argv)
    from edgekd.datasets import digits

    ds = digits()
    if args.sweep:
        body = epoch_sweep(ds, args)
        if not args.no_write:
            write_section("distill_patient_epochs", body, command="python bench/distill_patient.py --seeds "
                          f"{args.seeds} --settings {args.settings} --sweep {args.sweep}")
        print(body)
        return body
    shard, shards = _shard(args.shard, parser)
    t0 = time.time()
    results = _load_runs(args.runs_json)
    for setting in [s for s in args.settings.split(",") if s]:
        have = {r["seed"] for r in results.get(setting, [])}
        for seed in [s for s in range(args.seeds) if s not in have and s % shards == shard]:
            ts = time.time()
            run = run_seed(ds, setting, seed, args)
            run.update(seed=seed, wall=time.time() - ts)
            results.setdefault(setting, []).append(run)
            _save_runs(args.runs_json, results)  # after every seed: a stopped run resumes
            print(f"{setting} seed {seed}: {run} ({time.time() - t0:.0f}s)", flush=True)
    if args.shard:
        print(f"shard {args.shard} done; report with --runs-json naming every shard's file")
        return ""
    missing = {s: sorted(set(range(args.seeds)) - {r["seed"] for r in results.get(s, [])})
               for s in args.settings.split(",") if s}
    if any(missing.values()):
        parser.error(f"seeds missing from --runs-json: {missing}")
    results = {s: sorted((r for r in results[s] if r["seed"] < args.seeds), key=lambda r: r["seed"])
               for s in args.settings.split(",") if s}
    wall = {s: sum(r["wall"] for r in runs) for s, runs in results.items()}
    costs = _epoch_costs(ds, args)
    body = _report(ds, results, wall, costs, args, sum(wall.values()))
    if args.no_write or args.eval != "test":
        print(body)
        return body
    default = args.augment == "mixup" and args.epochs == 150 and args.student == "mlp" and args.teachers == 1
    name = args.section or ("distill_patient" if default else
                            f"distill_patient_{args.augment.replace(':', '_').replace('+', '_')}")
    kept = [f for f in (args.runs_json or "").split(",") if f.startswith("bench/runs/")]
    if kept:  # committed runs: the section regenerates without retraining
        body += (f"\n\nThe seeds' runs are kept in bench/runs: add `--runs-json {','.join(kept)}` to the command "
                 "below to rewrite this section without retraining (bench/runs/README.md).")
    write_section(name, body, command="python bench/distill_patient.py" + _options(args, parser))
    print(body)
    return body


def _options(args, parser) -> str:
    """The command-line options that differ from the defaults (``--runs-json`` and ``--section`` left out)."""
    out = ""
    for action in parser._actions:
        key = action.dest
        if key in ("help", "runs_json", "section", "no_write", "shard") or getattr(args, key) == action.default:
            continue
        value = getattr(args, key)
        out += f" {action.option_strings[0]}" + ("" if value is True else f" {value}")
    return out


def _shard(spec, parser) -> tuple[int, int]:
    """``--shard I/N`` as (I, N): this process runs the seeds s with s % N == I; (0, 1) without it."""
    if not spec:
        return 0, 1
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        parser.error(f"Invalid value for argument `--shard`. Expected I/N with 0 <= I < N. Received --shard={spec}")
    return i, n


def _load_runs(paths) -> dict:
    """The runs already in the ``--runs-json`` files (comma-separated), merged: {setting: [run, ...]}.

    A run is known by its setting and seed, and the first file that has a seed wins. Each run carries its
    wall time; in files written before runs did, a run without one gets an equal share of what the file's
    setting total leaves over (and one without a seed, its position).
    """
    import json

    results = {}
    for path in [p for p in (paths or "").split(",") if p and os.path.exists(p)]:
        with open(path) as f:
            data = json.load(f)
        for setting, runs in data["results"].items():
            bare = [r for r in runs if "wall" not in r]
            left = data.get("wall", {}).get(setting, 0.0) - sum(r["wall"] for r in runs if "wall" in r)
            have = {r["seed"] for r in results.get(setting, [])}
            for i, run in enumerate(runs):
                run.setdefault("seed", i)
                run.setdefault("wall", left / len(bare) if bare else 0.0)
                if run["seed"] not in have:
                    results.setdefault(setting, []).append(run)
    return results


def _save_runs(paths, results) -> None:
    """Write every run into the first ``--runs-json`` file (a temp name, then renamed)."""
    import json

    path = (paths or "").split(",")[0]
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump({"results": results}, f)  # each run carries its wall time
        os.replace(path + ".tmp", path)


def _teacher_text(members: int) -> str:
    one = "~150k-parameter CNN (translation augmentation, dropout)"
    if members == 1:
        return one
    return (f"an ensemble of {members} {one.replace('CNN', 'CNNs')} of distinct seeds, their softmax outputs "
            "averaged (`distill(teacher=[...], ensemble=\"probs\")`)")


def _student_text(spec: str) -> str:
    if spec == "mlp":
        return ("Flatten → Dense(16) → Dense(10), 1,210 parameters (`omitted`: Dense(32), 2,410, as in "
                "distill_omitted_class)")
    model = make_student(spec, 0)
    params = model.count_params()
    if spec.startswith("mlp"):
        return f"Flatten → Dense({spec[3:]}) → Dense(10), {params:,} parameters"
    if spec.startswith("dense"):
        units = model.get_layer("fc1").units
        return (f"`edgekd.students.dense((8, 8, 1), 10, width={spec[5:]})` (Flatten → Dense({units}, ReLU) → "
                f"Dense(10) logits), {params:,} parameters")
    return (f"`edgekd.students.small_cnn((8, 8, 1), 10, width={spec[3:]})` (two 3×3 conv → BN → ReLU → 2×2 max-pool "
            f"stages, global average pooling, Dense(10) logits), {params:,} parameters")


def _report(ds, results, wall, costs, args, total) -> str:
    split = "validation" if args.eval == "val" else "test"
    lines = [
        f"## {args.section or 'distill_patient'} — consistent views and a patient schedule vs training from scratch "
        "(digits)",
        "",
        f"Mean ± 95% CI (Student t) over {args.seeds} seeds of {split} accuracy ({len(ds.test.y)} images; each "
        f"seed: new teacher, label subset and student init). Teacher: {_teacher_text(args.teachers)}, trained on "
        f"the setting's labels (`omitted`: on every digit). Student (every row): {_student_text(args.student)}. "
        "Patient rows: " + ("no augmentation (the teacher's logits cached), " if args.augment == "none" else
                            f"augmentation `{args.augment}` applied once per batch (the teacher and the student "
                            "see the same view; teacher uncached), ")
        + f"warm-up over 5% of the steps then cosine decay from {args.lr:g} to 0, batch {args.batch_size}, "
        f"T = {args.temperature:g}, alpha = {args.alpha:g}.",
    ]
    for setting, runs in results.items():
        if setting == "omitted":
            header = [f"| setting | model | accuracy | {DIGIT}s correct | {DIGIT}s correct after bias adjustment | δ "
                      f"| {DIGIT}s correct, δ by validation accuracy |", "|---|---|---|---|---|---|---|"]
        else:
            header = ["| setting | model | accuracy |", "|---|---|---|"]
        lines += [""] + header + _rows(setting, runs, args)
    lines += ["", "**Goals:**", ""] + [f"- {_summary(s, r, args.looks)}" for s, r in results.items()]
    per_setting = ", ".join(f"{s} {w / 60:.1f} min" for s, w in wall.items())
    lines += ["", "Wall time per setting (all rows, summed over the seeds; seeds run side by side with --shard "
              f"each count their own): {per_setting}; total {total / 60:.1f} min."]
    per_model = {k: np.mean([r["times"][k] for runs in results.values() for r in runs])
                 for k in (*_scratch_keys(next(iter(results.values()))[0]), "distilled", "patient")
                 if all(k in r["times"] for runs in results.values() for r in runs)}
    lines += ["Mean training time per student: " + ", ".join(
        f"{k.replace('_', ' ')} {v:.1f} s" for k, v in per_model.items()) + "."]
    base = costs["student alone"]
    lines += ["", f"Per-epoch cost on the {len(ds.train.y):,}-image training split, batch {args.batch_size} "
              "(fastest of 10 epochs after the first):", "", "| training | s / epoch | × student alone |",
              "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {v / base:.2f} |" for k, v in costs.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
