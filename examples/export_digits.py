"""Train a small CNN on the bundled digits, export it to int8 TFLite and C arrays.

    python examples/export_digits.py --out export_out [--epochs 10]

Copy this to start your own: swap the data and the model, keep the calls.
"""

from __future__ import annotations

import argparse

import keras

import edgekd
from edgekd.datasets import digits


def build_model() -> keras.Model:
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)  # logits: no softmax needed on the board
    return keras.Model(inputs, outputs, name="digits_cnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="export_out")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    ds = digits()
    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.train.x, ds.train.y, epochs=args.epochs, batch_size=64, verbose=0)

    tflite = edgekd.convert(model, mode="int8", representative_data=ds.train.x)
    report = edgekd.evaluate_conversion(model, tflite, ds.test.x, ds.test.y, max_accuracy_drop=2.0)
    result = edgekd.write_export(args.out, tflite, name="model", labels=ds.class_names,
                                 source_model="digits_cnn", report=report)
    print(f"int8 model: {len(tflite):,} bytes; accuracy float {report.float_accuracy:.2%} -> "
          f"int8 {report.tflite_accuracy:.2%}; top-1 agreement {report.agreement:.2%}")
    for path in result.files:
        print("wrote", path)


if __name__ == "__main__":
    main()
