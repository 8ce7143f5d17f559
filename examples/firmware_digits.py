"""Digits model → an Arduino project for the Nano 33 BLE Sense and an ESP-IDF project for the ESP32-S3.

    python examples/firmware_digits.py --out firmware_out            # trains a small CNN first
    python examples/firmware_digits.py --model student_int8.tflite   # or use your int8 model

Each project embeds a few validation digits and prints, on the serial
console, the class the board predicts next to the class the host predicted.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def small_digits_model(epochs: int):
    """A small CNN trained on the 8x8 digits (Conv-Pool-Flatten-Dense-Softmax)."""
    import keras

    from edgekd.datasets import digits

    ds = digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=ds.input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(ds.num_classes, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=64, verbose=0)
    return model, ds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="firmware_out", help="folder for the two projects")
    parser.add_argument("--model", default=None, help="an int8 .tflite digits model (default: train one)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs when no --model is given")
    parser.add_argument("--samples", type=int, default=5, help="validation digits embedded in the firmware")
    args = parser.parse_args(argv)

    from edgekd.datasets import digits
    from edgekd.firmware import measure_arena, render, write_project

    if args.model:
        with open(args.model, "rb") as f:
            model_bytes = f.read()
        ds = digits()
    else:
        from edgekd.convert import convert

        model, ds = small_digits_model(args.epochs)
        model_bytes = convert(model, mode="int8", representative_data=ds.train.x[:300])
        acc = model.evaluate(ds.val.x, ds.val.y, verbose=0)[1]
        print(f"trained a small digits CNN: val accuracy {acc:.3f}, int8 model {len(model_bytes)} bytes")

    labels = [str(c) for c in ds.class_names]
    arena = measure_arena(model_bytes)  # TFLM's arena (edgekd check's bisection), shared by both projects
    for target, board, sub in (("arduino", "nano33ble", "nano33ble_sense_arduino"),
                               ("esp-idf", "esp32s3", "esp32s3_idf")):
        project = render(model_bytes, board=board, target=target, samples=ds.val, labels=labels,
                         num_samples=args.samples, name="edgekd_digits", arena_size=arena)
        outdir = os.path.abspath(os.path.join(args.out, sub))
        write_project(project, outdir)
        agree = sum(h == t for h, t in zip(project.host_predictions, project.true_labels))
        print(f"{project.board.name}: {target} project in {outdir}")
        print(f"  kTensorArenaSize {project.arena.size} B, ops {', '.join(o[3:] for o in project.ops)}, "
              f"host predicts {agree}/{len(project.true_labels)} embedded digits correctly")
        print(f"  flash: edgekd flash {outdir} --port PORT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
