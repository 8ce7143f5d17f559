"""Model files whose loading runs code: each writes a marker file when its code runs.

Built with the real writers (tf-keras 2, Keras 3, tf.saved_model); the marker
left by building them is removed, so a marker seen afterwards means a loader
ran the payload.
"""

from __future__ import annotations

import os


def _payload_lambda(marker: str):
    # a literal in the lambda's code, not a closure: the serialized bytecode carries it
    return eval(f"lambda x: (__import__('pathlib').Path({marker!r}).write_text('ran'), x)[1]")


def legacy_lambda_h5(path: str, marker: str) -> str:
    """A tf.keras 2 ``.h5`` (8x8x1 -> 10) whose Lambda writes ``marker``; Keras 3 rejects it, tf-keras runs it.

    It also has BatchNormalization and a DepthwiseConv2D (tf.keras 2 writes ``groups`` into its config).
    """
    import tf_keras

    L = tf_keras.layers
    model = tf_keras.Sequential([
        L.InputLayer(input_shape=(8, 8, 1)), L.Lambda(_payload_lambda(marker), name="payload"),
        L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.DepthwiseConv2D(3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.Flatten(), L.Dense(10),
    ])
    model.save(path)
    _clear(marker)
    return path


def keras3_lambda(path: str, marker: str) -> str:
    """A Keras 3 ``.keras`` (8x8x1 -> 10) whose Lambda writes ``marker``."""
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(_payload_lambda(marker), name="payload")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    model.save(path)
    _clear(marker)
    return path


def writefile_savedmodel(path: str, marker: str) -> str:
    """A SavedModel (8x8x1 -> 10) whose serving function writes ``marker`` with tf.io.write_file."""
    import tensorflow as tf

    class Payload(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.ones((64, 10)))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
        def serve(self, x):
            tf.io.write_file(marker, "ran")
            return {"out": tf.matmul(tf.reshape(x, (-1, 64)), self.w)}

    module = Payload()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    _clear(marker)
    return path


def _clear(marker: str) -> None:
    if os.path.exists(marker):
        os.unlink(marker)
