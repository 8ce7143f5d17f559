"""Ops that move bytes without arithmetic: RESHAPE, SQUEEZE, EXPAND_DIMS, PAD, CONCATENATION.

PAD and CONCATENATION call the reference kernels both trees' ``pad`` and
``concatenation`` kernels call (``reference_ops::PadImageStyle``/``Pad``,
``reference_ops::Concatenation``), with the ``PadParams``/``ConcatenationParams``
their ``Prepare`` fills. :func:`runtime_shape` declares a ``RuntimeShape`` for
the other op modules.
"""

from __future__ import annotations

from typing import Sequence

from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op
from edgekd.engine.ops import register
from edgekd.errors import UnsupportedOpError

# RuntimeShape::kMaxSmallSize with TF_LITE_STATIC_MEMORY: 5 in Chirale_TensorFLowLite 2.0.0, 6 in esp-tflite-micro.
MAX_RANK = {"cmsis-nn": 5, "reference": 6}
# concatenation.cc: kMaxInputNum.
_MAX_CONCAT_INPUTS = 10
_CONCAT_TYPES = ("INT8", "INT16", "INT32", "INT64", "FLOAT32", "BOOL")
_PAD_MAX_RANK = 5  # reference_ops::PadKernelMaxDimensionCount()


def unsupported(op: Op, what: str) -> UnsupportedOpError:
    """The error for a variant of ``op`` the compiled engine does not run (the message names the fix)."""
    return UnsupportedOpError(f"The compiled engine does not support {op.name} (op {op.index}) with {what}; "
                              "use the interpreter (`--engine interpreter`, the default).")


def runtime_shape(name: str, shape: Sequence[int]) -> str:
    """Statements declaring ``const tflite::RuntimeShape <name>`` of ``shape`` (as ``GetTensorShape`` builds it)."""
    dims = ", ".join(str(int(d)) for d in shape) or "1"
    return (f"    const int32_t {name}_dims[{max(len(shape), 1)}] = {{{dims}}};\n"
            f"    const tflite::RuntimeShape {name}({len(shape)}, {name}_dims);\n")


@register("RESHAPE", "SQUEEZE", "EXPAND_DIMS", alias=True)
def reshape(op: Op, em: Emitter) -> str:
    """RESHAPE, SQUEEZE, EXPAND_DIMS: the planner gives the output the input's bytes; a copy only where it cannot
    (model output), as TFLM's kernels copy when the buffers differ."""
    src, dst = op.inputs[0], op.outputs[0]
    return f"    memcpy({em.ptr(dst)}, {em.ptr(src)}, {em.graph.tensor(dst).nbytes});\n"


def _pad_params(op: Op, em: Emitter) -> list[int]:
    """The checks of ``PadPrepare``; the paddings as ``[before0, after0, before1, …]``."""
    g = em.graph
    src, dst = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
    pads = g.tensor(op.inputs[1])
    if src.dtype != "INT8" or dst.dtype != "INT8":
        raise unsupported(op, f"{src.dtype} data (int8 only)")
    if not pads.is_const or pads.dtype != "INT32":
        raise unsupported(op, "paddings that are not a constant int32 tensor")
    if len(src.shape) > _PAD_MAX_RANK:
        raise unsupported(op, f"a rank-{len(src.shape)} input (at most {_PAD_MAX_RANK})")
    flat = [int(v) for v in pads.data.reshape(-1)]
    if len(flat) != 2 * len(dst.shape) or any(
            dst.shape[i] != src.shape[i] + flat[2 * i] + flat[2 * i + 1] for i in range(len(dst.shape))):
        raise unsupported(op, f"paddings {flat} that do not give the output shape {list(dst.shape)}")
    return flat


@register("PAD", "PADV2")
def pad(op: Op, em: Emitter) -> str:
    """PAD/PADV2 int8: ``PadImageStyle`` when only H and W of a 4-D tensor are padded, else ``Pad``; the pad
    value is the output zero point (or PADV2's constant)."""
    g = em.graph
    flat = _pad_params(op, em)
    src, dst = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = g.tensor(op.inputs[2])
        if not value.is_const or value.size != 1 or value.zero_point[:1] != dst.zero_point[:1] or \
                value.scale[:1] != dst.scale[:1]:
            raise unsupported(op, "a constant value that is not a scalar constant of the output's quantization")
        pad_value = int(value.data.reshape(-1)[0])
    else:
        pad_value = int(dst.zero_point[0]) if dst.zero_point else 0
        if not -128 <= pad_value <= 127:
            raise unsupported(op, f"output zero point {pad_value}")
    image_style = len(flat) == 8 and flat[0] == flat[1] == flat[6] == flat[7] == 0
    em.include("tensorflow/lite/kernels/internal/reference/pad.h")
    rank = len(src.shape)
    lines = ["    tflite::PadParams params = {};",
             f"    params.resizing_category = tflite::ResizingCategory::"
             f"{'kImageStyle' if image_style else 'kGenericResize'};",
             f"    params.left_padding_count = {rank};", f"    params.right_padding_count = {rank};"]
    for i in range(rank):
        lines.append(f"    params.left_padding[{i}] = {flat[2 * i]};  params.right_padding[{i}] = {flat[2 * i + 1]};")
    fn = "PadImageStyle" if image_style else "Pad"
    return ("\n".join(lines) + "\n" + runtime_shape("in_shape", src.shape) + runtime_shape("out_shape", dst.shape)
            + f"    int8_t pad_value = {pad_value};\n"
            f"    tflite::reference_ops::{fn}(params, in_shape, {em.ptr(op.inputs[0])}, &pad_value, out_shape, "
            f"{em.ptr(op.outputs[0])});\n")


@register("CONCATENATION")
def concatenation(op: Op, em: Emitter) -> str:
    """CONCATENATION: ``reference_ops::Concatenation``, a copy (TFLM does not rescale int8 inputs: the converter
    gives them the output's quantization, inserting QUANTIZE ops where they differ)."""
    g = em.graph
    out = g.tensor(op.outputs[0])
    ins = [g.tensor(t) for t in op.inputs]
    if int(op.options.get("fusedActivationFunction", 0)) != 0:
        raise unsupported(op, "a fused activation")
    if any(t.dtype != out.dtype for t in ins) or out.dtype not in _CONCAT_TYPES:
        raise unsupported(op, f"{out.dtype} data")
    if len(ins) > _MAX_CONCAT_INPUTS:
        raise unsupported(op, f"{len(ins)} inputs (at most {_MAX_CONCAT_INPUTS})")
    if any(len(t.shape) > MAX_RANK[em.kernels] for t in ins):
        raise unsupported(op, f"inputs of more than {MAX_RANK[em.kernels]} dimensions")
    axis = int(op.options.get("axis", 0))
    axis = axis if axis >= 0 else len(out.shape) + axis  # CalculatePositiveAxis
    em.include("tensorflow/lite/kernels/internal/reference/concatenation.h")
    body = "".join(runtime_shape(f"in{i}_shape", t.shape) for i, t in enumerate(ins))
    body += runtime_shape("out_shape", out.shape)
    shapes = ", ".join(f"&in{i}_shape" for i in range(len(ins)))
    data = ", ".join(em.ptr(t) for t in op.inputs)
    return (body + "    tflite::ConcatenationParams params = {};\n"
            f"    params.axis = {axis};\n    params.inputs_count = {len(ins)};\n"
            f"    const tflite::RuntimeShape* const shapes[{len(ins)}] = {{{shapes}}};\n"
            f"    const {out.ctype}* const data[{len(ins)}] = {{{data}}};\n"
            f"    tflite::reference_ops::Concatenation(params, shapes, data, out_shape, {em.ptr(op.outputs[0])});\n")
