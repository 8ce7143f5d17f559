"""TFLM's integer preparation routines, ported so the host computes what ``Prepare`` computes.

The compiled engine emits, as ``const`` data, what TFLM's kernels compute at
start-up on the device: output multipliers and shifts, activation ranges,
padding. Each function here mirrors one routine of TFLM
(``tensorflow/lite/kernels/internal/quantization_util.cc``,
``kernels/kernel_util.cc``, ``kernels/padding.h``) operation for operation —
double where it uses double, float32 where it uses float, ``std::round``'s
half-away-from-zero rounding — so that the results are bit-identical.
``tests/engine/test_quant.py`` compiles the real routines from each TFLM tree
and compares them on many inputs.
"""

from __future__ import annotations

import math

import numpy as np

INT8_RANGE = (-128, 127)
_QRANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
# TfLiteFusedActivation names as the schema's ActivationFunctionType numbers them.
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def round_half_away(x: float) -> float:
    """C's ``round``: halves away from zero (Python's ``round`` rounds them to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x) if abs(x) < 2.0 ** 52 else x


def quantize_multiplier(m: float) -> tuple[int, int]:
    """``QuantizeMultiplier``: ``m`` as a Q31 significand and a power-of-two exponent.

    Returns:
        ``(quantized_multiplier, shift)`` with ``m ≈ quantized_multiplier * 2**(shift - 31)``.
    """
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(round_half_away(q * float(1 << 31)))
    if q_fixed > (1 << 31):
        raise ValueError(f"QuantizeMultiplier: {m!r} does not fit")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one_exp(m: float) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp`` (0 < m < 1): ``(multiplier, left_shift ≤ 0)``."""
    if not 0.0 < m < 1.0:
        raise ValueError(f"QuantizeMultiplierSmallerThanOneExp needs 0 < m < 1, got {m!r}")
    q, shift = quantize_multiplier(m)
    if shift > 0:  # TFLITE_CHECK_LE(shift, 0): m rounds up to 1.0
        raise ValueError(f"QuantizeMultiplierSmallerThanOneExp: {m!r} rounds to 1")
    return q, shift


def quantize_multiplier_greater_than_one(m: float) -> tuple[int, int]:
    """``QuantizeMultiplierGreaterThanOne`` (m > 1): ``(multiplier, left_shift ≥ 0)``."""
    if not m > 1.0:
        raise ValueError(f"QuantizeMultiplierGreaterThanOne needs m > 1, got {m!r}")
    return quantize_multiplier(m)


def f32(x: float) -> float:
    """``x`` rounded to float32, as a Python float (C++ ``static_cast<float>``)."""
    return float(np.float32(x))


def _quantize_f32(scale: float, zero_point: int, f: float) -> int:
    # kernel_util.cc Quantize(): float division, std::round on float; TF_LITE_ENSURE that it fits int32
    # (TFLM lets exactly 2**31 through into an undefined cast: refused here too).
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tmp = round_half_away(float(np.float32(f) / np.float32(scale)))
    if not -2.0 ** 31 <= tmp < 2.0 ** 31 or not -2 ** 31 <= int(zero_point) + int(tmp) < 2 ** 31:
        raise ValueError(f"Quantize: {f!r} / {scale!r} + {zero_point} does not fit int32")
    return int(zero_point) + int(tmp)


def activation_range(activation: int, dtype: str, scale: float, zero_point: int) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the clamp of a fused activation on a quantized output.

    Args:
        activation: The op's ``fusedActivationFunction`` (schema number).
        dtype: The output's TFLite type (``"INT8"``, ``"UINT8"``, ``"INT16"``).
        scale: The output's scale.
        zero_point: The output's zero point.

    Returns:
        ``(act_min, act_max)``.
    """
    qmin, qmax = _QRANGE[dtype]
    name = ACTIVATIONS.get(int(activation), "NONE")
    if name == "RELU":
        return max(qmin, _quantize_f32(scale, zero_point, 0.0)), qmax
    if name == "RELU6":
        return (max(qmin, _quantize_f32(scale, zero_point, 0.0)),
                min(qmax, _quantize_f32(scale, zero_point, 6.0)))
    if name == "RELU_N1_TO_1":
        return (max(qmin, _quantize_f32(scale, zero_point, -1.0)),
                min(qmax, _quantize_f32(scale, zero_point, 1.0)))
    return qmin, qmax


def out_size(padding: str, image: int, filt: int, stride: int, dilation: int = 1) -> int:
    """``ComputeOutSize`` (``padding`` is ``"SAME"`` or ``"VALID"``)."""
    effective = (filt - 1) * dilation + 1
    if stride == 0:
        return 0
    if padding == "SAME":
        return _cdiv(image + stride - 1, stride)
    if padding == "VALID":
        return _cdiv(image + stride - effective, stride)
    return 0


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero; Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def padding_with_offset(stride: int, dilation: int, in_size: int, filt: int, out: int) -> tuple[int, int]:
    """``ComputePaddingWithOffset``: ``(padding, offset)``."""
    effective = (filt - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, total % 2


def padding_hw(stride_h: int, stride_w: int, dil_h: int, dil_w: int, in_h: int, in_w: int, filt_h: int,
               filt_w: int, padding: str) -> dict[str, int]:
    """``ComputePaddingHeightWidth``: output size and ``TfLitePaddingValues``.

    Returns:
        ``{"out_height", "out_width", "height", "width", "height_offset", "width_offset"}``.
    """
    ow = out_size(padding, in_w, filt_w, stride_w, dil_w)
    oh = out_size(padding, in_h, filt_h, stride_h, dil_h)
    ph, oh_off = padding_with_offset(stride_h, dil_h, in_h, filt_h, oh)
    pw, ow_off = padding_with_offset(stride_w, dil_w, in_w, filt_w, ow)
    return {"out_height": oh, "out_width": ow, "height": ph, "width": pw, "height_offset": oh_off,
            "width_offset": ow_off}


PADDINGS = {0: "SAME", 1: "VALID"}


def per_channel_multipliers(input_scale: float, filter_scales: tuple[float, ...], output_scale: float,
                            num_channels: int) -> tuple[list[int], list[int]]:
    """``PopulateConvolutionQuantizationParams``' per-channel multipliers and shifts.

    ``effective = double(input_scale) * double(filter_scale[i]) / double(output_scale)``
    (the filter's single scale for every channel when it is per-tensor).
    """
    mults, shifts = [], []
    for i in range(num_channels):
        s = filter_scales[i] if len(filter_scales) > 1 else filter_scales[0]
        m, sh = quantize_multiplier(f32(input_scale) * f32(s) / f32(output_scale))
        mults.append(m)
        shifts.append(sh)
    return mults, shifts


def conv_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """``GetQuantizedConvolutionMultipler`` + ``QuantizeMultiplier``, as per-tensor FULLY_CONNECTED uses them.

    The product ``input_scale * filter_scale`` is taken in float32 first, as TFLM does.
    """
    product = f32(np.float32(input_scale) * np.float32(filter_scale))
    if not product >= 0.0:  # TF_LITE_ENSURE(input_product_scale >= 0)
        raise ValueError(f"GetQuantizedConvolutionMultipler: negative scale product {product!r}")
    return quantize_multiplier(product / f32(output_scale))


def preprocess_softmax_scaling(beta: float, input_scale: float, input_integer_bits: int) -> tuple[int, int]:
    """``PreprocessSoftmaxScaling`` (``TFLITE_SINGLE_ROUNDING`` off, no ``TFLITE_EMULATE_FLOAT``).

    ``min(beta * input_scale * 2**(31 - input_integer_bits), 2**31 - 1)`` in double, then
    ``QuantizeMultiplierGreaterThanOne``.

    Returns:
        ``(quantized_multiplier, left_shift)``.
    """
    real = min(float(beta) * float(input_scale) * float(1 << (31 - input_integer_bits)), float((1 << 31) - 1))
    return quantize_multiplier_greater_than_one(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """``CalculateInputRadius``: ``floor(((1 << bits) - 1) * 2**(total - bits) / 2**left_shift)`` in double."""
    rescaled = (1.0 * ((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                / float(1 << input_left_shift))
    return int(math.floor(rescaled))
