"""Keras-side and TFLite-side profiles of the same model agree; MobileNet paper numbers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edgekd import students
from edgekd.check import check
from edgekd.convert import convert
from edgekd.profile import profile


def _randomize(model, seed=0):
    """Non-zero weights everywhere (zero biases would be dropped by the converter)."""
    rng = np.random.default_rng(seed)
    model.set_weights([
        (rng.uniform(0.5, 1.5, w.shape) if "variance" in v.path else rng.normal(0, 0.3, w.shape)).astype("float32")
        for v, w in zip(model.weights, model.get_weights())
    ])
    return model


def _mixed_model():
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    y = keras.layers.ReLU()(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.SeparableConv2D(24, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Conv2D(8, 1, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    x = keras.layers.Dense(10)(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize("build", [
    _mixed_model,
    lambda: students.get("ds_cnn:width=0.5")(input_shape=(49, 10, 1), num_classes=12),
    lambda: students.get("mobilenet_v1:width=0.25,depth=1")(input_shape=(32, 32, 3), num_classes=5),
], ids=["mixed", "ds_cnn", "mobilenet_v1"])
def test_keras_and_tflite_profiles_agree(build):
    model = _randomize(build())
    shape = tuple(model.input_shape[1:])
    rep = np.random.default_rng(1).uniform(0, 1, (8, *shape)).astype("float32")
    k = profile(model)
    t = profile(convert(model, mode="int8", representative_data=rep))
    assert t.source == "tflite" and all(r.op_type.isupper() for r in t.layers)
    assert abs(k.macs - t.macs) <= 0.01 * t.macs, (k.macs, t.macs)
    assert abs(k.inference_params - t.params) <= 0.01 * t.params, (k.inference_params, t.params)
    for kind, n in t.macs_by_kind.items():
        assert abs(k.macs_by_kind[kind] - n) <= 0.01 * max(t.macs, 1), kind
    # the same graph lowered: same peak of live int8 activations
    peaks = (k.peak_ram_bytes, t.peak_ram_bytes)
    assert abs(peaks[0] - peaks[1]) <= 0.01 * peaks[1], peaks
    # int8 weight bytes: the Keras side predicts the stored int8 kernels + int32 biases
    assert abs(k.weight_bytes_int8 - t.weight_bytes_int8) <= 0.01 * t.weight_bytes_int8
    # the flash estimate (weights + fitted flatbuffer overhead) is within 15% of the real .tflite size
    assert abs(k.flash_int8_bytes - t.flash_int8_bytes) <= 0.15 * t.flash_int8_bytes


# MobileNet paper (Howard et al. 2017), Tables 6 and 7: (alpha, side) -> (mult-adds, params).
# Paper convention reproduced here: mult-adds = conv + depthwise + fully-connected MACs (the classifier
# included, pooling/softmax excluded); params = the inference graph's parameters (conv/FC kernels and one
# bias per channel, BatchNorm folded), which the paper prints to 0.1M.
PAPER = [
    (1.0, 224, 569e6, 4.2e6), (0.75, 224, 325e6, 2.6e6), (0.5, 224, 149e6, 1.3e6), (0.25, 224, 41e6, 0.5e6),
    (1.0, 192, 418e6, 4.2e6), (1.0, 160, 290e6, 4.2e6), (1.0, 128, 186e6, 4.2e6),
]


@pytest.mark.parametrize("alpha, side, madds, params", PAPER)
def test_mobilenet_paper_numbers(alpha, side, madds, params):
    model = keras.applications.MobileNet(weights=None, alpha=alpha, input_shape=(side, side, 3))
    p = profile(model)
    k = p.macs_by_kind
    ours = k["conv"] + k["depthwise"] + k["fully_connected"]
    assert abs(ours - madds) <= 0.01 * madds, (ours, madds)
    assert abs(p.macs - madds) <= 0.01 * madds  # pooling/softmax are < 0.01%
    # params: the paper prints one decimal in millions -> within half a unit of its last digit
    assert abs(p.inference_params - params) <= 0.05e6, (p.inference_params, params)
    assert p.params == model.count_params()


def test_mobilenet_v1_builder_matches_keras_applications():
    ours = profile(students.mobilenet_v1((224, 224, 3), 1000))
    ref = profile(keras.applications.MobileNet(weights=None))
    assert ours.params == ref.params  # 4,253,864: the classifier as Dense instead of a 1x1 conv
    assert ours.macs_by_kind["depthwise"] == ref.macs_by_kind["depthwise"]
    assert abs(ours.macs - ref.macs) <= 0.001 * ref.macs


def test_peak_ram_matches_tflm_planned_activations():
    """The lifetime model gives the activation memory TFLM's planner really allocates (residual branch)."""
    model = _randomize(_mixed_model())
    rep = np.random.default_rng(1).uniform(0, 1, (8, 12, 12, 3)).astype("float32")
    data = convert(model, mode="int8", representative_data=rep)
    arena = check(data, board="portenta-h7", host_latency=False).arena
    assert arena.record_head_bytes is not None
    assert profile(model).peak_ram_bytes == profile(data).peak_ram_bytes == arena.record_head_bytes
