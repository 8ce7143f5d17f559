"""AVERAGE_POOL_2D, MAX_POOL_2D and MEAN (int8).

Pools: Chirale_TensorFLowLite's ``kernels/cmsis_nn/pooling.cpp`` calls ``arm_avgpool_s8`` (with a
scratch buffer of ``arm_avgpool_s8_get_buffer_size``) and ``arm_max_pool_s8``; esp-tflite-micro's
``kernels/pooling.cc`` calls ``reference_integer_ops::AveragePool`` / ``MaxPool``. Padding and the
activation clamp are what ``PoolingPrepare`` computes.

MEAN: both trees run their reference ``kernels/reduce.cc``. Chirale calls ``reference_ops::Mean`` when the
input and output share scale and zero point, else ``QuantizedMeanOrSumExtraArgs`` (float rescaling);
esp-tflite-micro always calls ``QuantizedMeanOrSumExtraArgs`` (integer rescaling with the multiplier
``PrepareMeanOrSumHelper`` computes). The accumulator and index arrays it takes from the arena are one
planned scratch buffer here.
"""

from __future__ import annotations

import math

from edgekd.engine import esp_nn, quant
from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op
from edgekd.engine.ops import register
from edgekd.engine.ops.fully_connected import CMSIS_NN, require_int8, runtime_shape
from edgekd.engine.plan import overlap_distance
from edgekd.errors import UnsupportedOpError

_REFERENCE_POOL = "tensorflow/lite/kernels/internal/reference/integer_ops/pooling.h"
_REFERENCE_REDUCE = "tensorflow/lite/kernels/internal/reference/reduce.h"
# Chirale's EvalMeanHelper keeps these on the stack: int temp_index[5], resolved_axis[2].
_CHIRALE_MAX_DIMS, _CHIRALE_MAX_AXES = 5, 2


@register("AVERAGE_POOL_2D", "MAX_POOL_2D")
def pool_2d(op: Op, em: Emitter) -> str:
    """AVERAGE_POOL_2D / MAX_POOL_2D on int8 NHWC."""
    g = em.graph
    require_int8(op, em, op.inputs[0], op.outputs[0])
    inp, out = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
    if len(inp.shape) != 4 or len(out.shape) != 4:
        raise UnsupportedOpError(f"{op.name} op {op.index}: the compiled engine pools 4-D (NHWC) tensors only; "
                                 "use the interpreter (`--engine interpreter`).")
    o = op.options
    sh, sw, fh, fw = o["strideH"], o["strideW"], o["filterHeight"], o["filterWidth"]
    pad = quant.padding_hw(sh, sw, 1, 1, inp.shape[1], inp.shape[2], fh, fw, quant.PADDINGS.get(o["padding"], ""))
    act = quant.activation_range(o.get("fusedActivationFunction", 0), "INT8", out.scale[0], out.zero_point[0])
    src, dst = em.ptr(op.inputs[0]), em.ptr(op.outputs[0])
    # Raster order (read in the sources): the reference AveragePool/MaxPool loop over (batch, out_y, out_x,
    # channel); arm_avgpool_s8 sums one pixel's window (DSP: into its scratch) and writes that pixel;
    # arm_max_pool_s8 keeps the running max in the output pixel while reading its window, and clamps the
    # output in place at the end. The output may start below the input and overlap it.
    if em.esp_nn != esp_nn.OPTIMIZED:  # ESP-NN's ESP32-S3/P4 pools were not read for it (its C ones were)
        em.overlap(overlap_distance(inp.shape, out.shape, sh, pad["height"]))
    if em.kernels == "reference":
        if abs(float(inp.scale[0]) - float(out.scale[0])) > 1e-6 or inp.zero_point[0] != out.zero_point[0]:
            raise UnsupportedOpError(f"{op.name} op {op.index}: input and output quantization differ, which "
                                     "esp-tflite-micro's PoolingPrepare refuses.")
        if em.esp_nn:
            return _esp_nn_pool(op, em, (sh, sw, fh, fw), pad, act)
        em.include(_REFERENCE_POOL)
        fn = "AveragePool" if op.name == "AVERAGE_POOL_2D" else "MaxPool"
        cast = "(void)" if fn == "AveragePool" else ""  # AveragePool's bool is ignored, as in TFLM
        return ("    tflite::PoolParams p = {};\n"
                f"    p.stride_height = {sh};\n    p.stride_width = {sw};\n"
                f"    p.filter_height = {fh};\n    p.filter_width = {fw};\n"
                f"    p.padding_values.height = {pad['height']};\n    p.padding_values.width = {pad['width']};\n"
                f"    p.quantized_activation_min = {act[0]};\n    p.quantized_activation_max = {act[1]};\n"
                f"    {cast}tflite::reference_integer_ops::{fn}(p, {runtime_shape(em, 'in_dims', inp.shape)}, {src},\n"
                f"        {runtime_shape(em, 'out_dims', out.shape)}, {dst});\n")
    em.include(CMSIS_NN)
    depth = out.shape[3]
    em.decl(f"const cmsis_nn_pool_params {em.symbol('pool')} = {{{{{sw}, {sh}}}, {{{pad['width']}, "
            f"{pad['height']}}}, {{{act[0]}, {act[1]}}}}};")
    body = (f"    const cmsis_nn_dims input_dims = {{1, {inp.shape[1]}, {inp.shape[2]}, {depth}}};\n"
            f"    const cmsis_nn_dims filter_dims = {{1, {fh}, {fw}, 1}};\n"
            f"    const cmsis_nn_dims output_dims = {{1, {out.shape[1]}, {out.shape[2]}, {depth}}};\n")
    if op.name == "MAX_POOL_2D":
        return (body + "    const cmsis_nn_context ctx = {nullptr, 0};\n"
                f"    if (arm_max_pool_s8(&ctx, &{em.symbol('pool')}, &input_dims, {src}, &filter_dims, "
                f"&output_dims, {dst}) != ARM_CMSIS_NN_SUCCESS) {em.fail()}\n")
    # arm_avgpool_s8_get_buffer_size: channels * 4 with the DSP extension, 0 without: plan the larger.
    nbytes = depth * 4
    em.init_check(f"if (arm_avgpool_s8_get_buffer_size({out.shape[2]}, {depth}) > {nbytes}) {em.fail()}")
    return (body + f"    const cmsis_nn_context ctx = {{{em.scratch(nbytes)}, 0}};\n"
            f"    if (arm_avgpool_s8(&ctx, &{em.symbol('pool')}, &input_dims, {src}, &filter_dims, "
            f"&output_dims, {dst}) != ARM_CMSIS_NN_SUCCESS) {em.fail()}\n")


def _esp_nn_pool(op: Op, em: Emitter, window: tuple[int, int, int, int], pad: dict, act: tuple[int, int]) -> str:
    """``esp_nn_avg_pool_s8`` / ``esp_nn_max_pool_s8`` per batch, or their ``_ansi`` versions when the channels
    are not a multiple of 4, as esp-tflite-micro's ``kernels/esp_nn/pooling.cc`` calls them."""
    inp, out = em.graph.tensor(op.inputs[0]), em.graph.tensor(op.outputs[0])
    em.include(esp_nn.HEADER)
    sh, sw, fh, fw = window
    n, ih, iw, depth = inp.shape
    oh, ow = out.shape[1], out.shape[2]
    fn = "esp_nn_avg_pool_s8" if op.name == "AVERAGE_POOL_2D" else "esp_nn_max_pool_s8"
    fn += "" if depth % 4 == 0 else "_ansi"  # "S3 version only supports channels multiple of 4"
    return (f"    for (int b = 0; b < {n}; ++b) {{\n"
            f"      {fn}({em.ptr(op.inputs[0])} + b * {ih * iw * depth}, {iw}, {ih},\n"
            f"          {em.ptr(op.outputs[0])} + b * {oh * ow * depth}, {ow}, {oh}, {sw}, {sh}, {fw}, {fh},\n"
            f"          {pad['width']}, {pad['height']}, {act[0]}, {act[1]}, {depth});\n    }}\n")


@register("MEAN")
def mean(op: Op, em: Emitter) -> str:
    """MEAN on int8 over a constant axis tensor (``keepDims`` either way)."""
    g = em.graph
    require_int8(op, em, op.inputs[0], op.outputs[0])
    inp, axis, out = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    if not axis.is_const or axis.dtype != "INT32":
        raise UnsupportedOpError(f"MEAN op {op.index}: the compiled engine needs a constant int32 axis tensor; "
                                 "use the interpreter (`--engine interpreter`).")
    axes = [int(a) for a in axis.data.reshape(-1)]
    if em.kernels == "cmsis-nn" and (len(inp.shape) > _CHIRALE_MAX_DIMS or len(axes) > _CHIRALE_MAX_AXES):
        raise UnsupportedOpError(f"MEAN op {op.index}: Chirale's kernel reduces at most {_CHIRALE_MAX_AXES} axes "
                                 f"of a tensor of rank <= {_CHIRALE_MAX_DIMS}; use the interpreter "
                                 "(`--engine interpreter`).")
    mult, shift = quant.quantize_multiplier(float(inp.scale[0]) / float(out.scale[0]))
    n_out = math.prod(out.shape)
    n_iter = _CHIRALE_MAX_DIMS if em.kernels == "cmsis-nn" else len(inp.shape)
    n_axis = _CHIRALE_MAX_AXES if em.kernels == "cmsis-nn" else len(axes)
    scratch = em.scratch(4 * (n_out + n_iter + max(n_axis, 1)))
    em.include(_REFERENCE_REDUCE)
    in_dims = em.array("in_dims", list(inp.shape), "int")
    out_dims = em.array("out_dims", list(out.shape) or [0], "int")
    axis_sym = em.array("axis", axes or [0], "int")
    keep = "true" if op.options.get("keepDims") else "false"
    dst = em.ptr(op.outputs[0])
    tail = f"{out_dims}, {len(out.shape)}, {axis_sym}, {len(axes)}, {keep}, iter, resolved, sum"
    body = (f"    int32_t* sum = reinterpret_cast<int32_t*>({scratch});\n"
            f"    int* iter = reinterpret_cast<int*>({scratch} + {4 * n_out});\n"
            f"    int* resolved = reinterpret_cast<int*>({scratch} + {4 * (n_out + n_iter)});\n")
    same = inp.zero_point[0] == out.zero_point[0] and quant.f32(inp.scale[0]) == quant.f32(out.scale[0])
    if em.kernels == "cmsis-nn" and same:
        call = (f"tflite::reference_ops::Mean<int8_t, int32_t>(\n        {em.ptr(op.inputs[0])}, {in_dims}, "
                f"{len(inp.shape)}, {dst},\n        {tail})")
    else:
        call = (f"tflite::reference_ops::QuantizedMeanOrSumExtraArgs<int8_t, int32_t>(\n"
                f"        {em.ptr(op.inputs[0])}, {inp.zero_point[0]}, {_float(inp.scale[0])}, {in_dims}, "
                f"{len(inp.shape)}, {dst},\n        {_float(out.scale[0])}, {mult}, {shift}, {out.zero_point[0]},\n"
                f"        {tail}, /*compute_sum=*/false)")
    return body + f"    if (!{call}) {em.fail()}\n"


def _float(value: float) -> str:
    """A float32 C literal that parses back to exactly ``value`` (as float32)."""
    return repr(quant.f32(value)) + "f"
