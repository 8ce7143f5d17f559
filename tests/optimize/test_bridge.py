"""The Keras 3 -> tf-keras twin: same function, every supported layer type, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import InvalidArgumentError, UnsupportedLayerError


def _randomize(model, seed=0):
    """Non-trivial weights everywhere (BN statistics included) so a mis-copied weight shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w, v in zip(ws, layer.weights):
            if "variance" in v.path:
                new.append(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
            else:
                new.append(rng.normal(0.0, 0.5, w.shape).astype("float32"))
        layer.set_weights(new)
    return model


def _model(kind):
    """A small functional model around one layer type (logits output, so nothing saturates)."""
    import keras

    L = keras.layers
    inp = keras.Input((8, 8, 3), name="x")
    if kind == "InputLayer":
        out = L.Flatten(name="f")(inp)
    elif kind == "Conv2D":
        out = L.Conv2D(5, 3, strides=2, padding="same", dilation_rate=1, activation="relu6", name="c")(inp)
    elif kind == "DepthwiseConv2D":
        out = L.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", name="dw")(inp)
    elif kind == "SeparableConv2D":
        out = L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="tanh", name="sep")(inp)
    elif kind == "Dense":
        out = L.Dense(7, activation="sigmoid", name="d")(L.Flatten(name="f")(inp))
    elif kind == "BatchNormalization":
        out = L.BatchNormalization(epsilon=1e-2, name="bn")(L.Conv2D(4, 1, use_bias=False, name="c")(inp))
    elif kind == "ReLU":
        out = L.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2, name="r")(inp)
    elif kind == "Activation":
        out = L.Activation("swish", name="a")(inp)
    elif kind == "Softmax":
        out = L.Softmax(axis=-1, name="s")(L.Conv2D(4, 1, name="c")(inp))
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        out = getattr(L, kind)(pool_size=3, strides=2, padding="same", name="p")(inp)
    elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        out = getattr(L, kind)(keepdims=True, name="g")(inp)
    elif kind in ("Add", "Multiply"):
        a = L.Conv2D(3, 1, name="c1")(inp)
        out = getattr(L, kind)(name="m")([inp, a])
    elif kind == "Concatenate":
        a = L.Conv2D(2, 1, name="c1")(inp)
        out = L.Concatenate(axis=-1, name="cat")([inp, a, inp])
    elif kind == "Reshape":
        out = L.Reshape((16, 12), name="rs")(inp)
    elif kind == "Flatten":
        out = L.Flatten(name="f")(inp)
    elif kind == "Dropout":
        out = L.Dropout(0.5, name="drop")(inp)
    elif kind == "Rescaling":
        out = L.Rescaling(1.0 / 3.0, offset=-0.25, name="rescale")(inp)
    elif kind == "ZeroPadding2D":
        out = L.Conv2D(2, 3, name="c")(L.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(inp))
    else:  # pragma: no cover - the coverage test below keeps this list complete
        raise KeyError(kind)
    return _randomize(keras.Model(inp, out, name=f"m_{kind.lower()}"))


LAYER_TYPES = [
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "ReLU",
    "Activation", "Softmax", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Add", "Multiply", "Concatenate", "Reshape", "Flatten", "Dropout", "Rescaling",
    "ZeroPadding2D",
]


def test_every_supported_layer_is_tested():
    from edgekd.optimize import SUPPORTED_LAYERS

    assert sorted(LAYER_TYPES) == sorted(SUPPORTED_LAYERS)


@pytest.mark.parametrize("kind", LAYER_TYPES)
def test_twin_computes_the_same_function(kind):
    from edgekd.optimize import max_abs_diff, to_tf_keras

    model = _model(kind)
    twin = to_tf_keras(model)
    assert type(twin).__module__.startswith("tf_keras")
    if kind != "InputLayer":
        assert any(type(layer).__name__ == kind for layer in twin.layers), [type(ly) for ly in twin.layers]
    assert [w.shape for w in twin.get_weights()] == [tuple(w.shape) for w in model.get_weights()]
    # Larger inputs than to_tf_keras' own check, and a different seed.
    x = np.random.default_rng(7).normal(0.0, 2.0, (32, 8, 8, 3)).astype("float32")
    out = np.asarray(model(x))
    assert np.std(out) > 1e-3  # the comparison is not between two constants
    assert max_abs_diff(model, twin, x=x) < 1e-5


def test_ds_cnn_like_graph_and_weights_back():
    """Conv/BN/ReLU6, depthwise-separable blocks, a residual Add, dropout, pooling, a Dense head."""
    import keras

    from edgekd.optimize import copy_weights_back, max_abs_diff, to_tf_keras

    L = keras.layers
    inp = keras.Input((8, 8, 1), name="input")
    x = L.Rescaling(2.0, offset=-1.0, name="scale")(inp)
    x = L.Conv2D(8, (8, 4), strides=2, padding="same", use_bias=False, name="conv1")(x)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(6.0, name="conv1_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1_dw")(x)
    y = L.BatchNormalization(name="block1_dw_bn")(y)
    y = L.ReLU(6.0, name="block1_dw_relu")(y)
    y = L.Conv2D(8, 1, use_bias=False, name="block1_pw")(y)
    y = L.BatchNormalization(name="block1_pw_bn")(y)
    x = L.Add(name="residual")([x, y])
    x = L.Dropout(0.4, name="dropout")(x)
    x = L.AveragePooling2D((4, 4), name="avg_pool")(x)
    x = L.Flatten(name="flatten")(x)
    model = _randomize(keras.Model(inp, L.Dense(10, name="logits")(x), name="ds_cnn_like"))
    twin = to_tf_keras(model)
    assert [ly.name for ly in twin.layers] == [ly.name for ly in model.layers]
    x = np.random.default_rng(1).uniform(0, 1, (16, 8, 8, 1)).astype("float32")
    assert max_abs_diff(model, twin, x=x) < 1e-5

    # The way back: change the twin's weights, copy them into a Keras 3 clone.
    twin.get_layer("logits").set_weights([w * 0 + 0.5 for w in twin.get_layer("logits").get_weights()])
    back = copy_weights_back(model, twin)
    assert isinstance(back, keras.Model)
    np.testing.assert_array_equal(back.get_layer("logits").get_weights()[0], 0.5)
    assert max_abs_diff(back, twin, x=x) < 1e-5


def test_sequential_model():
    import keras

    from edgekd.optimize import max_abs_diff, to_tf_keras

    model = _randomize(keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu", name="d1"),
         keras.layers.Dense(3, name="d2")],
        name="seq",
    ))
    assert max_abs_diff(model, to_tf_keras(model), num_samples=8, seed=3) < 1e-5


def test_unsupported_layer_is_named():
    import keras

    from edgekd.optimize import to_tf_keras, unsupported_layers

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.LayerNormalization(name="my_norm")(x)
    model = keras.Model(inp, keras.layers.Flatten()(x))
    assert unsupported_layers(model) == ["my_norm (LayerNormalization)"]
    with pytest.raises(UnsupportedLayerError, match=r"my_norm \(LayerNormalization\)") as info:
        to_tf_keras(model)
    assert "Supported layers:" in str(info.value) and "DepthwiseConv2D" in str(info.value)


def test_unsupported_activation_is_named():
    import keras

    from edgekd.optimize import to_tf_keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="mish", name="head")(inp))
    with pytest.raises(UnsupportedLayerError, match=r"'head' \(Dense\).*'mish'"):
        to_tf_keras(model)


def test_not_a_functional_model():
    import keras

    from edgekd.optimize import to_tf_keras

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(InvalidArgumentError, match="Invalid value for argument `model`"):
        to_tf_keras(Sub())
    with pytest.raises(InvalidArgumentError, match="Invalid value for argument `model`"):
        to_tf_keras("model.keras")


@pytest.mark.parametrize("arch", ["dense", "ds_cnn", "mobilenet_v1", "small_cnn"])
def test_edgekd_students_bridge(arch):
    """Every builder of edgekd.students (DepthwiseConv2D/BN/ReLU6 …) has an exact twin."""
    from edgekd.optimize import max_abs_diff, to_tf_keras
    from edgekd.students import get

    kwargs = {"width": 0.25, "depth": 1} if arch != "small_cnn" else {}
    model = _randomize(get(arch)((8, 8, 1), 10, **kwargs))
    x = np.random.default_rng(2).uniform(0, 1, (8, *model.input_shape[1:])).astype("float32")
    assert max_abs_diff(model, to_tf_keras(model), x=x) < 1e-5
