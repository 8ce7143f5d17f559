"""Train a tiny digits CNN, convert it to int8 and check it against a Nano 33 BLE Sense.

Run: python examples/check_digits.py [--board nano33ble] [--epochs 8]
Exit status: that of the check (0 when every budget holds, 1 otherwise).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_and_convert(ds, *, epochs: int) -> tuple[object, bytes]:
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="digits_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=64, verbose=0)
    try:  # edgekd's converter (main); fall back to the TFLite converter directly
        from edgekd.convert import convert

        return model, convert(model, mode="int8", representative_data=ds.val.x)
    except ImportError:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in ds.val.x[:200])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return model, conv.convert()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--board", default="nano33ble")
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)

    from edgekd import datasets
    from edgekd.check import check, render_report

    ds = datasets.digits()
    model, tflite = build_and_convert(ds, epochs=args.epochs)
    report = check(tflite, board=args.board, data=ds.test, float_model=model, max_latency_ms=50)
    render_report(report, layers=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
