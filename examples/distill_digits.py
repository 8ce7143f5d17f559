"""Distil a CNN teacher into a microcontroller-sized student on the bundled digits.

    python examples/distill_digits.py                 # ~1-2 min on 2 cores
    python examples/distill_digits.py --tiny          # seconds: a smoke run (used by the tests)
    python examples/distill_digits.py -o student.keras

Steps: train a teacher (ending in a softmax, like most saved classifiers —
edgekd detects it and distils from its logits), train the same small student
from scratch for comparison, distil it with ``edgekd.distill.distill`` using a
few labels plus the rest of the training images as an unlabeled transfer set,
and print a table.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_teacher():
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", name="shift")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)  # a softmax teacher
    return keras.Model(inputs, outputs, name="teacher")


def build_student():
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)  # students output logits
    return keras.Model(inputs, outputs, name="student")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="A few epochs on a subset: a seconds-long smoke run.")
    parser.add_argument("--epochs", type=int, default=None, help="Distillation epochs (default 40; 2 with --tiny).")
    parser.add_argument("--labels-per-class", type=int, default=10)
    parser.add_argument("-o", "--output", default=None, help="Save the distilled student here (.keras).")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from edgekd.datasets import digits
    from edgekd.distill import distill, results_table

    keras.utils.set_random_seed(0)
    ds = digits()
    epochs = args.epochs or (2 if args.tiny else 40)
    teacher_epochs = 3 if args.tiny else 150
    rng = np.random.default_rng(0)
    labeled = np.concatenate([rng.choice(np.flatnonzero(ds.train.y == c), args.labels_per_class, replace=False)
                              for c in range(10)])
    unlabeled = np.setdiff1d(np.arange(len(ds.train.y)), labeled)
    if args.tiny:
        unlabeled = unlabeled[:200]
    x_lab, y_lab = ds.train.x[labeled], ds.train.y[labeled]

    # 1. The teacher: trained on the labeled images only (with augmentation and dropout).
    teacher = build_teacher()
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    teacher.fit(x_lab, y_lab, epochs=teacher_epochs, batch_size=32, verbose=0)

    # 2. The student from scratch on the same labels.
    scratch = build_student()
    scratch.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    scratch.fit(x_lab, y_lab, epochs=teacher_epochs, batch_size=32, verbose=0)

    # 3. Distillation: the same labels plus the unlabeled images as soft-target-only transfer data.
    result = distill(teacher, build_student(), x=x_lab, y=y_lab, unlabeled_x=ds.train.x[unlabeled],
                     epochs=epochs, batch_size=32, temperature=4.0, alpha=0.1,
                     validation_data=(ds.val.x, ds.val.y), seed=0, verbose=0)
    print("teacher output:", result.detected[0])

    def acc(model, split):
        return float(np.mean(model.predict(split.x, verbose=0).argmax(-1) == split.y))

    rows = [(name, {"params": m.count_params(), "val_accuracy": acc(m, ds.val), "test_accuracy": acc(m, ds.test)})
            for name, m in (("teacher", teacher), ("student from scratch", scratch),
                            ("distilled student", result.student))]
    results_table(rows, print_fn=print, title=f"{args.labels_per_class} labels/class + "
                                              f"{len(unlabeled)} unlabeled images")
    if args.output:
        result.student.save(args.output)
        print(f"saved {args.output}")
    return {name: m for name, m in rows}


if __name__ == "__main__":
    main()
