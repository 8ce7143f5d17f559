"""The Distiller and MultiStudentDistiller trained for real on digits (tiny models, 1-2 epochs)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import DataError, InvalidArgumentError
from tests.distill._models import mlp


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _counting_teacher(teacher):
    """The teacher behind a layer that counts (in a variable, so graph mode counts too) its forward passes."""
    import keras

    class CountCalls(keras.layers.Layer):
        def build(self, input_shape):
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

        def call(self, x):
            self.calls.assign_add(1.0)
            return x

    counter = CountCalls(name="count_calls")
    inputs = keras.Input(teacher.inputs[0].shape[1:])
    model = keras.Model(inputs, counter(teacher(inputs)), name="counted_teacher")
    return model, counter


def test_fit_trains_only_the_student(digits, teacher):
    import keras

    from edgekd.distill import Distiller

    keras.utils.set_random_seed(0)
    student = mlp(16, name="student")
    before_t, before_s = _weights(teacher), _weights(student)
    d = Distiller(student, teacher, temperature=4.0, alpha=0.1)
    d.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    hist = d.fit(digits.train.x, digits.train.y, epochs=2, batch_size=64, verbose=0,
                 validation_data=(digits.val.x, digits.val.y))
    for key in ("loss", "hard_loss", "soft_loss", "accuracy", "val_loss", "val_soft_loss", "val_accuracy"):
        assert key in hist.history, hist.history.keys()
    assert hist.history["loss"][1] < hist.history["loss"][0]
    for a, b in zip(before_t, _weights(teacher)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_s, _weights(student)))
    # the student saves and loads as a plain Keras model: no edgekd custom objects involved
    logs = d.evaluate(digits.test.x, digits.test.y, verbose=0, return_dict=True)
    assert logs["accuracy"] > 0.5, logs


def test_student_saves_and_loads_plain(digits, teacher, tmp_path):
    import keras

    from edgekd.distill import Distiller

    student = mlp(8, name="student")
    d = Distiller(student, teacher)
    d.compile(optimizer="adam")
    d.fit(digits.train.x[:128], digits.train.y[:128], epochs=1, verbose=0)
    path = tmp_path / "student.keras"
    d.student.save(path)
    loaded = keras.saving.load_model(path, custom_objects={}, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(digits.test.x[:16], verbose=0),
                               student.predict(digits.test.x[:16], verbose=0), rtol=1e-5, atol=1e-6)


def test_unlabeled_fit_uses_soft_targets_only(digits, teacher):
    import keras

    from edgekd.distill import Distiller, distillation_terms

    keras.utils.set_random_seed(0)
    student = mlp(16, name="student")
    d = Distiller(student, teacher, temperature=2.0)
    d.compile(optimizer=keras.optimizers.Adam(1e-2))
    hist = d.fit(digits.train.x, epochs=2, batch_size=64, verbose=0)
    assert "hard_loss" not in hist.history and hist.history["loss"] == hist.history["soft_loss"]
    assert hist.history["soft_loss"][1] < hist.history["soft_loss"][0]
    # evaluate(x) reports the soft loss of the whole set (matches a direct computation)
    logs = d.evaluate(digits.val.x, verbose=0, return_dict=True, batch_size=len(digits.val.x))
    _, _, soft = distillation_terms(None, student(digits.val.x), teacher(digits.val.x), temperature=2.0, alpha=0.1)
    np.testing.assert_allclose(logs["soft_loss"], float(soft), rtol=1e-4)


def test_cached_and_uncached_losses_match(digits, teacher):
    import keras

    from edgekd.distill import Distiller

    x, y = digits.train.x[:320], digits.train.y[:320]
    init = _weights(mlp(16, name="student"))
    histories, finals = [], []
    for cache in (False, True):
        student = mlp(16, name="student")
        student.set_weights(init)
        d = Distiller(student, teacher, cache_teacher=cache, temperature=3.0, alpha=0.2)
        d.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
        h = d.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0,
                  validation_data=(digits.val.x, digits.val.y))
        histories.append(h.history)
        finals.append(_weights(student))
    for key in ("loss", "hard_loss", "soft_loss", "val_loss", "val_soft_loss"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5, err_msg=key)
    for a, b in zip(*finals):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_teacher_runs_once_per_batch_for_many_students_and_never_when_cached(digits, teacher):
    import keras

    from edgekd.distill import MultiStudentDistiller

    counted, counter = _counting_teacher(teacher)
    students = [mlp(4, name="s4"), mlp(8, name="s8"), mlp(16, name="s16", input_shape=(4, 4, 1))]
    x, y = digits.train.x[:256], digits.train.y[:256]  # 4 batches of 64
    m = MultiStudentDistiller(counted, students)
    m.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [_weights(s) for s in students]
    hist = m.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert float(counter.calls.numpy()) == 2 * 4  # one teacher forward per batch, not one per student
    assert {"s4_loss", "s8_soft_loss", "s16_accuracy", "loss"} <= set(hist.history)
    assert all(any(not np.array_equal(a, b) for a, b in zip(w, _weights(s))) for w, s in zip(before, students))

    counter.calls.assign(0.0)
    cached = MultiStudentDistiller(counted, [mlp(4, name="c4")], cache_teacher=True)
    cached.compile(optimizer="adam")
    cached.fit(x, y, epochs=3, batch_size=64, verbose=0)
    assert float(counter.calls.numpy()) == 1  # the cache: one batched pass (256 ≤ 256) before epoch 1


def test_ensemble_and_lower_resolution_student(digits, teacher):
    import keras

    from edgekd.distill import Distiller, ensemble_logits
    from tests.distill._models import trained_teacher

    second = trained_teacher(digits, units=32, epochs=3, softmax=True, name="teacher2", seed=1)
    student = mlp(16, name="low_res", input_shape=(4, 4, 1))  # a quarter of the teacher's pixels
    d = Distiller(student, [teacher, second], temperature=2.0)
    assert d.detected[0] == "logits" and "softmax" in d.detected[1]
    # the ensemble target is the average of the tempered probabilities of both teachers
    x = digits.val.x[:32]
    t2_logits = d.teachers[1](x)
    expected = ensemble_logits([teacher(x), t2_logits], temperature=2.0)
    np.testing.assert_allclose(d.teacher_logits(x), expected.numpy(), rtol=1e-5, atol=1e-5)
    import tensorflow as tf

    np.testing.assert_allclose(tf.nn.softmax(t2_logits).numpy(), second(x).numpy(), rtol=1e-5, atol=1e-6)
    d.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    d.fit(digits.train.x, digits.train.y, epochs=2, batch_size=64, verbose=0)
    out = d.predict(digits.test.x, verbose=0)  # fed 8x8 data, resized for the student
    assert out.shape == (len(digits.test.x), 10)
    assert np.mean(out.argmax(-1) == digits.test.y) > 0.3


def test_mutual_learning_updates_the_teacher(digits):
    import keras

    from edgekd.distill import Distiller

    teacher = mlp(32, name="peer")
    student = mlp(8, name="student")
    before = _weights(teacher)
    d = Distiller(student, teacher, teacher_trainable=True)
    d.compile(optimizer=keras.optimizers.Adam(1e-2))
    hist = d.fit(digits.train.x[:256], digits.train.y[:256], epochs=1, batch_size=64, verbose=0)
    assert "teacher_loss" in hist.history
    assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(teacher)))
    with pytest.raises(InvalidArgumentError, match="cache_teacher"):
        Distiller(student, teacher, teacher_trainable=True, cache_teacher=True)


def test_feature_distillation_uses_keras_loss_objects(digits, teacher):
    import keras
    from keras.distillation import FeatureDistillation

    from edgekd.distill import Distiller

    student = mlp(64, name="wide")  # hidden width equals the teacher's, so the features can be matched
    fd = FeatureDistillation(loss="mse", teacher_layer_name="teacher_hidden", student_layer_name="wide_hidden")
    d = Distiller(student, teacher, feature_distillation=[fd], feature_weight=0.5)
    d.compile(optimizer="adam")
    hist = d.fit(digits.train.x[:128], digits.train.y[:128], epochs=1, verbose=0)
    assert hist.history["feature_loss"][0] > 0
    with pytest.raises(InvalidArgumentError, match="nope"):
        Distiller(mlp(8, name="s"), teacher,
                  feature_distillation=[FeatureDistillation(teacher_layer_name="nope")])
    with pytest.raises(InvalidArgumentError, match="loss"):
        Distiller(mlp(8, name="s2"), teacher).compile(optimizer="adam", loss="mse")
    del keras


def test_config_round_trip(teacher):
    import keras

    from edgekd.distill import Distiller, MultiStudentDistiller

    d = Distiller(mlp(8, name="student"), [teacher, mlp(8, name="other", softmax=True)], temperature=3.0,
                  alpha=0.25, ensemble="logits", cache_teacher=True)
    config = d.get_config()
    clone = Distiller.from_config(config)
    assert clone.get_config() == config
    assert clone.detected == d.detected and clone.temperature == 3.0 and clone.alpha == 0.25
    # through Keras' registry (package "edgekd")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(d))
    assert isinstance(again, Distiller) and again.get_config() == config

    m = MultiStudentDistiller(teacher, [mlp(4, name="a"), mlp(6, name="b")], temperature=2.0)
    mc = m.get_config()
    assert MultiStudentDistiller.from_config(mc).get_config() == mc


def test_bad_construction(teacher):
    from edgekd.distill import Distiller

    with pytest.raises(InvalidArgumentError, match="student predicts 5"):
        Distiller(mlp(8, name="s", classes=5), teacher)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        Distiller(mlp(8, name="s"), teacher, temperature=-1)
    with pytest.raises(InvalidArgumentError, match="ensemble"):
        Distiller(mlp(8, name="s"), teacher, ensemble="median")
    with pytest.raises(InvalidArgumentError, match="teacher"):
        Distiller(mlp(8, name="s"), "teacher.keras")


def test_distill_function_and_chain(digits, teacher):
    from edgekd.distill import DistillResult, distill, distill_chain

    result = distill(teacher, mlp(16, name="student"), x=digits.train.x[:400], y=digits.train.y[:400],
                     unlabeled_x=digits.train.x[400:], epochs=2, batch_size=64,
                     validation_data=(digits.val.x, digits.val.y), seed=0, verbose=0)
    assert isinstance(result, DistillResult) and result.cached
    assert set(result.metrics) >= {"student_accuracy", "teacher_accuracy", "agreement"}
    assert len(result.history["loss"]) == 2
    chain = distill_chain(teacher, [mlp(24, name="assistant"), mlp(8, name="final")], x=digits.train.x,
                          epochs=1, seed=0, verbose=0)
    assert [r.student.name for r in chain] == ["assistant", "final"]
    with pytest.raises(DataError, match="shape"):
        distill(teacher, mlp(8, name="s"), x=np.zeros((4, 4, 4, 1), np.float32), epochs=1)
    with pytest.raises(DataError, match="class ids"):
        distill(teacher, mlp(8, name="s"), x=digits.val.x, y=digits.val.y + 5, epochs=1)
    with pytest.raises(InvalidArgumentError, match="epochs"):
        distill(teacher, mlp(8, name="s"), x=digits.val.x, epochs=0)
