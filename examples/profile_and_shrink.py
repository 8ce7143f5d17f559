"""Profile a teacher, shrink it into a student, and check the student's int8 cost.

Run from the repository root:

    python examples/profile_and_shrink.py [--epochs 3]

1. trains a small CNN teacher on the bundled 8×8 digits;
2. profiles it (params, MACs by kind, int8 flash, peak activation RAM);
3. derives a student with ``shrink`` (depthwise-separable convs, half the
   channels, one copy of the repeated block) and prints both side by side;
4. trains the student (plain cross-entropy here; use ``edgekd distill`` to
   distil the teacher into it), converts it to full-int8 TFLite and profiles
   the real op graph, which agrees with the Keras-side estimate;
5. builds a registry student from a spec string, as ``--student-arch`` does.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(epochs: int = 3) -> dict:
    import keras

    from edgekd import datasets, students
    from edgekd.convert import convert
    from edgekd.profile import print_comparison, print_profile, profile

    ds = datasets.digits()
    keras.utils.set_random_seed(0)

    # 1. a teacher with a run of three identical 64-channel blocks
    inp = keras.Input(ds.train.x.shape[1:], name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    for i in range(3):
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=f"conv3_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    teacher = keras.Model(inp, keras.layers.Dense(ds.num_classes, name="logits")(x), name="teacher")

    def train(model):
        model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=64, verbose=0)
        return model.evaluate(ds.test.x, ds.test.y, verbose=0)[1]

    teacher_acc = train(teacher)

    # 2. what the teacher costs
    p_teacher = profile(teacher)
    print_profile(p_teacher, print_fn=print)

    # 3. a student: separable convs, width 0.5, repeated block kept once
    student = students.shrink(teacher, width=0.5, depth=1)
    p_student = profile(student)
    print_comparison(p_teacher, p_student, print_fn=print)

    # 4. train, convert to int8, profile the TFLite graph
    student_acc = train(student)
    tflite = convert(student, mode="int8", representative_data=ds.val.x)
    p_int8 = profile(tflite)
    print_profile(p_int8, print_fn=print)
    print(f"teacher accuracy {teacher_acc:.3f}, student accuracy {student_acc:.3f} (after {epochs} epochs)")
    print(f"Keras-side MACs {p_student.macs:,} vs TFLite-side {p_int8.macs:,}; "
          f"peak RAM {p_student.peak_ram_bytes:,} vs {p_int8.peak_ram_bytes:,} bytes; "
          f"flash estimate {p_student.flash_int8_bytes:,} vs .tflite {p_int8.flash_int8_bytes:,} bytes")

    # 5. a registry student, as `--student-arch ds_cnn:width=0.5` builds it
    ds_cnn = students.get("ds_cnn:width=0.5")(input_shape=ds.train.x.shape[1:], num_classes=ds.num_classes)
    p_ds = profile(ds_cnn)
    print(f"ds_cnn:width=0.5 on 8x8x1: {p_ds.params:,} params, {p_ds.macs:,} MACs, "
          f"peak RAM {p_ds.peak_ram_bytes:,} B")
    return {"teacher": p_teacher, "student": p_student, "int8": p_int8, "student_acc": student_acc}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    main(parser.parse_args().epochs)
