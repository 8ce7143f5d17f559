"""Tiny models for the distillation tests (seconds to train on 2 cores)."""

from __future__ import annotations


def mlp(units: int, *, name: str, input_shape=(8, 8, 1), classes: int = 10, softmax: bool = False, seed: int = 0):
    import keras

    inputs = keras.Input(input_shape, name=f"{name}_in")
    x = keras.layers.Flatten(name=f"{name}_flat")(inputs)
    x = keras.layers.Dense(units, activation="relu", name=f"{name}_hidden",
                           kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
    out = keras.layers.Dense(classes, activation="softmax" if softmax else None, name=f"{name}_out",
                             kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(x)
    return keras.Model(inputs, out, name=name)


def trained_teacher(ds, *, units: int = 64, epochs: int = 6, softmax: bool = False, name: str = "teacher",
                    seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    model = mlp(units, name=name, softmax=softmax, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax))
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=64, verbose=0)
    return model
