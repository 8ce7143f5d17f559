"""CONV_2D and DEPTHWISE_CONV_2D: int8 activations, int8 (per-channel) weights, int32 bias.

What each tree's kernel does, with its ``Prepare`` done here:

* ``cmsis-nn`` (Chirale_TensorFLowLite, ``kernels/cmsis_nn/conv.cpp`` and
  ``depthwise_conv.cpp``): ``arm_convolve_wrapper_s8`` /
  ``arm_depthwise_conv_wrapper_s8`` with the same ``cmsis_nn_*_params``,
  per-channel multipliers and shifts, dims, and a context buffer sized as the
  wrapper's ``*_get_buffer_size`` sizes it (the larger of the portable and
  the Cortex-M DSP branch; ``model_init()`` checks that the real size fits).
* ``reference`` (esp-tflite-micro, ``kernels/conv.cc`` and
  ``depthwise_conv.cc``): ``tflite::reference_integer_ops::ConvPerChannel`` /
  ``DepthwiseConvPerChannel`` with ``ConvParams`` / ``DepthwiseParams``
  filled as ``ConvParamsQuantized`` / ``DepthwiseConvParamsQuantized`` fill
  them.
* ``reference`` with ESP-NN (the ``#if ESP_NN`` variant of an esp-tflite-micro engine,
  ``kernels/esp_nn/conv.cc`` and ``depthwise_conv.cc``): ``esp_nn_conv_s8`` /
  ``esp_nn_depthwise_conv_s8`` per batch with the same ``data_dims_t``, ``conv_params_t`` /
  ``dw_conv_params_t`` and ``quant_data_t``, after ``esp_nn_set_*_scratch_buf`` with a planned scratch
  buffer (``model_init()`` checks ``esp_nn_get_*_scratch_size`` fits it); a dilated convolution falls
  back to the reference kernel, as there.

Multipliers and shifts come from ``PopulateConvolutionQuantizationParams``
(:func:`edgekd.engine.quant.per_channel_multipliers`), the clamp from
``CalculateActivationRangeQuantized`` and the padding from
``ComputePaddingHeightWidth``, all computed on the host.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from edgekd.engine import esp_nn, quant
from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op, Tensor
from edgekd.engine.ops import register
from edgekd.engine.plan import overlap_distance
from edgekd.errors import UnsupportedOpError

CMSIS_HEADER = "third_party/cmsis_nn/Include/arm_nnfunctions.h"
CONV_HEADER = "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h"
DEPTHWISE_HEADER = "tensorflow/lite/kernels/internal/reference/integer_ops/depthwise_conv.h"
# tflite::PaddingType as tflite::micro::RuntimePaddingType maps the schema's Padding.
_PADDING_TYPE = {"SAME": "tflite::PaddingType::kSame", "VALID": "tflite::PaddingType::kValid"}


@dataclasses.dataclass(frozen=True)
class ConvPrep:
    """What the kernels' ``Prepare`` computes for one convolution.

    Attributes:
        input: The input tensor (NHWC).
        filter: The weights (``OHWI`` for CONV_2D, ``1HWO`` for DEPTHWISE_CONV_2D).
        bias: The int32 bias, or None when the op has none.
        output: The output tensor.
        stride: ``(h, w)``.
        dilation: ``(h, w)``.
        padding: ``"SAME"`` or ``"VALID"``.
        pad: :func:`edgekd.engine.quant.padding_hw`'s result.
        act: ``(output_activation_min, output_activation_max)``.
        multipliers: Per output channel (``per_channel_output_multiplier``).
        shifts: Per output channel (``per_channel_output_shift``, left shift).
        depth_multiplier: The op's ``depthMultiplier`` (DEPTHWISE_CONV_2D; 1 for CONV_2D).
    """

    input: Tensor
    filter: Tensor
    bias: Optional[Tensor]
    output: Tensor
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: str
    pad: dict
    act: tuple[int, int]
    multipliers: list
    shifts: list
    depth_multiplier: int = 1


def _unsupported(op: Op, what: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"The compiled engine does not support {op.name} (op {op.index}) with {what}; use the interpreter "
        f"(`--engine interpreter`, the default).")


def _check_types(op: Op, em: Emitter) -> tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
    g = em.graph
    if len(op.inputs) < 2 or len(op.outputs) != 1:
        raise _unsupported(op, f"{len(op.inputs)} inputs and {len(op.outputs)} outputs")
    inp, filt, out = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    bias = g.tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if inp.dtype != "INT8" or out.dtype != "INT8":
        raise _unsupported(op, f"{inp.dtype} input and {out.dtype} output (only int8 activations)")
    if filt.dtype != "INT8":
        raise _unsupported(op, f"{filt.dtype} weights (only int8 weights)")
    if bias is not None and bias.dtype != "INT32":
        raise _unsupported(op, f"a {bias.dtype} bias (only int32)")
    if not (len(inp.shape) == len(filt.shape) == len(out.shape) == 4):
        raise _unsupported(op, f"tensors of rank {len(inp.shape)}/{len(filt.shape)}/{len(out.shape)} (only 4)")
    if not inp.scale or not out.scale or not filt.scale:
        raise _unsupported(op, "a tensor without quantization parameters")
    return inp, filt, bias, out


def prepare(op: Op, em: Emitter, *, depthwise: bool) -> ConvPrep:
    """Check the op and compute what TFLM's ``Prepare`` computes for it.

    Raises:
        UnsupportedOpError: Int16 activations, int4 weights, a hybrid or float model, or parameters TFLM's
            ``Prepare`` itself refuses.
    """
    inp, filt, bias, out = _check_types(op, em)
    o = op.options
    padding = quant.PADDINGS.get(int(o.get("padding", -1)))
    if padding is None:
        raise _unsupported(op, f"padding {o.get('padding')!r}")
    stride = (int(o.get("strideH", 1)), int(o.get("strideW", 1)))
    dilation = (int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1)))
    if min(*stride, *dilation) < 1:
        raise _unsupported(op, f"strides {stride} and dilations {dilation}")
    num_channels = filt.shape[3 if depthwise else 0]  # kDepthwiseConvQuantizedDimension / kConvQuantizedDimension
    wrong_axis = filt.per_channel and filt.shape[filt.quantized_dimension] != num_channels
    if len(filt.scale) not in (1, num_channels) or wrong_axis:
        raise _unsupported(op, f"{len(filt.scale)} weight scales for {num_channels} channels")
    mults, shifts = quant.per_channel_multipliers(inp.scale[0], filt.scale, out.scale[0], num_channels)
    act = quant.activation_range(int(o.get("fusedActivationFunction", 0)), out.dtype, out.scale[0],
                                 out.zero_point[0])
    pad = quant.padding_hw(*stride, *dilation, inp.shape[1], inp.shape[2], filt.shape[1], filt.shape[2], padding)
    dm = int(o.get("depthMultiplier", 1)) if depthwise else 1
    if depthwise and (filt.shape[0] != 1 or out.shape[3] != inp.shape[3] * dm):
        raise _unsupported(op, f"depth multiplier {dm} for {inp.shape[3]} -> {out.shape[3]} channels")
    return ConvPrep(inp, filt, bias, out, stride, dilation, padding, pad, act, mults, shifts, dm)


def _quant_arrays(p: ConvPrep, em: Emitter) -> tuple[str, str]:
    mult = em.array("multiplier", np.asarray(p.multipliers, np.int32), "int32_t",
                    comment="per_channel_output_multiplier (PopulateConvolutionQuantizationParams)")
    shift = em.array("shift", np.asarray(p.shifts, np.int32), "int32_t", comment="per_channel_output_shift")
    return mult, shift


def _data(p: ConvPrep, em: Emitter) -> tuple[str, str, str, str]:
    bias = em.ptr(p.bias.index) if p.bias is not None else "nullptr"
    return em.ptr(p.input.index), em.ptr(p.filter.index), bias, em.ptr(p.output.index)


def _dims(em: Emitter, rows: list[tuple[int, int, int, int]]) -> str:
    """``const cmsis_nn_dims g_op<k>_dims[4]``: input, filter, bias, output ({n, h, w, c})."""
    sym = em.symbol("dims")
    body = ", ".join("{%d, %d, %d, %d}" % r for r in rows)
    em.decl(f"// input, filter, bias, output dims {{n, h, w, c}}\nconst cmsis_nn_dims {sym}[4] = {{{body}}};")
    return sym


def _context(em: Emitter, nbytes: int, size_call: str) -> str:
    """The ``cmsis_nn_context`` the TFLM kernel passes: a scratch buffer when the size is > 0, else null."""
    if nbytes > 0:
        em.init_check(f"if ({size_call} > {nbytes}) {em.fail()}")
        return f"    cmsis_nn_context ctx = {{{em.scratch(nbytes)}, 0}};\n"
    em.init_check(f"if ({size_call} > 0) {em.fail()}")
    return "    cmsis_nn_context ctx = {nullptr, 0};\n"


def _is_1x1_fast(p: ConvPrep) -> bool:
    """``arm_convolve_wrapper_s8`` takes ``arm_convolve_1x1_s8_fast`` (no padding, unit strides and dilations)."""
    return (p.pad["width"] == 0 and p.pad["height"] == 0 and p.stride == (1, 1) and p.dilation == (1, 1)
            and p.filter.shape[1] == 1 and p.filter.shape[2] == 1)


def declare_overlap(p: ConvPrep, em: Emitter) -> None:
    """Let the output overlap the input (:func:`edgekd.engine.plan.overlap_distance`) where the kernel
    writes it in raster order, having read no input row above ``y * stride - pad_top`` for output row y.

    Read in the kernels' sources: the reference ``ConvPerChannel`` / ``DepthwiseConvPerChannel`` loop over
    (batch, out_y, out_x, channel) and store each element after reading its window; CMSIS-NN's
    ``arm_convolve_s8`` (non-MVE; ``arm_convolve_1_x_n_s8`` calls it) copies two pixels' windows into its
    im2col buffer before ``arm_nn_mat_mult_kernel_s8_s16`` writes those two pixels (writes lag reads);
    ``arm_depthwise_conv_3x3_s8``, ``arm_depthwise_conv_s8_opt`` (DSP: one pixel's window into the
    buffer, then its channels; portable: ``arm_depthwise_conv_s8``) and ``arm_depthwise_conv_s8`` (both
    paths) write pixel by pixel, the channels of a pixel while still reading that pixel's window (covered:
    the rule counts the whole current row as written). Not ``arm_convolve_1x1_s8_fast``: its
    ``arm_nn_mat_mult_nt_t_s8`` walks output-channel pairs outermost, each over every pixel, so it reads
    the whole input again after writing into every output pixel.
    """
    if em.kernels == "cmsis-nn" and em.op.name == "CONV_2D" and _is_1x1_fast(p):
        return
    if em.esp_nn == esp_nn.OPTIMIZED and p.dilation == (1, 1):
        return  # ESP-NN's ESP32-S3/P4 kernels (assembly, copies and tiles of the input) were not read for it
    em.overlap(overlap_distance(p.input.shape, p.output.shape, p.stride[0], p.pad["height"]))


def conv_buffer_size(p: ConvPrep) -> int:
    """``arm_convolve_wrapper_s8_get_buffer_size`` (non-MVE builds: portable and Cortex-M DSP alike)."""
    if _is_1x1_fast(p):
        return 0  # arm_convolve_1x1_s8_fast_get_buffer_size
    fh, fw = p.filter.shape[1], p.filter.shape[2]
    # arm_convolve_1_x_n_s8_get_buffer_size is arm_convolve_s8_get_buffer_size without MVE.
    return 2 * p.input.shape[3] * fw * fh * 2


def is_depthwise_3x3(p: ConvPrep) -> bool:
    """``arm_depthwise_conv_wrapper_s8`` takes ``arm_depthwise_conv_3x3_s8`` (non-MVE builds): channel
    multiplier 1, batch 1, no dilation, a 3x3 filter, padding <= 1."""
    return (p.depth_multiplier == 1 and p.input.shape[0] == 1 and p.dilation == (1, 1)
            and p.filter.shape[1] == 3 and p.filter.shape[2] == 3 and p.pad["height"] <= 1 and p.pad["width"] <= 1)


def depthwise_buffer_size(p: ConvPrep) -> int:
    """``arm_depthwise_conv_wrapper_s8_get_buffer_size``: the larger of the portable (0) and DSP branch."""
    if p.input.shape[3] == p.output.shape[3] and p.input.shape[0] == 1 and p.dilation == (1, 1):
        return p.input.shape[3] * p.filter.shape[2] * p.filter.shape[1] * 2  # ARM_MATH_DSP
    return 0


def _emit_cmsis(p: ConvPrep, em: Emitter, *, depthwise: bool) -> str:
    """``arm_convolve_wrapper_s8`` / ``arm_depthwise_conv_wrapper_s8`` with conv.cpp's / depthwise_conv.cpp's
    parameters, dims and context."""
    em.include(CMSIS_HEADER)
    mult, shift = _quant_arrays(p, em)
    n, ih, iw, ic = p.input.shape
    oc, fh, fw = p.output.shape[3], p.filter.shape[1], p.filter.shape[2]
    # conv.cpp: filter {output_depth, h, w, input_depth}; depthwise_conv.cpp: {filter dim 0 (1), h, w, output_depth}.
    filt = (p.filter.shape[0], fh, fw, oc) if depthwise else (oc, fh, fw, ic)
    dims = _dims(em, [(n, ih, iw, ic), filt, (1, 1, 1, oc), (n, p.output.shape[1], p.output.shape[2], oc)])
    params, qp = em.symbol("params"), em.symbol("quant")
    (sh, sw), (dh, dw) = p.stride, p.dilation
    kind, fn = ("dw_conv", "arm_depthwise_conv_wrapper_s8") if depthwise else ("conv", "arm_convolve_wrapper_s8")
    ch_mult = f"{p.depth_multiplier}, " if depthwise else ""
    em.decl(f"// cmsis_nn_{kind}_params as the kernel fills them: input/output offset, {'ch_mult, ' * depthwise}"
            f"stride, padding, dilation ({{w, h}}), activation\n"
            f"const cmsis_nn_{kind}_params {params} = {{{-p.input.zero_point[0]}, {p.output.zero_point[0]}, "
            f"{ch_mult}{{{sw}, {sh}}}, {{{p.pad['width']}, {p.pad['height']}}}, {{{dw}, {dh}}}, "
            f"{{{p.act[0]}, {p.act[1]}}}}};\n"
            f"const cmsis_nn_per_channel_quant_params {qp} = {{const_cast<int32_t*>({mult}), "
            f"const_cast<int32_t*>({shift})}};")
    if depthwise and is_depthwise_3x3(p):
        # arm_depthwise_conv_3x3_s8 ignores its context ((void)ctx), though the wrapper's
        # *_get_buffer_size asks for arm_depthwise_conv_s8_opt's buffer: plan none (TFLM allocates it).
        em.non_mve = True
        ctx = "    cmsis_nn_context ctx = {nullptr, 0};  // arm_depthwise_conv_3x3_s8 reads no buffer\n"
    else:
        size = depthwise_buffer_size(p) if depthwise else conv_buffer_size(p)
        ctx = _context(em, size, f"{fn}_get_buffer_size(&{params}, &{dims}[0], &{dims}[1], &{dims}[3])")
    x, w, b, y = _data(p, em)
    return (ctx + f"    if ({fn}(&ctx, &{params}, &{qp}, &{dims}[0], {x},\n"
                  f"        &{dims}[1], {w}, &{dims}[2], {b}, &{dims}[3], {y}) != ARM_CMSIS_NN_SUCCESS) {{\n"
                  f"      {em.fail()}\n    }}\n")


def _reference_params(p: ConvPrep, ctype: str) -> str:
    """``ConvParamsQuantized`` / ``DepthwiseConvParamsQuantized`` as statements (field by field)."""
    (sh, sw), (dh, dw) = p.stride, p.dilation
    fields = [("padding_type", _PADDING_TYPE[p.padding]), ("padding_values.width", p.pad["width"]),
              ("padding_values.height", p.pad["height"]), ("padding_values.width_offset", p.pad["width_offset"]),
              ("padding_values.height_offset", p.pad["height_offset"]), ("stride_width", sw), ("stride_height", sh),
              ("dilation_width_factor", dw), ("dilation_height_factor", dh)]
    if ctype == "DepthwiseParams":
        fields.append(("depth_multiplier", p.depth_multiplier))
    # The per-tensor output_multiplier/shift stay 0: the per-channel kernels do not read them.
    fields += [("input_offset", -p.input.zero_point[0]), ("weights_offset", -p.filter.zero_point[0]),
               ("output_offset", p.output.zero_point[0]), ("quantized_activation_min", p.act[0]),
               ("quantized_activation_max", p.act[1])]
    return (f"    tflite::{ctype} op_params = {{}};\n"
            + "".join(f"    op_params.{k} = {v};\n" for k, v in fields))


def _shape(em: Emitter, what: str, tensor: Optional[Tensor]) -> str:
    """A ``tflite::RuntimeShape`` expression built from const int32 dims (empty for a missing tensor)."""
    if tensor is None:
        return "tflite::RuntimeShape()"
    sym = em.array(f"{what}_shape", np.asarray(tensor.shape, np.int32), "int32_t")
    return f"tflite::RuntimeShape({len(tensor.shape)}, {sym})"


def _emit_reference(p: ConvPrep, em: Emitter, *, depthwise: bool) -> str:
    em.include(DEPTHWISE_HEADER if depthwise else CONV_HEADER)
    if not depthwise and p.input.shape[3] % p.filter.shape[3] != 0:
        raise _unsupported(em.op, f"{p.input.shape[3]} input channels for filters of depth {p.filter.shape[3]}")
    mult, shift = _quant_arrays(p, em)
    tensors = (("input", p.input), ("filter", p.filter), ("bias", p.bias), ("output", p.output))
    shapes = [_shape(em, what, t) for what, t in tensors]
    x, w, b, y = _data(p, em)
    fn = "DepthwiseConvPerChannel" if depthwise else "ConvPerChannel"
    return (_reference_params(p, "DepthwiseParams" if depthwise else "ConvParams")
            + f"    tflite::reference_integer_ops::{fn}(\n"
              f"        op_params, {mult}, {shift}, {shapes[0]}, {x},\n"
              f"        {shapes[1]}, {w}, {shapes[2]}, {b},\n"
              f"        {shapes[3]}, {y});\n")


def esp_nn_scratch(p: ConvPrep, variant: str, *, depthwise: bool) -> int:
    """ESP-NN's scratch of a convolution as planned: the ANSI C and generic functions ask for none
    (``esp_nn_get_*_scratch_size_ansi``/``_opt``), the ESP32-S3 ones :mod:`edgekd.engine.esp_nn`'s sizes."""
    if variant != esp_nn.OPTIMIZED:
        return 0
    hwc, (_, oh, ow, oc) = tuple(p.input.shape[1:]), p.output.shape
    geometry = dict(stride_hw=p.stride, pad_hw=(p.pad["height"], p.pad["width"]))
    if depthwise:
        return esp_nn.s3_depthwise_scratch(hwc, tuple(p.filter.shape[1:3]), p.depth_multiplier, (oh, ow), **geometry)
    return esp_nn.s3_conv_scratch(hwc, tuple(p.filter.shape[1:3]), (oh, ow, oc), **geometry)


def _emit_esp_nn(p: ConvPrep, em: Emitter, *, depthwise: bool) -> str:
    """``esp_nn_conv_s8`` / ``esp_nn_depthwise_conv_s8`` as esp-tflite-micro's ``kernels/esp_nn`` call them."""
    em.include(esp_nn.HEADER)
    mult, shift = _quant_arrays(p, em)
    n, ih, iw, ic = p.input.shape
    _, oh, ow, oc = p.output.shape
    fh, fw = p.filter.shape[1], p.filter.shape[2]
    (sh, sw), kind = p.stride, ("depthwise_conv" if depthwise else "conv")
    dims, params = em.symbol("dims"), em.symbol("params")
    ch_mult = f"{p.depth_multiplier}, " if depthwise else ""
    # data_dims_t {width, height, channels, extra}: input, filter ({w, h, filter dim 3, 0}), output.
    em.decl(f"// input, filter, output data_dims_t {{width, height, channels, extra}} as kernels/esp_nn/{kind}.cc\n"
            f"const data_dims_t {dims}[3] = {{{{{iw}, {ih}, {ic}, 1}}, {{{fw}, {fh}, {p.filter.shape[3]}, 0}}, "
            f"{{{ow}, {oh}, {oc}, 1}}}};\n"
            f"// in/out offset, {'ch_mult, ' * depthwise}stride, padding, dilation (unused: {{0, 0}}), activation\n"
            f"const {'dw_' * depthwise}conv_params_t {params} = {{{-p.input.zero_point[0]}, "
            f"{p.output.zero_point[0]}, {ch_mult}{{{sw}, {sh}}}, {{{p.pad['width']}, {p.pad['height']}}}, {{0, 0}}, "
            f"{{{p.act[0]}, {p.act[1]}}}}};")
    size = f"esp_nn_get_{kind}_scratch_size(&{dims}[0], &{dims}[1], &{dims}[2], &{params})"
    nbytes = esp_nn_scratch(p, em.esp_nn, depthwise=depthwise)
    em.init_check(f"if ({size} > {nbytes}) {em.fail()}")
    buf = em.scratch(nbytes) if nbytes else "nullptr"
    x, w, b, y = _data(p, em)
    in_size, out_size = ih * iw * ic, oh * ow * oc
    return (f"    const quant_data_t q = {{const_cast<int32_t*>({shift}), const_cast<int32_t*>({mult})}};\n"
            f"    esp_nn_set_{kind}_scratch_buf({buf});\n"
            f"    for (int b = 0; b < {n}; ++b) {{\n"
            f"      esp_nn_{kind}_s8(&{dims}[0], {x} + b * {in_size}, &{dims}[1], {w}, {b},\n"
            f"          &{dims}[2], {y} + b * {out_size}, &{params}, &q);\n    }}\n")


@register("CONV_2D")
def conv_2d(op: Op, em: Emitter) -> str:
    """CONV_2D: ``arm_convolve_wrapper_s8`` (cmsis-nn) or ``reference_integer_ops::ConvPerChannel``."""
    p = prepare(op, em, depthwise=False)
    declare_overlap(p, em)
    if em.esp_nn and p.dilation == (1, 1):
        return _emit_esp_nn(p, em, depthwise=False)
    if em.kernels != "cmsis-nn":
        return _emit_reference(p, em, depthwise=False)
    if p.filter.shape[3] != p.input.shape[3]:
        raise _unsupported(op, f"groups ({p.input.shape[3]} input channels, {p.filter.shape[3]} per filter: "
                               f"Chirale's CMSIS-NN kernel has no grouped convolution)")
    return _emit_cmsis(p, em, depthwise=False)


@register("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(op: Op, em: Emitter) -> str:
    """DEPTHWISE_CONV_2D: ``arm_depthwise_conv_wrapper_s8`` or ``reference_integer_ops::DepthwiseConvPerChannel``."""
    p = prepare(op, em, depthwise=True)
    declare_overlap(p, em)
    if em.esp_nn and p.dilation == (1, 1):
        return _emit_esp_nn(p, em, depthwise=True)
    return _emit_cmsis(p, em, depthwise=True) if em.kernels == "cmsis-nn" else _emit_reference(p, em, depthwise=True)
