"""Fixtures of the firmware tests: one tiny int8 digits model, rendered projects."""

from __future__ import annotations

import pytest

# The ops of the tiny model below, as TFLite builtin names, in the order the converter emits them.
TINY_OPS = ("CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")


@pytest.fixture(scope="session")
def tiny_tflite(digits, tmp_path_factory):
    """(path, bytes) of a tiny full-int8 CNN (Conv2D, MaxPool, Flatten, Dense, Softmax) trained 2 epochs."""
    import keras

    from edgekd.convert import convert

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(digits.train.x, digits.train.y, epochs=2, batch_size=64, verbose=0)
    data = convert(model, mode="int8", representative_data=digits.val.x[:100])
    path = tmp_path_factory.mktemp("fw_model") / "tiny_int8.tflite"
    path.write_bytes(data)
    return str(path), data


@pytest.fixture(scope="session")
def tiny_arena(tiny_tflite):
    from edgekd.firmware import measure_arena

    return measure_arena(tiny_tflite[1])
