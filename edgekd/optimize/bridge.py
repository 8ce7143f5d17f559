"""Keras 3 ↔ tf-keras bridge: build a tf-keras twin of a Keras 3 model.

tfmot only rewrites tf-keras (Keras 2) models. :func:`to_tf_keras` rebuilds a
Keras 3 Sequential or Functional model layer by layer with the equivalent
tf-keras layers (same names, same graph), copies the weights, and checks that
the twin computes the same function. :func:`copy_weights_back` is the way
back: it puts a twin's (e.g. pruned) weights into a clone of the Keras 3
original.

Layers are converted from their attributes, not from ``get_config`` (Keras 3
and tf-keras serialize dtypes, initializers and activations differently).
Initializers, regularizers and constraints are not carried over: the twin is
for fine-tuning an already trained model.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from edgekd.errors import ConversionError, UnsupportedLayerError, invalid_value
from edgekd.optimize._compat import import_tf_keras

# Activation functions a twin may use (Keras 3 name -> tf-keras name).
_ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "swish": "swish", "silu": "swish", "hard_sigmoid": "hard_sigmoid",
    "elu": "elu", "selu": "selu", "softplus": "softplus", "gelu": "gelu", "exponential": "exponential",
}


def _activation(layer: Any, fn: Any) -> str:
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    name = keras.activations.serialize(fn) if fn is not None else "linear"
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    if name not in _ACTIVATIONS:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) uses activation {name!r}, which the tf-keras "
            f"bridge does not map. Supported activations: {', '.join(sorted(_ACTIVATIONS))}"
        )
    return _ACTIVATIONS[name]


def _channels(layer: Any) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) uses data_format={layer.data_format!r}; "
            "the tf-keras bridge (and TFLite) need channels_last. Rebuild the model channels_last"
        )


def _conv(tk: Any, layer: Any) -> Any:
    _channels(layer)
    if getattr(layer, "groups", 1) != 1:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} (Conv2D) uses groups={layer.groups}; the tf-keras bridge supports "
            "groups=1 only. Use DepthwiseConv2D/SeparableConv2D instead"
        )
    return tk.layers.Conv2D(
        layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
        dilation_rate=layer.dilation_rate, activation=_activation(layer, layer.activation),
        use_bias=layer.use_bias, name=layer.name,
    )


def _depthwise(tk: Any, layer: Any) -> Any:
    _channels(layer)
    return tk.layers.DepthwiseConv2D(
        layer.kernel_size, strides=layer.strides, padding=layer.padding,
        depth_multiplier=layer.depth_multiplier, dilation_rate=layer.dilation_rate,
        activation=_activation(layer, layer.activation), use_bias=layer.use_bias, name=layer.name,
    )


def _separable(tk: Any, layer: Any) -> Any:
    _channels(layer)
    return tk.layers.SeparableConv2D(
        layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
        depth_multiplier=layer.depth_multiplier, dilation_rate=layer.dilation_rate,
        activation=_activation(layer, layer.activation), use_bias=layer.use_bias, name=layer.name,
    )


def _dense(tk: Any, layer: Any) -> Any:
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} (Dense) is LoRA-enabled or already quantized; the tf-keras bridge "
            "needs a plain float Dense. Merge/undo it first"
        )
    return tk.layers.Dense(
        layer.units, activation=_activation(layer, layer.activation), use_bias=layer.use_bias,
        name=layer.name,
    )


def _batchnorm(tk: Any, layer: Any) -> Any:
    if getattr(layer, "renorm", False) or getattr(layer, "synchronized", False):
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} (BatchNormalization) uses renorm/synchronized; the tf-keras bridge "
            "supports plain batch normalization only"
        )
    return tk.layers.BatchNormalization(
        axis=layer.axis, momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center,
        scale=layer.scale, name=layer.name,
    )


def _relu(tk: Any, layer: Any) -> Any:
    max_value = None if layer.max_value is None else float(layer.max_value)
    return tk.layers.ReLU(
        max_value=max_value, negative_slope=float(layer.negative_slope),
        threshold=float(layer.threshold), name=layer.name,
    )


def _pool(cls_name: str) -> Callable[[Any, Any], Any]:
    def build(tk: Any, layer: Any) -> Any:
        _channels(layer)
        return getattr(tk.layers, cls_name)(
            pool_size=layer.pool_size, strides=layer.strides, padding=layer.padding, name=layer.name,
        )

    return build


def _global_pool(cls_name: str) -> Callable[[Any, Any], Any]:
    def build(tk: Any, layer: Any) -> Any:
        _channels(layer)
        return getattr(tk.layers, cls_name)(keepdims=layer.keepdims, name=layer.name)

    return build


def _simple(cls_name: str, *attrs: str) -> Callable[[Any, Any], Any]:
    def build(tk: Any, layer: Any) -> Any:
        kwargs = {a: getattr(layer, a) for a in attrs}
        return getattr(tk.layers, cls_name)(name=layer.name, **kwargs)

    return build


def _flatten(tk: Any, layer: Any) -> Any:
    _channels(layer)
    return tk.layers.Flatten(name=layer.name)


def _rescaling(tk: Any, layer: Any) -> Any:
    def plain(v: Any) -> Any:
        return np.asarray(v, dtype="float32").tolist() if np.ndim(v) else float(v)

    return tk.layers.Rescaling(plain(layer.scale), plain(layer.offset), name=layer.name)


def _zero_padding(tk: Any, layer: Any) -> Any:
    _channels(layer)
    return tk.layers.ZeroPadding2D(padding=layer.padding, name=layer.name)


def _softmax(tk: Any, layer: Any) -> Any:
    return tk.layers.Softmax(axis=layer.axis, name=layer.name)


def _activation_layer(tk: Any, layer: Any) -> Any:
    return tk.layers.Activation(_activation(layer, layer.activation), name=layer.name)


def _reshape(tk: Any, layer: Any) -> Any:
    return tk.layers.Reshape(tuple(layer.target_shape), name=layer.name)


def _dropout(tk: Any, layer: Any) -> Any:
    return tk.layers.Dropout(layer.rate, noise_shape=layer.noise_shape, seed=layer.seed, name=layer.name)


#: Keras 3 layer class name -> builder of the tf-keras twin layer.
LAYER_BUILDERS: dict[str, Callable[[Any, Any], Any]] = {
    "Conv2D": _conv,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "Dense": _dense,
    "BatchNormalization": _batchnorm,
    "ReLU": _relu,
    "Activation": _activation_layer,
    "Softmax": _softmax,
    "MaxPooling2D": _pool("MaxPooling2D"),
    "AveragePooling2D": _pool("AveragePooling2D"),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePooling2D"),
    "GlobalMaxPooling2D": _global_pool("GlobalMaxPooling2D"),
    "Add": _simple("Add"),
    "Multiply": _simple("Multiply"),
    "Concatenate": _simple("Concatenate", "axis"),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Dropout": _dropout,
    "Rescaling": _rescaling,
    "ZeroPadding2D": _zero_padding,
}

#: Layer types :func:`to_tf_keras` accepts (``InputLayer`` included).
SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted([*LAYER_BUILDERS, "InputLayer"]))


def _check_model(model: Any) -> None:
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if not isinstance(model, keras.Model):
        raise invalid_value("model", "a Keras 3 `keras.Model` (Sequential or Functional)",
                            type(model).__name__)
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise invalid_value(
            "model",
            "a built Sequential or Functional model (subclassed models have no graph to bridge; "
            "give a Sequential model an `keras.Input(shape)` first)",
            f"{type(model).__name__} {model.name!r}",
        )


def unsupported_layers(model: Any) -> list[str]:
    """Names and types (``"name (Type)"``) of the layers :func:`to_tf_keras` cannot bridge."""
    _check_model(model)
    return [
        f"{layer.name} ({type(layer).__name__})"
        for layer in model.layers
        if type(layer).__name__ not in SUPPORTED_LAYERS
    ]


def to_tf_keras(model: Any, *, verify: bool = True, atol: float = 1e-5) -> Any:
    """Build the tf-keras twin of a Keras 3 Sequential/Functional model.

    Args:
        model: A built Keras 3 ``Sequential`` or ``Functional`` model.
        verify: Run both models on random inputs and check they agree.
        atol: Largest allowed absolute difference between the two outputs, for outputs of
            magnitude <= 1; larger outputs scale it (float32 rounding is relative).

    Returns:
        A ``tf_keras.Model`` (Functional) with the same layer names, graph and weights.

    Raises:
        InvalidArgumentError: ``model`` is not a built Sequential/Functional Keras 3 model.
        UnsupportedLayerError: A layer (named, with its type) has no tf-keras twin.
        ConversionError: ``verify`` found the twin computing a different function.
        MissingExtraError: tf-keras is not installed.
    """
    _check_model(model)
    bad = unsupported_layers(model)
    if bad:
        raise UnsupportedLayerError(
            f"Layer {bad[0]} has no tf-keras twin, so it cannot be quantization-aware trained or pruned"
            f"{f' (also: {chr(44).join(bad[1:])})' if len(bad) > 1 else ''}. Supported layers: "
            f"{', '.join(SUPPORTED_LAYERS)}"
        )
    tk = import_tf_keras("to_tf_keras")
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    built: dict[int, Any] = {}
    twins: dict[str, Any] = {}

    def twin_tensor(kt: Any) -> Any:
        key = id(kt)
        if key in built:
            return built[key]
        op, node_index, tensor_index = kt._keras_history
        if type(op).__name__ == "InputLayer":
            shape = tuple(kt.shape[1:])
            out = tk.Input(shape=shape, batch_size=kt.shape[0], dtype=str(kt.dtype), name=op.name)
        else:
            node = op._inbound_nodes[node_index]
            args = keras.tree.map_structure(
                lambda a: twin_tensor(a) if isinstance(a, keras.KerasTensor) else a, node.arguments.args
            )
            kwargs = {k: v for k, v in node.arguments.kwargs.items() if k != "training"}
            if any(isinstance(v, keras.KerasTensor) for v in keras.tree.flatten(kwargs)):
                raise UnsupportedLayerError(
                    f"Layer {op.name!r} ({type(op).__name__}) is called with tensor keyword arguments; "
                    "the tf-keras bridge supports positional tensor inputs only"
                )
            layer = twins.get(op.name)
            if layer is None:
                layer = LAYER_BUILDERS[type(op).__name__](tk, op)
                twins[op.name] = layer
            result = layer(*args, **kwargs)
            outs = keras.tree.flatten(result)
            out = outs[tensor_index]
            for i, o in enumerate(outs):
                built[id(op._inbound_nodes[node_index].output_tensors[i])] = o
        built[key] = out
        return out

    t_inputs = [twin_tensor(kt) for kt in model.inputs]
    t_outputs = [twin_tensor(kt) for kt in model.outputs]
    twin = tk.Model(
        t_inputs if len(t_inputs) > 1 else t_inputs[0],
        t_outputs if len(t_outputs) > 1 else t_outputs[0],
        name=model.name,
    )
    for name, layer in twins.items():
        weights = [np.asarray(w) for w in model.get_layer(name).get_weights()]
        if len(weights) != len(layer.weights):
            raise ConversionError(
                f"Layer {name!r}: the Keras 3 layer has {len(weights)} weights but its tf-keras twin has "
                f"{len(layer.weights)}; this layer configuration is not bridgeable"
            )
        layer.set_weights(weights)
    if verify:
        xs = _random_inputs(model, 16, 0)
        feed = xs if len(xs) > 1 else xs[0]
        scale = max(1.0, max(float(np.max(np.abs(np.asarray(o)))) for o in keras.tree.flatten(model(feed))))
        diff = max_abs_diff(model, twin, x=xs if len(xs) > 1 else xs[0])
        # float32 rounding grows with the outputs' magnitude (deep trained nets: logits ~10-100).
        if not diff <= atol * scale:
            raise ConversionError(
                f"The tf-keras twin of {model.name!r} differs from it by {diff:.3g} (> {atol:g} x max(1, "
                f"max |output| = {scale:.3g})) on random inputs; please report this model to edgekd"
            )
    return twin


def _random_inputs(model: Any, num_samples: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = []
    for kt in model.inputs:
        shape = (num_samples, *[int(d) if d is not None else 8 for d in kt.shape[1:]])
        xs.append(rng.uniform(-1.0, 1.0, size=shape).astype("float32"))
    return xs


def max_abs_diff(
    model: Any, twin: Any, *, x: Optional[Any] = None, num_samples: int = 16, seed: int = 0
) -> float:
    """Largest absolute difference between a Keras 3 model's and its twin's outputs.

    Args:
        model: The Keras 3 model.
        twin: Its tf-keras twin (:func:`to_tf_keras`).
        x: Inputs (an array, or a list for multi-input models); random uniform [-1, 1] if omitted.
        num_samples: Number of random samples when ``x`` is omitted.
        seed: Seed of the random inputs.

    Returns:
        ``max |model(x) - twin(x)|`` over all outputs (inference mode).
    """
    xs = _random_inputs(model, num_samples, seed) if x is None else (x if isinstance(x, list) else [x])
    feed = xs if len(xs) > 1 else xs[0]
    a = model(feed, training=False)
    b = twin(feed, training=False)
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    return float(max(np.max(np.abs(np.asarray(p) - np.asarray(q))) for p, q in zip(a, b)))


def copy_weights_back(model: Any, twin: Any) -> Any:
    """The way back: a clone of the Keras 3 ``model`` holding the tf-keras ``twin``'s weights.

    Args:
        model: The Keras 3 model the twin was built from.
        twin: A tf-keras model with the same layer names (e.g. fine-tuned or pruned and stripped).

    Returns:
        A new Keras 3 model (same architecture as ``model``) with the twin's weights.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    clone = keras.models.clone_model(model)
    for layer in clone.layers:
        if not layer.weights:
            continue
        try:
            source = twin.get_layer(layer.name)
        except ValueError:
            raise ConversionError(
                f"Layer {layer.name!r} is missing from the tf-keras model; cannot copy its weights back"
            ) from None
        layer.set_weights([np.asarray(w) for w in source.get_weights()])
    return clone
