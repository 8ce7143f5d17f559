"""FULLY_CONNECTED (int8): CMSIS-NN as Chirale_TensorFLowLite's kernel calls it, the reference kernel elsewhere.

Chirale (``kernels/cmsis_nn/fully_connected.cpp``): ``arm_convolve_1x1_s8_fast`` when the output has
rank > 2 and the accumulation depth is a multiple of 4 (the per-tensor multiplier repeated per output
channel), else ``arm_fully_connected_s8``; per-tensor weights only. esp-tflite-micro
(``kernels/fully_connected.cc``): ``reference_integer_ops::FullyConnected``, or ``FullyConnectedPerChannel``
when the weights have one scale per output channel. The multipliers are what
``CalculateOpDataFullyConnected`` computes (:mod:`edgekd.engine.quant`).
"""

from __future__ import annotations

import math
from typing import Sequence

from edgekd.engine import esp_nn, quant
from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op, Tensor
from edgekd.engine.ops import register
from edgekd.errors import UnsupportedOpError

CMSIS_NN = "third_party/cmsis_nn/Include/arm_nnfunctions.h"
_REFERENCE_FC = "tensorflow/lite/kernels/internal/reference/integer_ops/fully_connected.h"


def runtime_shape(em: Emitter, what: str, shape: Sequence[int]) -> str:
    """A ``tflite::RuntimeShape`` temporary of ``shape`` (its dims a const ``int32_t`` array)."""
    dims = em.array(what, list(shape) or [0], "int32_t")
    return f"tflite::RuntimeShape({len(shape)}, {dims})"


def require_int8(op: Op, em: Emitter, *tensors: int) -> None:
    """Raise :class:`UnsupportedOpError` unless every tensor in ``tensors`` is int8."""
    for t in tensors:
        dtype = em.graph.tensor(t).dtype
        if dtype != "INT8":
            raise UnsupportedOpError(
                f"The compiled engine runs {op.name} on int8 tensors only (op {op.index} has a {dtype.lower()} "
                "tensor); use the interpreter (`--engine interpreter`).")


def _bias(op: Op, em: Emitter) -> tuple[str, str]:
    """(bias pointer, bias RuntimeShape) — ``nullptr`` and an empty shape when the bias is omitted."""
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = em.graph.tensor(op.inputs[2])
        if b.dtype != "INT32":
            raise UnsupportedOpError(f"The compiled engine runs FULLY_CONNECTED with an int32 bias only (op "
                                     f"{op.index} has {b.dtype.lower()}); use the interpreter "
                                     "(`--engine interpreter`).")
        return em.ptr(op.inputs[2]), runtime_shape(em, "bias_dims", b.shape)
    return "static_cast<const int32_t*>(nullptr)", "tflite::RuntimeShape()"


@register("FULLY_CONNECTED")
def fully_connected(op: Op, em: Emitter) -> str:
    """FULLY_CONNECTED int8 with int8 weights (per-tensor; per-channel on the reference kernels)."""
    g = em.graph
    require_int8(op, em, op.inputs[0], op.inputs[1], op.outputs[0])
    inp, filt, out = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    act = quant.activation_range(op.options.get("fusedActivationFunction", 0), "INT8", out.scale[0],
                                 out.zero_point[0])
    if filt.per_channel and em.kernels == "cmsis-nn":
        raise UnsupportedOpError(
            f"FULLY_CONNECTED op {op.index} has per-channel weights, which Chirale_TensorFLowLite's "
            "CMSIS-NN kernel does not support; convert with per_channel_dense=False (or use the "
            "interpreter with a runtime that supports it).")
    if em.kernels == "cmsis-nn":
        mult, shift = quant.conv_multiplier(inp.scale[0], filt.scale[0], out.scale[0])
        return _cmsis(op, em, inp, filt, out, act, mult, shift)
    if em.esp_nn:
        return _esp_nn(op, em, inp, filt, out, act)
    return _reference(op, em, inp, filt, out, act)


def _per_channel(op: Op, inp: Tensor, filt: Tensor, out: Tensor) -> tuple[list, list]:
    """The per-channel multipliers and shifts ``CalculateOpDataFullyConnected`` computes."""
    n = len(filt.scale)
    if filt.shape[filt.quantized_dimension] != n:
        raise UnsupportedOpError(f"FULLY_CONNECTED op {op.index}: {n} weight scales for "
                                 f"{filt.shape[filt.quantized_dimension]} channels; TFLM refuses it.")
    return quant.per_channel_multipliers(inp.scale[0], filt.scale, out.scale[0], n)


def _esp_nn(op: Op, em: Emitter, inp: Tensor, filt: Tensor, out: Tensor, act: tuple[int, int]) -> str:
    """``esp_nn_fully_connected_s8`` (``esp_nn_fully_connected_per_ch_s8`` with per-channel weights) per batch,
    as esp-tflite-micro's ``kernels/esp_nn/fully_connected.cc`` calls it (shift before multiplier)."""
    em.include(esp_nn.HEADER)
    depth, accum = out.shape[-1], filt.shape[-1]
    batches = math.prod(out.shape[:-1])
    if filt.per_channel:
        mults, shifts = _per_channel(op, inp, filt, out)
        shift = em.array("shifts", shifts, "int32_t", comment="CalculateOpDataFullyConnected, per channel")
        mult = em.array("multipliers", mults, "int32_t")
        fn = "esp_nn_fully_connected_per_ch_s8"
    else:
        m, sh = quant.conv_multiplier(inp.scale[0], filt.scale[0], out.scale[0])
        fn, mult, shift = "esp_nn_fully_connected_s8", str(m), str(sh)
    bias = em.ptr(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else "nullptr"
    return (f"    for (int b = 0; b < {batches}; ++b) {{\n"
            f"      {fn}({em.ptr(op.inputs[0])} + b * {accum}, {-inp.zero_point[0]}, {accum},\n"
            f"          {em.ptr(op.inputs[1])}, {-filt.zero_point[0]}, {bias}, {em.ptr(op.outputs[0])} + b * {depth}, "
            f"{depth},\n          {out.zero_point[0]}, {shift}, {mult}, {act[0]}, {act[1]});\n    }}\n")


def _params(inp: Tensor, filt: Tensor, out: Tensor, act: tuple[int, int], mult: int, shift: int) -> str:
    """Statements filling ``tflite::FullyConnectedParams p`` as ``FullyConnectedParamsQuantized`` does."""
    return ("    tflite::FullyConnectedParams p = {};\n"
            f"    p.input_offset = {-inp.zero_point[0]};\n"
            f"    p.weights_offset = {-filt.zero_point[0]};\n"
            f"    p.output_offset = {out.zero_point[0]};\n"
            f"    p.output_multiplier = {mult};\n"
            f"    p.output_shift = {shift};\n"
            f"    p.quantized_activation_min = {act[0]};\n"
            f"    p.quantized_activation_max = {act[1]};\n")


def _reference(op: Op, em: Emitter, inp: Tensor, filt: Tensor, out: Tensor, act: tuple[int, int]) -> str:
    """``reference_integer_ops::FullyConnected``, or ``FullyConnectedPerChannel`` with per-channel weights."""
    em.include(_REFERENCE_FC)
    if filt.per_channel:
        mults, shifts = _per_channel(op, inp, filt, out)
        m = em.array("multipliers", mults, "int32_t", comment="CalculateOpDataFullyConnected, per channel")
        sh = em.array("shifts", shifts, "int")  # FullyConnectedPerChannel takes const int*
        fn, extra, mult, shift = "FullyConnectedPerChannel", f"{m}, {sh},\n        ", 0, 0
    else:
        mult, shift = quant.conv_multiplier(inp.scale[0], filt.scale[0], out.scale[0])
        fn, extra = "FullyConnected", ""
    bias, bias_shape = _bias(op, em)
    return (_params(inp, filt, out, act, mult, shift)
            + f"    tflite::reference_integer_ops::{fn}(\n        p, {extra}"
            f"{runtime_shape(em, 'in_dims', inp.shape)}, {em.ptr(op.inputs[0])},\n"
            f"        {runtime_shape(em, 'filter_dims', filt.shape)}, {em.ptr(op.inputs[1])},\n"
            f"        {bias_shape}, {bias},\n"
            f"        {runtime_shape(em, 'out_dims', out.shape)}, {em.ptr(op.outputs[0])});\n")


def _cmsis(op: Op, em: Emitter, inp: Tensor, filt: Tensor, out: Tensor, act: tuple[int, int], mult: int,
           shift: int) -> str:
    em.include(CMSIS_NN)
    if not 2 <= len(out.shape) <= 4:
        raise UnsupportedOpError(f"FULLY_CONNECTED op {op.index}: output rank {len(out.shape)}; Chirale's kernel "
                                 "takes 2 to 4; use the interpreter (`--engine interpreter`).")
    accum, depth = filt.shape[-1], out.shape[-1]
    batches = math.prod(out.shape[:-1])
    bias = em.ptr(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else "nullptr"
    dims = (f"    const cmsis_nn_dims input_dims = {{{batches}, 1, 1, {accum}}};\n"
            f"    const cmsis_nn_dims filter_dims = {{{accum}, 1, 1, {depth}}};\n"
            f"    const cmsis_nn_dims bias_dims = {{1, 1, 1, {depth}}};\n"
            f"    const cmsis_nn_dims output_dims = {{{batches}, 1, 1, {depth}}};\n"
            "    cmsis_nn_context ctx = {nullptr, 0};  // the *_get_buffer_size of both paths is 0\n")
    tail = (f"&input_dims, {em.ptr(op.inputs[0])}, &filter_dims, {em.ptr(op.inputs[1])},\n"
            f"            &bias_dims, {bias}, &output_dims, {em.ptr(op.outputs[0])})")
    if len(out.shape) > 2 and accum % 4 == 0:
        em.init_check(f"{{ const cmsis_nn_dims d = {{{batches}, 1, 1, {accum}}}; "
                      f"if (arm_convolve_1x1_s8_fast_get_buffer_size(&d) > 0) {em.fail()} }}")
        m = em.array("multipliers", [mult] * depth, "int32_t", comment="the per-tensor multiplier per channel")
        s = em.array("shifts", [shift] * depth, "int32_t")
        em.decl(f"const cmsis_nn_conv_params {em.symbol('conv')} = {{{-inp.zero_point[0]}, {out.zero_point[0]}, "
                f"{{1, 1}}, {{0, 0}}, {{1, 1}}, {{{act[0]}, {act[1]}}}}};")
        return (dims + f"    const cmsis_nn_per_channel_quant_params q = {{const_cast<int32_t*>({m}), "
                f"const_cast<int32_t*>({s})}};\n"
                f"    if (arm_convolve_1x1_s8_fast(&ctx, &{em.symbol('conv')}, &q, {tail} != ARM_CMSIS_NN_SUCCESS) "
                f"{em.fail()}\n")
    em.init_check(f"{{ const cmsis_nn_dims d = {{{accum}, 1, 1, {depth}}}; "
                  f"if (arm_fully_connected_s8_get_buffer_size(&d) > 0) {em.fail()} }}")
    em.decl(f"const cmsis_nn_fc_params {em.symbol('fc')} = {{{-inp.zero_point[0]}, 0, {out.zero_point[0]}, "
            f"{{{act[0]}, {act[1]}}}}};")
    return (dims + f"    const cmsis_nn_per_tensor_quant_params q = {{{mult}, {shift}}};\n"
            f"    if (arm_fully_connected_s8(&ctx, &{em.symbol('fc')}, &q, {tail} != ARM_CMSIS_NN_SUCCESS) "
            f"{em.fail()}\n")
