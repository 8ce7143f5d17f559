"""Student architectures with width (α), resolution (ρ) and depth knobs.

Every builder takes ``(input_shape, num_classes)`` plus keyword-only knobs,
returns an uncompiled ``keras.Model`` whose output is **logits** (no softmax,
so distillation losses can apply their temperature), and uses only layers
that convert to builtin int8 TFLite ops TFLM runs (CONV_2D,
DEPTHWISE_CONV_2D, fused ReLU/ReLU6, AVERAGE/MAX_POOL_2D, MEAN,
FULLY_CONNECTED, RESHAPE, RESIZE_NEAREST_NEIGHBOR).

Resolution multiplier and data: the model's declared input is the *resized*
input, ``(round(H·ρ), round(W·ρ), C)``. Data must be fed at that size:
``edgekd.distill.Distiller`` resizes its data to the student's declared input
(``student.input_shape``), and at deployment the device must resize its
sensor data the same way. ``ρ > 1`` (up-sampling a tiny input, e.g. 8×8
digits → 32×32 so a MobileNet has room to down-sample) must be asked for
with ``upsample=True``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

from edgekd.errors import invalid_value
from edgekd.students.blocks import BN_MOMENTUM, act_layer, depthwise_separable_block, make_divisible


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_multipliers(width: Any, resolution: Any, upsample: Any) -> None:
    """Validate the width and resolution multipliers (shared by builders, get() and shrink())."""
    if not _is_num(width) or not 0 < width <= 4:
        raise invalid_value("width", "a number in (0, 4], e.g. 0.5", width)
    if not isinstance(upsample, bool):
        raise invalid_value("upsample", "True or False", upsample)
    if not _is_num(resolution) or resolution <= 0 or resolution > 16:
        raise invalid_value("resolution", "a number in (0, 1] (or up to 16 with upsample=True), e.g. 0.75",
                            resolution)
    if resolution > 1 and not upsample:
        raise invalid_value(
            "resolution", "a number in (0, 1]; pass upsample=True to up-sample the input (resolution > 1)",
            resolution,
        )


def check_depth(depth: Any, lo: int, hi: Optional[int]) -> None:
    """Validate a depth knob: an int in [lo, hi]."""
    if not _is_int(depth) or depth < lo or (hi is not None and depth > hi):
        rng = f"an int in [{lo}, {hi}]" if hi is not None else f"an int >= {lo}"
        raise invalid_value("depth", rng, depth)


def scaled_shape(input_shape: Sequence[int], resolution: float) -> tuple[int, int, int]:
    """``(H, W, C)`` → ``(round(H·ρ), round(W·ρ), C)`` (each side at least 1)."""
    h, w, c = input_shape
    return max(1, int(round(h * resolution))), max(1, int(round(w * resolution))), int(c)


def _check_io(input_shape: Any, num_classes: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(_is_int(d) and d >= 1 for d in shape):
        raise invalid_value("input_shape", "(height, width, channels) as 3 positive ints, e.g. (8, 8, 1)",
                            input_shape)
    if not _is_int(num_classes) or num_classes < 1:
        raise invalid_value("num_classes", "a positive int", num_classes)
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _model_input(input_shape: Any, num_classes: Any, width: Any, resolution: Any, upsample: Any,
                 depth: Any, depth_range: tuple[int, Optional[int]]) -> Any:
    """Validate the common builder arguments; return the ``keras.Input`` at the resized shape."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    shape = _check_io(input_shape, num_classes)
    check_multipliers(width, resolution, upsample)
    check_depth(depth, *depth_range)
    return keras.Input(scaled_shape(shape, resolution), name="input")


def _filters(n: int, width: float) -> int:
    return make_divisible(n * width)


def _stride(x: Any, stride: int) -> tuple[int, int]:
    h, w = int(x.shape[1]), int(x.shape[2])
    return (stride if h > 1 else 1, stride if w > 1 else 1)


def _head(x: Any, num_classes: int, *, dropout: float, softmax: bool, pool: bool = True) -> Any:
    """[GAP →] [Dropout →] Dense logits [→ Softmax], layers ``gap``, ``dropout``, ``logits``, ``probs``."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if pool:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(int(num_classes), name="logits")(x)
    if softmax:
        x = keras.layers.Softmax(name="probs")(x)
    return x


def ds_cnn(
    input_shape: Sequence[int] = (49, 10, 1),
    num_classes: int = 12,
    *,
    width: float = 1.0,
    resolution: float = 1.0,
    depth: int = 4,
    upsample: bool = False,
    softmax: bool = False,
    name: str = "ds_cnn",
) -> Any:
    """DS-CNN, the keyword-spotting model of MLPerf Tiny (Zhang et al., "Hello Edge").

    Conv2D(64·α, 10×4, stride 2) → BN → ReLU → Dropout(0.2) → ``depth`` ×
    depthwise-separable blocks (64·α, ReLU) → Dropout(0.4) → AveragePooling2D
    over the whole feature map → Flatten → Dense(num_classes) logits. The
    default input is 49×10×1 MFCCs; any (H, W, C) works (the first kernel is
    clipped to the input).

    Args:
        input_shape: (H, W, C) of the data *before* the resolution multiplier.
        num_classes: Number of output logits.
        width: Width multiplier α: channels = make_divisible(64·α).
        resolution: Resolution multiplier ρ: the model input is (H·ρ, W·ρ, C),
            and data must be resized to it (see the module docstring).
        depth: Number of depthwise-separable blocks (MLPerf: 4).
        upsample: Allow ``resolution > 1``.
        softmax: Append a Softmax (default: logits, as distillation needs).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    inputs = _model_input(input_shape, num_classes, width, resolution, upsample, depth, (0, 32))
    h, w = int(inputs.shape[1]), int(inputs.shape[2])
    filters = _filters(64, width)
    x = keras.layers.Conv2D(filters, (min(10, h), min(4, w)), strides=_stride(inputs, 2), padding="same",
                            use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="conv1_bn")(x)
    x = act_layer("relu", "conv1_relu")(x)
    x = keras.layers.Dropout(0.2, name="conv1_dropout")(x)
    for i in range(1, depth + 1):
        x = depthwise_separable_block(x, filters, block_id=i, activation="relu")
    x = keras.layers.Dropout(0.4, name="dropout")(x)
    x = keras.layers.AveragePooling2D(pool_size=(int(x.shape[1]), int(x.shape[2])), name="avg_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(int(num_classes), name="logits")(x)
    if softmax:
        x = keras.layers.Softmax(name="probs")(x)
    return keras.Model(inputs, x, name=name)


# MobileNetV1 body after the first conv: (filters, stride); the 5 (512, 1) blocks are the repeated ones.
_MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
    (1024, 2), (1024, 1)]


def mobilenet_v1(
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    *,
    width: float = 1.0,
    resolution: float = 1.0,
    depth: int = 5,
    upsample: bool = False,
    dropout: float = 1e-3,
    softmax: bool = False,
    name: str = "mobilenet_v1",
) -> Any:
    """MobileNetV1 (Howard et al., 2017) with width and resolution multipliers.

    Conv2D(32·α, 3×3, stride 2) → BN → ReLU6 → 13 depthwise-separable blocks
    (``block1`` … ``block13``, ReLU6) → GlobalAveragePooling2D → Dropout →
    Dense(num_classes) logits. Strides are skipped once the feature map is
    1 pixel wide, so tiny inputs (8×8 digits) work.

    Args:
        input_shape: (H, W, C) of the data *before* the resolution multiplier.
        num_classes: Number of output logits.
        width: Width multiplier α: channels = make_divisible(c·α).
        resolution: Resolution multiplier ρ: the model input is (H·ρ, W·ρ, C),
            and data must be resized to it (see the module docstring).
        depth: How many of the five repeated 512-channel stride-1 blocks to
            keep (5 = the paper's network, 0 = its "shallow" variant).
        upsample: Allow ``resolution > 1``.
        dropout: Dropout rate before the classifier.
        softmax: Append a Softmax (default: logits).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if not _is_num(dropout) or not 0 <= dropout < 1:
        raise invalid_value("dropout", "a number in [0, 1)", dropout)
    inputs = _model_input(input_shape, num_classes, width, resolution, upsample, depth, (0, 5))
    h, w = int(inputs.shape[1]), int(inputs.shape[2])
    x = keras.layers.Conv2D(_filters(32, width), (min(3, h), min(3, w)), strides=_stride(inputs, 2),
                            padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="conv1_bn")(x)
    x = act_layer("relu6", "conv1_relu")(x)
    blocks = _MOBILENET_BLOCKS[:6] + _MOBILENET_BLOCKS[6:11][:depth] + _MOBILENET_BLOCKS[11:]
    for i, (f, s) in enumerate(blocks, start=1):
        x = depthwise_separable_block(x, _filters(f, width), stride=s, block_id=i, activation="relu6")
    return keras.Model(inputs, _head(x, num_classes, dropout=dropout, softmax=softmax), name=name)


def small_cnn(
    input_shape: Sequence[int] = (8, 8, 1),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    resolution: float = 1.0,
    depth: int = 2,
    upsample: bool = False,
    separable: bool = False,
    softmax: bool = False,
    name: str = "small_cnn",
) -> Any:
    """A plain small CNN: ``depth`` × [3×3 conv → BN → ReLU → 2×2 max-pool] → GAP → Dense logits.

    Stage ``i`` (from 1) has make_divisible(16·2^(i-1)·α) channels and layers
    ``conv{i}``, ``conv{i}_bn``, ``conv{i}_relu``, ``pool{i}`` (pooling is
    skipped once the feature map is 1 pixel wide). With ``separable=True``
    each stage after the first is a depthwise-separable block instead.

    Args:
        input_shape: (H, W, C) of the data *before* the resolution multiplier.
        num_classes: Number of output logits.
        width: Width multiplier α.
        resolution: Resolution multiplier ρ (model input (H·ρ, W·ρ, C)).
        depth: Number of conv stages (1-8).
        upsample: Allow ``resolution > 1``.
        separable: Use depthwise-separable blocks after the first stage.
        softmax: Append a Softmax (default: logits).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if not isinstance(separable, bool):
        raise invalid_value("separable", "True or False", separable)
    inputs = _model_input(input_shape, num_classes, width, resolution, upsample, depth, (1, 8))
    x = inputs
    for i in range(1, depth + 1):
        f = _filters(16 * 2 ** (i - 1), width)
        if separable and i > 1:
            x = depthwise_separable_block(x, f, block_id=i, activation="relu", prefix="")
        else:
            k = (min(3, int(x.shape[1])), min(3, int(x.shape[2])))
            x = keras.layers.Conv2D(f, k, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"conv{i}_bn")(x)
            x = act_layer("relu", f"conv{i}_relu")(x)
        pool = _stride(x, 2)
        if pool != (1, 1):
            x = keras.layers.MaxPooling2D(pool, padding="same", name=f"pool{i}")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout=0.0, softmax=softmax), name=name)
