"""``train_from_scratch``: the from-scratch baseline trained with the distilled student's recipe and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

N = 256  # training examples: enough for several batches, quick


def _student(seed: int = 0, *, softmax: bool = False, shape=(8, 8, 1)):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax" if softmax else None, name="logits")(x)
    return keras.Model(inputs, out, name="student")


def _weights(model):
    return model.get_weights()


def _same(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(_weights(a), _weights(b)))


def _train(student, x, y, **kw):
    from edgekd.distill import train_from_scratch

    options = dict(epochs=2, batch_size=32, seed=3, verbose=0)
    options.update(kw)
    return train_from_scratch(student, x=x, y=y, **options)


def test_without_recipe_it_is_plain_keras_training(digits):
    """No recipe, no augmentation: the same run as compile/fit with cross-entropy on logits and Adam."""
    import keras

    x, y = digits.train.x[:N], digits.train.y[:N]
    ours = _train(_student(), x, y, learning_rate=1e-2)
    ref = _student()
    keras.utils.set_random_seed(3)
    ref.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ref.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert not _same(ours, _student())  # it trained
    for u, v in zip(_weights(ours), _weights(ref)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_unlabeled_rows_are_left_out_and_one_hot_labels_are_the_same_labels(digits):
    x, y = digits.train.x[:N], digits.train.y[:N].copy()
    y_part = y.copy()
    y_part[1::2] = -1
    keep = y_part >= 0
    a = _train(_student(), x, y_part)
    b = _train(_student(), x[keep], y[keep])
    assert _same(a, b)
    onehot = np.eye(10, dtype=np.float32)[y]
    onehot[1::2] = 0
    c = _train(_student(), x, onehot)
    for u, v in zip(_weights(b), _weights(c)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_recipe_and_augmentation_change_training_and_are_seeded(digits):
    x, y = digits.train.x[:N], digits.train.y[:N]
    plain = _train(_student(), x, y, epochs=2)
    patient = _train(_student(), x, y, epochs=2, recipe="patient", augment=None)
    mixed = _train(_student(), x, y, epochs=2, recipe="patient", augment="mixup")
    assert not _same(plain, patient) and not _same(patient, mixed)
    assert _same(mixed, _train(_student(), x, y, epochs=2, recipe="patient", augment="mixup"))
    assert not _same(mixed, _train(_student(), x, y, epochs=2, recipe="patient", augment="mixup", seed=4))
    # 8x8 digits are a small image: the recipe's automatic augmentation is none, as for distill
    assert _same(patient, _train(_student(), x, y, epochs=2, recipe="patient"))


def test_softmax_student_trains_its_logits_and_a_smaller_student_gets_resized_inputs(digits):
    x, y = digits.train.x[:N], digits.train.y[:N]
    with_softmax = _train(_student(softmax=True), x, y)
    logits = _train(_student(), x, y)
    for u, v in zip(_weights(with_softmax), _weights(logits)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    from edgekd.datasets import resize

    big = resize(x, (16, 16, 1))  # data at a teacher's resolution; the student takes 8x8
    from_big = _train(_student(), big, y)
    from_resized = _train(_student(), resize(big, (8, 8, 1)), y)
    assert not _same(from_big, _student())
    for u, v in zip(_weights(from_big), _weights(from_resized)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    # the augmentation acts at the data's resolution, before the resize (a 1-pixel shift of 16x16, not of 8x8)
    shifted_big = _train(_student(), big, y, augment="shift")
    shifted_small = _train(_student(), resize(big, (8, 8, 1)), y, augment="shift")
    assert not _same(shifted_big, shifted_small)


def test_bad_input_is_refused_before_training(digits):
    from edgekd.errors import DataError, InvalidArgumentError

    x, y = digits.train.x[:N], digits.train.y[:N]
    with pytest.raises(InvalidArgumentError, match="epochs"):
        _train(_student(), x, y, epochs=None)
    with pytest.raises(InvalidArgumentError, match="recipe"):
        _train(_student(), x, y, recipe="impatient")
    with pytest.raises(DataError, match="no labeled example"):
        _train(_student(), x, -np.ones(N, np.int64))
    with pytest.raises(DataError, match="labels for"):
        _train(_student(), x, y[:10])
    with pytest.raises(InvalidArgumentError, match="learning_rate"):
        _train(_student(), x, y, learning_rate=0)
    with pytest.raises(InvalidArgumentError, match="keras.Model"):
        _train("student.keras", x, y)
    with pytest.raises(DataError, match="only \\(H, W, C\\) images can be resized"):
        _train(_student(), x.reshape(N, 64), y)
    _train(_student(), x, y, epochs=1, learning_rate=np.float32(1e-3))  # NumPy scalars are numbers too
