"""Quantization-aware training (and distillation, and pruning) of a tiny Keras 3 student.

    pip install 'edgekd[tfmot]'
    python examples/qat_digits.py --out qat_out [--epochs 40] [--qat-epochs 5] [--prune 0.5]

Trains a DS-CNN student (width 0.25) and a larger teacher CNN on the bundled
digits, then compares three int8 models of the student on the test split:
post-training quantization, quantization-aware training (QAT), and QAT with
the teacher's soft targets (quantization-aware distillation). With
``--prune`` the student is magnitude-pruned first and QAT keeps its zeros.
Writes the distilled int8 model to ``OUT/student_qat_kd_int8.tflite``.
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np

import edgekd
from edgekd.convert.runtime import predict
from edgekd.datasets import digits
from edgekd.optimize import convert_qat, format_history, format_sparsity, prune, quantize_aware
from edgekd.students import ds_cnn


def teacher_cnn() -> keras.Model:
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="teacher")


def fit(model: keras.Model, ds, epochs: int) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=32, verbose=0)
    return model


def int8_accuracy(model_bytes: bytes, split) -> float:
    return float(np.mean(np.argmax(predict(model_bytes, split.x), -1) == split.y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="qat_out")
    parser.add_argument("--epochs", type=int, default=40, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=5, help="QAT fine-tuning epochs")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--prune", type=float, default=None, metavar="SPARSITY")
    args = parser.parse_args()

    ds = digits()
    keras.utils.set_random_seed(0)
    student = fit(ds_cnn((8, 8, 1), 10, width=0.25), ds, args.epochs)
    teacher = fit(teacher_cnn(), ds, args.epochs)
    float_acc = float(np.mean(np.argmax(student.predict(ds.test.x, verbose=0), -1) == ds.test.y))
    ptq = edgekd.convert(student, mode="int8", representative_data=ds.train.x)

    if args.prune is not None:
        pruned = prune(student, data=ds, epochs=args.qat_epochs, target_sparsity=args.prune)
        print(format_sparsity(pruned))
        student = pruned.model
    preserve = args.prune is not None
    qat = quantize_aware(student, data=ds, epochs=args.qat_epochs, preserve_sparsity=preserve)
    qat_kd = quantize_aware(student, data=ds, epochs=args.qat_epochs, teacher=teacher,
                            temperature=args.temperature, alpha=0.5, preserve_sparsity=preserve)
    print("quantization-aware distillation:\n" + format_history(qat_kd))
    kd_bytes = convert_qat(qat_kd)

    print(f"student float accuracy      {float_acc:.2%}")
    print(f"post-training int8          {int8_accuracy(ptq, ds.test):.2%}")
    print(f"QAT int8                    {int8_accuracy(convert_qat(qat), ds.test):.2%}")
    print(f"QAT + distillation int8     {int8_accuracy(kd_bytes, ds.test):.2%}  ({len(kd_bytes):,} bytes)")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "student_qat_kd_int8.tflite")
    with open(path, "wb") as f:
        f.write(kd_bytes)
    print("wrote", path)


if __name__ == "__main__":
    main()
