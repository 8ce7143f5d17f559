"""Student building blocks: the depthwise-separable block and channel rounding."""

from __future__ import annotations

import numbers
from typing import Any, Optional

from edgekd.errors import invalid_value

_ACTIVATIONS = ("relu", "relu6")

# BatchNorm momentum of every student. Keras' default (0.99) suits ImageNet-length training; MCU
# students train for a few hundred steps on small data, where 0.99 leaves the moving statistics far
# behind the weights and inference-mode accuracy collapses (seen on digits: 97% train, 10% val).
BN_MOMENTUM = 0.9


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (at least ``min_value``).

    Rounds to the nearest multiple, never going more than 10% below ``value``
    (the MobileNet rule), so ``width=0.5`` of 24 channels gives 16, not 8.

    Args:
        value: The scaled channel count, e.g. ``filters * width``.
        divisor: The multiple to round to (8 suits int8 SIMD kernels).
        min_value: The smallest result (default ``divisor``).

    Returns:
        The rounded channel count.
    """
    if not isinstance(divisor, numbers.Integral) or isinstance(divisor, bool) or divisor < 1:
        raise invalid_value("divisor", "a positive int", divisor)
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
        raise invalid_value("value", "a positive number of channels", value)
    value, divisor = float(value), int(divisor)
    min_value = divisor if min_value is None else int(min_value)
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def _check_act(activation: str) -> str:
    if activation not in _ACTIVATIONS:
        raise invalid_value("activation", f"one of {', '.join(_ACTIVATIONS)}", activation)
    return activation


def act_layer(activation: str, name: str) -> Any:
    """A ReLU or ReLU6 layer (both fuse into the preceding int8 TFLite op)."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    return keras.layers.ReLU(max_value=6.0 if _check_act(activation) == "relu6" else None, name=name)


def depthwise_separable_block(
    x: Any,
    filters: int,
    *,
    stride: int = 1,
    block_id: int = 1,
    kernel_size: int = 3,
    activation: str = "relu6",
    depth_multiplier: int = 1,
    prefix: str = "",
) -> Any:
    """Depthwise-separable conv block: DepthwiseConv2D → BN → ReLU6 → 1×1 Conv2D → BN → ReLU6.

    Layer names are predictable so profiles and feature distillation can
    address them: ``{prefix}block{n}_dw``, ``block{n}_dw_bn``,
    ``block{n}_dw_relu``, ``block{n}_pw``, ``block{n}_pw_bn``,
    ``block{n}_pw_relu``. Convolutions have no bias (BatchNorm supplies it and
    folds into them on conversion), padding is ``"same"``. A stride-2 block on
    a feature map already 1 pixel wide/high does not stride in that dimension
    (outputs never shrink below 1×1).

    Args:
        x: Input tensor (N, H, W, C).
        filters: Output channels of the pointwise conv.
        stride: Stride of the depthwise conv (1 or 2).
        block_id: The ``n`` of the layer names.
        kernel_size: Depthwise kernel size (clipped to the feature map).
        activation: ``"relu6"`` (MobileNet) or ``"relu"`` (DS-CNN).
        depth_multiplier: Depthwise channel multiplier.
        prefix: Prepended to every layer name.

    Returns:
        The block's output tensor.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    for arg, val in (("filters", filters), ("block_id", block_id), ("kernel_size", kernel_size),
                     ("depth_multiplier", depth_multiplier)):
        if not isinstance(val, numbers.Integral) or isinstance(val, bool) or val < (0 if arg == "block_id" else 1):
            raise invalid_value(arg, "a positive int", val)
    if stride not in (1, 2):
        raise invalid_value("stride", "1 or 2", stride)
    _check_act(activation)
    h, w = (int(d) if d is not None else 2 for d in x.shape[1:3])
    strides = (stride if h > 1 else 1, stride if w > 1 else 1)
    kernel = (min(kernel_size, h) if h > 1 else 1, min(kernel_size, w) if w > 1 else 1)
    p = f"{prefix}block{block_id}_"
    x = keras.layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                                     depth_multiplier=depth_multiplier, name=p + "dw")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=p + "dw_bn")(x)
    x = act_layer(activation, p + "dw_relu")(x)
    x = keras.layers.Conv2D(int(filters), 1, padding="same", use_bias=False, name=p + "pw")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=p + "pw_bn")(x)
    return act_layer(activation, p + "pw_relu")(x)
