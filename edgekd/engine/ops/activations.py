"""Activation ops: SOFTMAX (and LOGISTIC, TANH, QUANTIZE, DEQUANTIZE).

Each emitter calls the kernel the TFLM tree's own kernel calls: CMSIS-NN's
``arm_softmax_s8`` in Chirale_TensorFLowLite, the reference kernels in
esp-tflite-micro, with the parameters ``Prepare`` computes precomputed here.
"""

from __future__ import annotations

import math

import numpy as np

from edgekd.engine import esp_nn, quant
from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op
from edgekd.engine.ops import register
from edgekd.engine.ops.shape import runtime_shape, unsupported


# --- LOGISTIC, TANH, QUANTIZE, DEQUANTIZE (int8) ---------------------------------------------------------------
# No LUT in either tree: logistic.cc and tanh.cc compute int8 with gemmlowp fixed point in Eval, from
# input_multiplier, input_left_shift and input_range_radius that Prepare computes (precomputed here).

_INPUT_INTEGER_BITS = 4  # logistic_common / tanh: kInputIntegerBits for int8


def sigmoid_tanh_params(input_scale: float) -> tuple[int, int, int]:
    """Prepare of int8 LOGISTIC and TANH: ``(input_multiplier, input_left_shift, input_range_radius)``.

    ``q = frexp(double(scale) * 2**27, &left_shift)``, ``multiplier = (int32_t)TfLiteRound(q * 2**31)``,
    ``radius = CalculateInputRadius(4, left_shift, 31)``.

    Raises:
        ValueError: A scale the kernel cannot represent (a multiplier of 2**31, a negative shift).
    """
    q, shift = math.frexp(float(input_scale) * float(1 << (31 - _INPUT_INTEGER_BITS)))
    multiplier = int(quant.round_half_away(q * float(1 << 31)))
    if multiplier >= 1 << 31 or shift < 0:
        raise ValueError(f"input scale {input_scale!r} gives multiplier {multiplier}, shift {shift}")
    return multiplier, shift, quant.calculate_input_radius(_INPUT_INTEGER_BITS, shift, 31)


def _unary_int8(op: Op, em: Emitter) -> tuple[int, int, int]:
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    if src.dtype != "INT8" or dst.dtype != "INT8" or not src.scale:
        raise unsupported(op, f"{src.dtype} -> {dst.dtype} tensors (int8 only)")
    try:
        return sigmoid_tanh_params(src.scale[0])
    except ValueError as e:
        raise unsupported(op, str(e)) from None


@register("LOGISTIC", in_place=True)
def logistic(op: Op, em: Emitter) -> str:
    """LOGISTIC int8: ``reference_integer_ops::Logistic`` (both trees; output zero point -128 as Prepare requires)."""
    multiplier, shift, radius = _unary_int8(op, em)
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    if dst.zero_point[:1] != (-128,):
        raise unsupported(op, f"output zero point {dst.zero_point[:1]} (TFLM requires -128)")
    em.include("tensorflow/lite/kernels/internal/reference/integer_ops/logistic.h")
    return (f"    tflite::reference_integer_ops::Logistic({src.zero_point[0]}, {radius}, {multiplier}, {shift}, "
            f"{src.size}, {em.ptr(op.inputs[0])}, {em.ptr(op.outputs[0])});\n")


@register("TANH", in_place=True)
def tanh(op: Op, em: Emitter) -> str:
    """TANH int8: ``reference_integer_ops::Tanh`` (both trees)."""
    multiplier, shift, radius = _unary_int8(op, em)
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    em.include("tensorflow/lite/kernels/internal/reference/integer_ops/tanh.h")
    return (runtime_shape("in_shape", src.shape) + runtime_shape("out_shape", dst.shape)
            + f"    tflite::reference_integer_ops::Tanh({src.zero_point[0]}, {radius}, {multiplier}, {shift}, "
            f"in_shape, {em.ptr(op.inputs[0])}, out_shape, {em.ptr(op.outputs[0])});\n")


# quantize_common.cc: the (input, output) types Eval requantizes with reference_ops::Requantize.
_REQUANTIZE = {("INT16", "INT8"), ("INT8", "INT8"), ("INT8", "UINT8"), ("UINT8", "INT8"), ("INT8", "INT16"),
               ("INT8", "INT32"), ("INT16", "INT16"), ("INT16", "INT32"), ("INT32", "INT8"), ("INT32", "INT16")}


def _double(scale: float) -> str:
    """``static_cast<double>`` of a float32 scale, as a C expression (the float literal is exact)."""
    return f"static_cast<double>({float(np.float32(scale))!r}f)"


def _affine(op: Op, em: Emitter, struct: str, fields: dict, fn: str) -> str:
    """``tflite::<struct> params`` with ``fields``, then ``reference_ops::<fn>(params, in_shape, in, out_shape,
    out)``."""
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    return (f"    tflite::{struct} params;\n" + "".join(f"    params.{k} = {v};\n" for k, v in fields.items())
            + runtime_shape("in_shape", src.shape) + runtime_shape("out_shape", dst.shape)
            + f"    tflite::reference_ops::{fn}(params, in_shape, {em.ptr(op.inputs[0])}, out_shape, "
            f"{em.ptr(op.outputs[0])});\n")


@register("QUANTIZE")
def quantize(op: Op, em: Emitter) -> str:
    """QUANTIZE: float32 -> int8/int16 with ``reference_ops::AffineQuantize``; integer -> integer with
    ``reference_ops::Requantize`` (multiplier ``QuantizeMultiplier(double(s_in) / double(s_out))``)."""
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    if len(dst.scale) != 1:
        raise unsupported(op, "an output that is not quantized per tensor")
    zp_out = int(dst.zero_point[0])
    if src.dtype == "FLOAT32" and dst.dtype in ("INT8", "INT16"):
        em.include("tensorflow/lite/kernels/internal/reference/quantize.h")
        return _affine(op, em, "QuantizationParams", {"zero_point": zp_out, "scale": _double(dst.scale[0])},
                       "AffineQuantize")
    if (src.dtype, dst.dtype) not in _REQUANTIZE or not src.scale:
        raise unsupported(op, f"{src.dtype} -> {dst.dtype}")
    try:
        multiplier, shift = quant.quantize_multiplier(float(src.scale[0]) / float(dst.scale[0]))
    except ValueError as e:
        raise unsupported(op, str(e)) from None
    em.include("tensorflow/lite/kernels/internal/reference/requantize.h")
    return (f"    tflite::reference_ops::Requantize({em.ptr(op.inputs[0])}, {src.size}, {multiplier}, {shift}, "
            f"{int(src.zero_point[0])}, {zp_out}, {em.ptr(op.outputs[0])});\n")


@register("DEQUANTIZE")
def dequantize(op: Op, em: Emitter) -> str:
    """DEQUANTIZE int8/int16/uint8 -> float32: ``reference_ops::Dequantize`` (both trees)."""
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    if src.dtype not in ("INT8", "INT16", "UINT8") or dst.dtype != "FLOAT32" or len(src.scale) != 1:
        raise unsupported(op, f"{src.dtype} -> {dst.dtype} (per-tensor int8/int16/uint8 -> float32 only)")
    em.include("tensorflow/lite/kernels/internal/reference/dequantize.h")
    return _affine(op, em, "DequantizationParams", {"scale": _double(src.scale[0]),
                                                    "zero_point": int(src.zero_point[0])}, "Dequantize")
# --- end of LOGISTIC, TANH, QUANTIZE, DEQUANTIZE ---------------------------------------------------------------


# --- SOFTMAX (int8 -> int8) ------------------------------------------------------------------------------------
# Neither tree uses a LUT for int8 (softmax_common.cc builds LUTs for int16 inputs only): Eval computes exp with
# gemmlowp fixed point from input_multiplier, input_left_shift and diff_min, precomputed here.
_SCALED_DIFF_INTEGER_BITS = 5  # softmax_common.cc: kScaledDiffIntegerBits


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """``CalculateSoftmaxParams`` for int8: ``(input_multiplier, input_left_shift, diff_min)``.

    ``PreprocessSoftmaxScaling(double(beta), double(input_scale), 5)`` and
    ``diff_min = -1.0 * CalculateInputRadius(5, input_left_shift)``.
    """
    multiplier, shift = quant.preprocess_softmax_scaling(beta, input_scale, _SCALED_DIFF_INTEGER_BITS)
    return multiplier, shift, int(-1.0 * quant.calculate_input_radius(_SCALED_DIFF_INTEGER_BITS, shift))


@register("SOFTMAX")
def softmax(op: Op, em: Emitter) -> str:
    """SOFTMAX int8 -> int8: ``arm_softmax_s8`` (Chirale's CMSIS-NN kernel) or ``reference_ops::Softmax``."""
    src, dst = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    if src.dtype != "INT8" or dst.dtype != "INT8" or not src.scale or not src.shape:
        raise unsupported(op, f"{src.dtype} -> {dst.dtype} tensors (int8 -> int8 only)")
    if dst.zero_point[:1] != (-128,) or dst.scale[:1] != (1.0 / 256,):
        raise unsupported(op, f"output zero point {dst.zero_point[:1]} and scale {dst.scale[:1]} "
                              "(TFLM requires -128 and 1/256)")
    try:
        multiplier, shift, diff_min = softmax_params(float(op.options.get("beta", 1.0)), src.scale[0])
    except ValueError as e:
        raise unsupported(op, str(e)) from None
    if em.kernels == "cmsis-nn":
        em.include("third_party/cmsis_nn/Include/arm_nnfunctions.h")
        rows = math.prod(src.shape[:-1])
        return (f"    arm_softmax_s8({em.ptr(op.inputs[0])}, {rows}, {src.shape[-1]}, {multiplier}, {shift}, "
                f"{diff_min}, {em.ptr(op.outputs[0])});\n")
    if em.esp_nn:
        return _esp_nn_softmax(op, em, multiplier, shift, diff_min)
    em.include("tensorflow/lite/kernels/internal/reference/softmax.h")
    return ("    tflite::SoftmaxParams params = {};\n"
            f"    params.input_multiplier = {multiplier};\n    params.input_left_shift = {shift};\n"
            f"    params.diff_min = {diff_min};\n"
            + runtime_shape("in_shape", src.shape) + runtime_shape("out_shape", dst.shape)
            + f"    tflite::reference_ops::Softmax(params, in_shape, {em.ptr(op.inputs[0])}, out_shape, "
            f"{em.ptr(op.outputs[0])});\n")


def _esp_nn_softmax(op: Op, em: Emitter, multiplier: int, shift: int, diff_min: int) -> str:
    """``esp_nn_softmax_s8`` over the rows, as esp-tflite-micro's ``kernels/esp_nn/softmax.cc`` calls it.

    Its optimized variants keep one row of exponentials (int32) in a scratch buffer. The kernel file sizes it
    with ``esp_nn_get_softmax_scratch_size(dims[1], dims[2])`` (the row length only for a rank-2 input); the
    scratch planned here is one row's, ``4 * depth`` bytes, and ``model_init()`` checks the size ESP-NN asks
    for a row fits it.
    """
    src = em.graph.tensor(op.inputs[0])
    em.include(esp_nn.HEADER)
    depth, rows = src.shape[-1], math.prod(src.shape[:-1])
    em.init_check(f"if (esp_nn_get_softmax_scratch_size({depth}, {rows}) > {4 * depth}) {em.fail()}")
    return (f"    esp_nn_set_softmax_scratch_buf({em.scratch(4 * depth)});\n"
            f"    esp_nn_softmax_s8({em.ptr(op.inputs[0])}, {rows}, {depth}, {multiplier}, {shift}, {diff_min}, "
            f"{em.ptr(op.outputs[0])});\n")
# --- end of SOFTMAX ----------------------------------------------------------------------------------------------
