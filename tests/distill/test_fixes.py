"""Distillation behaviours found by use: labels of every form, softmax students, feature shapes, summary()."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import InvalidArgumentError
from tests.distill._models import mlp, trained_teacher


@pytest.fixture(scope="module")
def softmax_teacher(digits):
    """A teacher ending in Dense(activation="softmax") (stripped to its logits by the Distiller)."""
    return trained_teacher(digits, softmax=True, epochs=2, name="soft_teacher")


def _fresh(seed=0, **kwargs):
    import keras

    keras.utils.set_random_seed(seed)
    return mlp(16, name="student", **kwargs)


def _labelled_accuracy(student, x, y):
    keep = y >= 0
    return float(np.mean(np.asarray(student(x[keep])).argmax(-1) == y[keep]))


# --------------------------------------------------------------------------- labels and metrics


def test_metrics_see_only_the_labelled_examples(digits, teacher):
    import keras

    from edgekd.distill import Distiller

    x, y = digits.train.x[:512], digits.train.y[:512].copy()
    y[1::2] = -1  # half the transfer set unlabeled
    student = _fresh()
    d = Distiller(student, teacher)
    d.compile(optimizer=keras.optimizers.Adam(1e-2),
              metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")])
    d.fit(x, y, epochs=2, batch_size=64, verbose=0)
    logs = d.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    keep = y >= 0
    logits = np.asarray(student(x))
    top3 = np.mean([yi in np.argsort(row)[-3:] for row, yi in zip(logits[keep], y[keep])])
    np.testing.assert_allclose(logs["accuracy"], _labelled_accuracy(student, x, y), rtol=1e-6)
    np.testing.assert_allclose(logs["top3"], top3, rtol=1e-6)
    as_class_0 = float(np.mean(logits.argmax(-1) == np.maximum(y, 0)))  # what counting -1 as class 0 gives
    assert abs(logs["accuracy"] - as_class_0) > 0.1, (logs, as_class_0)


def test_fit_without_labels_and_an_accuracy_metric_reports_the_soft_loss(digits, teacher):
    import keras

    from edgekd.distill import Distiller

    x = digits.train.x[:512]
    d = Distiller(_fresh(), teacher)
    d.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    hist = d.fit(x, epochs=2, batch_size=64, verbose=0, validation_data=(digits.val.x,))
    assert set(hist.history) == {"loss", "soft_loss", "val_loss", "val_soft_loss"}, hist.history.keys()
    assert hist.history["soft_loss"][1] < hist.history["soft_loss"][0]
    assert set(d.evaluate(x, verbose=0, return_dict=True)) == {"loss", "soft_loss"}
    # labels later: the metric is there and counts them
    logs = d.evaluate(digits.val.x, digits.val.y, verbose=0, return_dict=True, batch_size=len(digits.val.x))
    np.testing.assert_allclose(logs["accuracy"], _labelled_accuracy(d.student, digits.val.x, digits.val.y),
                               rtol=1e-6)


def test_one_hot_labels_train_like_class_ids(digits, teacher):
    import keras

    from edgekd.distill import Distiller, MultiStudentDistiller

    x, y = digits.train.x[:256], digits.train.y[:256].copy()
    y[::4] = -1
    one_hot = np.eye(10, dtype=np.int64)[np.maximum(y, 0)] * (y >= 0)[:, None]  # int rows; all-zero = unlabeled
    vx, vy = digits.val.x[:128], digits.val.y[:128]
    init = _fresh().get_weights()
    runs = {}
    for form, labels, val_labels in (("ids", y, vy), ("int one-hot", one_hot, np.eye(10, dtype=np.float32)[vy])):
        student = _fresh()
        student.set_weights(init)
        d = Distiller(student, teacher, alpha=0.5)
        d.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
        runs[form] = d.fit(x, labels, epochs=1, batch_size=64, shuffle=False, verbose=0,
                           validation_data=(vx, val_labels)).history
    for key in ("loss", "hard_loss", "soft_loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(runs["int one-hot"][key], runs["ids"][key], rtol=1e-5, err_msg=key)
    m = MultiStudentDistiller(teacher, [mlp(4, name="a"), mlp(6, name="b")])
    m.compile(optimizer="adam")
    logs = m.evaluate(x, one_hot, verbose=0, return_dict=True, batch_size=len(x))
    np.testing.assert_allclose(logs["a_accuracy"], _labelled_accuracy(m.students[0], x, y), rtol=1e-6)


def test_distill_takes_one_hot_labels_with_unlabeled_inputs(digits, teacher):
    from edgekd.distill import distill

    y = np.eye(10, dtype=np.float32)[digits.train.y[:300]]
    vy = np.eye(10, dtype=np.float32)[digits.val.y]
    vy[:40] = 0  # unlabeled validation rows: not counted in the accuracy
    result = distill(teacher, _fresh(), x=digits.train.x[:300], y=y, unlabeled_x=digits.train.x[300:500],
                     epochs=1, validation_data=(digits.val.x, vy), seed=0, verbose=0)
    assert "accuracy" in result.history and "val_accuracy" in result.history
    keep = slice(40, None)
    expected = np.mean(np.asarray(result.student(digits.val.x[keep])).argmax(-1) == digits.val.y[keep])
    np.testing.assert_allclose(result.metrics["student_accuracy"], expected, rtol=1e-6)


def test_cli_reads_one_hot_labels_and_a_softmax_student(digits, teacher, tmp_path, capsys):
    from edgekd.cli import main

    teacher.save(tmp_path / "teacher.keras")
    mlp(8, name="student", softmax=True).save(tmp_path / "student.keras")
    np.savez(tmp_path / "onehot.npz", x=digits.train.x[:200], y=np.eye(10, dtype=np.float32)[digits.train.y[:200]],
             x_val=digits.val.x[:100], y_val=np.eye(10, dtype=np.float32)[digits.val.y[:100]])
    out = tmp_path / "out.keras"
    try:
        main(["distill", "--teacher", str(tmp_path / "teacher.keras"), "--student", str(tmp_path / "student.keras"),
              "--data", str(tmp_path / "onehot.npz"), "--epochs", "1", "-o", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err[-2000:]
    captured = capsys.readouterr()
    assert out.exists() and "distilled student" in captured.out
    assert "student output: Dense 'student_out' with activation='softmax'" in captured.err, captured.err


# --------------------------------------------------------------------------- students that end in a softmax


@pytest.mark.parametrize("kind", ["dense_activation", "softmax_layer"])
def test_softmax_student_is_trained_on_its_logits(digits, teacher, kind):
    import keras

    from edgekd.distill import Distiller, distillation_terms
    from edgekd.students import ds_cnn

    keras.utils.set_random_seed(0)
    if kind == "dense_activation":
        student, last = mlp(16, name="student", softmax=True), "student_out"
    else:
        student, last = ds_cnn((8, 8, 1), 10, width=0.25, depth=1, softmax=True), "logits"
    x = digits.train.x[:128]
    kernel, bias = student.get_layer(last).get_weights()
    student.get_layer(last).set_weights([10 * kernel, bias + np.linspace(-4, 4, 10)])  # spread-out logits
    d = Distiller(student, teacher, temperature=4.0)
    d.compile(optimizer=keras.optimizers.Adam(1e-2))
    assert "softmax" in d.detected_student and "logits" in d.detected_student, d.detected_student
    probs = np.asarray(student(x))
    z = np.asarray(d.predict(x, verbose=0))
    assert not np.allclose(z.sum(-1), 1.0)  # logits, not probabilities
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(z)), probs, atol=1e-5)
    # the soft loss the Distiller reports is the loss of the logits (log p is z up to a per-row shift)
    logs = d.evaluate(x, verbose=0, return_dict=True, batch_size=len(x))
    t = np.asarray(teacher(x))
    _, _, of_logits = distillation_terms(None, np.log(probs), t, temperature=4.0, alpha=0.1)
    _, _, of_probs = distillation_terms(None, probs, t, temperature=4.0, alpha=0.1)
    np.testing.assert_allclose(logs["soft_loss"], float(of_logits), rtol=1e-4)
    assert abs(float(of_probs) - float(of_logits)) > 0.05
    # training through the logits view trains the student's own final layer
    before = [w.copy() for w in student.get_layer(last).get_weights()]
    d.fit(x, epochs=1, batch_size=64, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, student.get_layer(last).get_weights()))
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(d.predict(x, verbose=0))), np.asarray(student(x)),
                               atol=1e-5)


def test_multi_student_distiller_trains_a_softmax_student_on_its_logits(digits, teacher):
    import keras

    from edgekd.distill import MultiStudentDistiller, distillation_terms

    keras.utils.set_random_seed(0)
    soft, plain = mlp(16, name="soft", softmax=True), mlp(16, name="plain")
    m = MultiStudentDistiller(teacher, [soft, plain], temperature=4.0)
    assert "softmax" in m.detected_students[0] and m.detected_students[1] == "logits", m.detected_students
    m.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = digits.train.x[:128]
    z_soft, z_plain = (np.asarray(o) for o in m(x))
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(z_soft)), np.asarray(soft(x)), atol=1e-5)
    np.testing.assert_allclose(z_plain, np.asarray(plain(x)), atol=1e-6)
    logs = m.evaluate(x, verbose=0, return_dict=True, batch_size=len(x))
    _, _, expected = distillation_terms(None, np.log(np.asarray(soft(x))), np.asarray(teacher(x)), temperature=4.0,
                                        alpha=0.1)
    np.testing.assert_allclose(logs["soft_soft_loss"], float(expected), rtol=1e-4)


def test_shrink_drops_the_teacher_softmax_unless_asked(softmax_teacher):
    import keras

    from edgekd.distill import Distiller, ends_in_softmax
    from edgekd.students import shrink

    student = shrink(softmax_teacher, width=0.5)
    assert not ends_in_softmax(student) and student.layers[-1].get_config()["activation"] == "linear"
    assert Distiller(student, softmax_teacher).detected_student == "logits"
    kept = shrink(softmax_teacher, width=0.5, softmax=True)
    assert isinstance(kept.layers[-1], keras.layers.Softmax) and ends_in_softmax(kept)
    assert "final softmax layer" in Distiller(kept, softmax_teacher).detected_student
    # a teacher ending in a Softmax layer: the layer is dropped
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Dense(10, name="fc")(keras.layers.Flatten()(inp))
    layered = keras.Model(inp, keras.layers.Softmax(name="probs")(h))
    dropped = shrink(layered)
    assert dropped.layers[-1].name == "fc" and not ends_in_softmax(dropped)
    with pytest.raises(InvalidArgumentError, match="`softmax`"):
        shrink(layered, softmax="yes")


# --------------------------------------------------------------------------- construction checks, summary


def test_feature_shape_mismatch_is_refused_at_construction(teacher):
    from keras.distillation import FeatureDistillation

    from edgekd.distill import Distiller

    fd = FeatureDistillation(loss="mse", teacher_layer_name="teacher_hidden", student_layer_name="student_hidden")
    with pytest.raises(InvalidArgumentError) as exc:
        Distiller(mlp(16, name="student"), teacher, feature_distillation=[fd])
    msg = str(exc.value)
    assert msg.startswith("Invalid value for argument `feature_distillation`. Expected "), msg
    assert "'teacher_hidden' outputs (64,)" in msg and "'student_hidden' outputs (16,)" in msg, msg
    assert "Received feature_distillation=[('teacher_hidden', 'student_hidden')]" in msg, msg


def test_summary_lists_the_frozen_teacher_once_as_non_trainable(digits, softmax_teacher):
    import keras

    from edgekd.distill import Distiller

    student = _fresh()
    d = Distiller(student, softmax_teacher)  # its softmax stripped: a second, derived teacher model inside
    lines: list[str] = []
    d.summary(print_fn=lambda s, **_: lines.append(s))
    text = "\n".join(lines)
    assert text.count("soft_teacher") == 1 and "soft_teacher_logits" not in text, text
    assert [m.name for m in d.layers] == ["soft_teacher", "student"]

    def count(ws):
        return sum(int(np.prod(w.shape)) for w in ws)

    assert count(d.trainable_weights) == student.count_params()
    assert count(d.non_trainable_weights) >= softmax_teacher.count_params()
    assert f"Trainable params: {student.count_params():,}" in text, text
    assert softmax_teacher.trainable and count(softmax_teacher.trainable_weights) > 0  # the user's model untouched
    mutual = Distiller(_fresh(), softmax_teacher, teacher_trainable=True)
    assert count(mutual.trainable_weights) > student.count_params()
    before = [w.copy() for w in softmax_teacher.get_weights()]
    d.compile(optimizer=keras.optimizers.Adam(1e-2))
    d.fit(digits.train.x[:128], digits.train.y[:128], epochs=1, verbose=0)
    for a, b in zip(before, softmax_teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    from edgekd.distill import MultiStudentDistiller

    students = [mlp(8, name="a"), mlp(4, name="b")]
    multi = MultiStudentDistiller(softmax_teacher, students)  # the same for several students
    lines.clear()
    multi.summary(print_fn=lambda s, **_: lines.append(s))
    text = "\n".join(lines)
    assert [m.name for m in multi.layers] == ["soft_teacher", "a", "b"] and text.count("soft_teacher") == 1, text
    assert count(multi.trainable_weights) == sum(s.count_params() for s in students)
    assert f"Trainable params: {sum(s.count_params() for s in students):,}" in text, text
