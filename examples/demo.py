"""The whole edgekd mission on the bundled digits data (what `make demo` runs).

1. train a teacher CNN;
2. `edgekd fit`: search the most accurate distilled DS-CNN student that fits
   the Arduino Nano 33 BLE Sense (candidates over budget are never trained);
3. export the chosen student to int8 TFLite + C arrays;
4. check it on the host with the real LiteRT and TFLM interpreters;
5. render an Arduino project (Nano 33 BLE Sense) and an ESP-IDF project (ESP32-S3);
6. run the student on an emulated Cortex-M4F (QEMU, TFLM with CMSIS-NN kernels), when the
   Chirale_TensorFLowLite tree and the tools are there (shared/tflm/, `make sysdeps`);
7. print teacher vs student and where everything went.

    python examples/demo.py --out demo_out [--trials 8 --epochs 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import edgekd  # noqa: E402

edgekd.quiet_tensorflow()  # no CUDA probes or absl banners in the demo's output


def train_teacher(ds, *, epochs: int, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, out, name="teacher")
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=64, verbose=0,
              validation_data=(ds.val.x, ds.val.y))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--board", default="nano33ble")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15, help="distillation epochs per trial")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--max-latency-ms", type=float, default=4.0,
                        help="latency budget on the board (estimate); the board's flash/RAM apply too")
    args = parser.parse_args(argv)

    from rich.console import Console

    con = Console(highlight=False, width=None if sys.stdout.isatty() else 110)
    t0 = time.time()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    from edgekd.datasets import digits

    ds = digits()
    con.rule("1. teacher")
    teacher = train_teacher(ds, epochs=args.teacher_epochs)
    teacher_path = os.path.join(out, "teacher.keras")
    teacher.save(teacher_path)
    con.print(f"teacher: {teacher.count_params():,} params → {teacher_path}")

    con.rule(f"2. edgekd fit for {args.board}")
    from edgekd.fit import SearchSpace, comparison_table, fit, write_report

    space = SearchSpace(width=(0.25, 0.5, 0.75), resolution=(0.75, 1.0), depth=(1, 2, 3), temperature=(2.0, 4.0))

    def on_trial(t) -> None:
        acc = f"int8 {100 * t.int8_accuracy:.1f}%" if t.int8_accuracy is not None else "not trained"
        over = f" over budget: {', '.join(t.violations)}" if t.violations else ""
        con.print(f"  trial {t.number}: {t.spec:50s} est. {t.est_latency_ms:5.2f} ms → {acc}{over}")

    fit_dir = os.path.join(out, "fit")
    os.makedirs(fit_dir, exist_ok=True)
    result = fit(teacher, train=(ds.train.x, ds.train.y), val=(ds.val.x, ds.val.y), test=(ds.test.x, ds.test.y),
                 board=args.board, max_latency_ms=args.max_latency_ms, arch="ds_cnn", trials=args.trials,
                 epochs=args.epochs, space=space, storage=f"sqlite:///{os.path.join(fit_dir, 'study.db')}",
                 artifacts_dir=os.path.join(fit_dir, "trials"), on_trial=on_trial)
    write_report(result, fit_dir)
    if result.best is None:
        from edgekd.fit import binding_budget

        con.print(f"[red]No candidate fits: {binding_budget(result.trials, result.budgets)}[/red]")
        return 1
    skipped = sum(t.state == "infeasible" for t in result.trials)
    con.print(f"chosen: {result.best.spec} ({skipped} of {len(result.trials)} candidates skipped by the profile)")

    con.rule("3. export int8 + C")
    from edgekd.convert import evaluate_conversion
    from edgekd.datasets import resize
    from edgekd.export import write_export

    shape = result.best.input_shape  # a lower-resolution student takes the digits resized, as it was trained
    x_test = resize(ds.test.x, shape)
    report = evaluate_conversion(result.best_model, result.best_tflite, x_test, ds.test.y, max_accuracy_drop=2.0)
    exp = write_export(os.path.join(out, "export"), result.best_tflite, labels=ds.class_names,
                       source_model=result.best.spec, mode="int8", report=report)
    con.print(f"{len(result.best_tflite):,} bytes int8; accuracy float {100 * report.float_accuracy:.2f}% → "
              f"int8 {100 * report.tflite_accuracy:.2f}% → {exp.outdir}")

    con.rule(f"4. check on {args.board} (LiteRT + TFLM)")
    from edgekd.check import check, render_report

    chk = check(result.best_tflite, board=args.board, max_latency_ms=args.max_latency_ms,
                data=x_test, labels=ds.test.y, float_model=result.best_model)
    render_report(chk, print_fn=con.print)

    con.rule("5. firmware")
    from edgekd.firmware import render, write_project

    samples = (resize(ds.val.x, shape), ds.val.y)
    projects = {}
    for target, board in (("arduino", "nano33ble"), ("esp-idf", "esp32s3")):
        project = render(result.best_tflite, board=board, target=target, samples=samples, num_samples=64,
                         labels=ds.class_names, arena_size=chk.arena.arena_bytes)
        path = os.path.join(out, f"firmware-{target}-{board}")
        write_project(project, path)
        projects[path] = project.flash_commands(path)

    con.rule("6. emulate on a Cortex-M4F (QEMU mps2-an386)")
    _emulate(result.best_tflite, samples, con)

    con.rule("7. result")
    comparison_table(result, print_fn=con.print)
    con.print(f"Pareto plot : {os.path.join(fit_dir, 'pareto.png')}", soft_wrap=True)
    con.print(f"C arrays    : {exp.outdir}", soft_wrap=True)
    for path, cmds in projects.items():
        con.print(f"Firmware    : {path}", soft_wrap=True)
        for cmd in cmds:
            con.print(f"              $ {' '.join(cmd)}", soft_wrap=True)  # copyable: never wrapped
    con.print(f"(or: edgekd flash DIR --port PORT)   total time {time.time() - t0:.0f} s")
    return 0 if chk.passed else 1


def _emulate(tflite: bytes, samples, con) -> None:
    """The student on QEMU's Cortex-M4F with Chirale's CMSIS-NN kernels, if the tree and tools are here."""
    from pathlib import Path

    from edgekd.emulate import FirmwareRunError, find_tree
    from edgekd.emulate.qemu import emulate
    from edgekd.emulate.render import render_emulation
    from edgekd.errors import ToolNotFoundError

    repo = Path(__file__).resolve().parents[1]
    shared = [d / "Chirale_TensorFLowLite" for d in (repo / "shared" / "tflm", repo.parent / "shared" / "tflm")]
    try:
        tree = find_tree("chirale-2.0.0", extra=shared)
        em = emulate(tflite, board="nano33ble", tflm=tree.root, samples=samples, num_samples=16)
    except (FirmwareRunError, ToolNotFoundError) as e:
        con.print(f"skipped: {e}")
        return
    render_emulation(em, print_fn=con.print)


if __name__ == "__main__":
    sys.exit(main())
