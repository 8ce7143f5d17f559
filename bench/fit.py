"""`edgekd fit` against hand-made students within the same budgets.

    python bench/fit.py [--seeds 3 --trials 8 --epochs 15]

For each board and seed: a teacher is trained; `fit` searches a distilled
DS-CNN under the board's budgets plus a latency budget; the *hand-made*
baseline is the largest standard DS-CNN (full resolution, width
1.0/0.75/0.5/0.25, depth 4..1) whose estimate meets the same budgets, trained
from scratch on labels; the *no-distillation* baseline is the chosen architecture trained
from scratch on labels. All accuracies are int8 (LiteRT) on the test split.
Goal: the searched, distilled student is at least as accurate as the best
hand-made one within the same budgets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402

BOARDS = {"nano33ble": 4.0, "esp32s3": 1.0}  # board -> latency budget (ms, board estimate)


def ci95(values: list[float]) -> str:
    import math

    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
    m = statistics.mean(values)
    if len(values) < 2:
        return f"{100 * m:.2f}"
    h = t.get(len(values), 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{100 * m:.2f} ± {100 * h:.2f}"


def int8_test_accuracy(model, ds, shape) -> float:
    import numpy as np

    from edgekd.convert import convert
    from edgekd.convert.runtime import predict
    from edgekd.datasets import resize

    xt = resize(ds.train.x, shape)
    xs = resize(ds.test.x, shape)
    tfl = convert(model, mode="int8", representative_data=xt)
    return float(np.mean(predict(tfl, xs).argmax(-1) == ds.test.y))


def train_scratch(model, ds, *, epochs: int, seed: int):
    import keras

    from edgekd.datasets import resize

    keras.utils.set_random_seed(seed)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(resize(ds.train.x, shape), ds.train.y, epochs=epochs, batch_size=64, verbose=0)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()

    from edgekd import boards, students
    from edgekd.datasets import digits
    from edgekd.fit import SearchSpace, estimate, fit
    from examples.demo import train_teacher

    ds = digits()
    space = SearchSpace(width=(0.25, 0.5, 0.75, 1.0), resolution=(0.75, 1.0), depth=(1, 2, 3, 4),
                        temperature=(2.0, 4.0))
    rows = {b: {"teacher": [], "fit": [], "scratch": [], "hand": []} for b in BOARDS}
    chosen = {b: [] for b in BOARDS}
    hand_arch = {b: [] for b in BOARDS}
    t0 = time.time()
    for seed in range(args.seeds):
        teacher = train_teacher(ds, epochs=15, seed=seed)
        for board_id, latency in BOARDS.items():
            board = boards.get(board_id)
            res = fit(teacher, train=(ds.train.x, ds.train.y), val=(ds.val.x, ds.val.y),
                      test=(ds.test.x, ds.test.y), board=board_id, max_latency_ms=latency, arch="ds_cnn",
                      trials=args.trials, epochs=args.epochs, space=space, seed=seed)
            if res.best is None:
                print(f"{board_id} seed {seed}: nothing fits", flush=True)
                continue
            b = res.best
            rows[board_id]["teacher"].append(res.test_accuracy["teacher"])
            rows[board_id]["fit"].append(res.test_accuracy["int8"])
            chosen[board_id].append(b.spec)
            # the same architecture without distillation
            scratch = students.get("ds_cnn")(input_shape=(8, 8, 1), num_classes=10, width=b.width,
                                             resolution=b.resolution, depth=b.depth)
            train_scratch(scratch, ds, epochs=args.epochs, seed=seed)
            rows[board_id]["scratch"].append(int8_test_accuracy(scratch, ds, b.input_shape))
            # the largest (by MACs) standard DS-CNN at full resolution within the same budgets
            hand, best_macs, hand_spec = None, -1, ""
            for width in (1.0, 0.75, 0.5, 0.25):
                for depth in (4, 3, 2, 1):
                    m = students.get("ds_cnn")(input_shape=(8, 8, 1), num_classes=10, width=width, depth=depth)
                    p, fl, ram, lat = estimate(m, board)
                    if not res.budgets.violations(fl, ram, lat) and p.macs > best_macs:
                        hand, best_macs, hand_spec = m, p.macs, f"ds_cnn:width={width:g},depth={depth}"
            if hand is not None:
                train_scratch(hand, ds, epochs=args.epochs, seed=seed)
                rows[board_id]["hand"].append(int8_test_accuracy(hand, ds, (8, 8, 1)))
                hand_arch[board_id].append(hand_spec)
            print(board_id, seed, {k: v[-1] if v else None for k, v in rows[board_id].items()}, flush=True)

    lines = [
        "## `edgekd fit` vs hand-made students",
        "",
        f"Digits, {args.seeds} seeds, {args.trials} trials × {args.epochs} epochs per search; int8 (LiteRT) test "
        "accuracy, mean ± 95% CI (t-distribution). Budgets: the board's flash/RAM plus a latency budget on the "
        "board estimate. *Hand-made* = the largest (by MACs) standard DS-CNN at full resolution "
        "(width 1/0.75/0.5/0.25 × depth 4..1) whose estimate meets the same budgets, trained on labels; "
        "*no distillation* = the chosen architecture trained on labels.",
        "",
        "| board | latency budget | teacher | fit (distilled, searched) | same arch, no distillation | "
        "hand-made DS-CNN | goal: fit ≥ hand-made |",
        "|---|---|---|---|---|---|---|",
    ]
    for board_id, latency in BOARDS.items():
        r = rows[board_id]
        if not r["fit"]:
            lines.append(f"| {board_id} | {latency:g} ms | – | nothing fit | – | – | – |")
            continue
        met = "met" if r["hand"] and statistics.mean(r["fit"]) >= statistics.mean(r["hand"]) else (
            "NOT met" if r["hand"] else "no hand-made model fits")
        lines.append(f"| {board_id} | {latency:g} ms | {ci95(r['teacher'])} | {ci95(r['fit'])} | "
                     f"{ci95(r['scratch'])} | {ci95(r['hand']) if r['hand'] else '–'} | {met} |")
    lines.append("")
    for board_id in BOARDS:
        lines.append(f"- {board_id}: chosen {', '.join(chosen[board_id])}; hand-made "
                     f"{', '.join(hand_arch[board_id]) or 'none fits'}.")
    lines.append(f"- Total time {time.time() - t0:.0f} s.")
    body = "\n".join(lines) + "\n"
    write_section("fit", body, command="python bench/fit.py")
    print(body)


if __name__ == "__main__":
    main()
