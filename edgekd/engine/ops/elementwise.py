"""Element-wise binary ops: ADD and MUL (int8).

Both trees compute the same ``Prepare`` parameters (``add_common``/``mul_common``:
``left_shift`` 20, input and output multipliers, activation range), precomputed
here. For inputs of the same (extended) shape Chirale_TensorFLowLite's CMSIS-NN
kernels call ``arm_elementwise_add_s8``/``arm_elementwise_mul_s8`` and
esp-tflite-micro's reference kernels ``reference_integer_ops::Add``/``Mul``;
when ``ProcessBroadcastShapes`` finds a broadcast, both call
``reference_integer_ops::BroadcastAdd4DSlow``/``BroadcastMul4DSlow``.

Same-shape ADD and MUL are registered ``in_place``: every kernel reads element
``i`` of both inputs before it writes element ``i`` (CMSIS-NN's DSP path reads
four of each before writing those four), so the output may overwrite its first
input when that input has the output's size (a broadcast first input does not).
"""

from __future__ import annotations

from typing import Callable, Sequence

from edgekd.engine import esp_nn, quant
from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op, Tensor
from edgekd.engine.ops import register
from edgekd.engine.ops.shape import runtime_shape, unsupported

LEFT_SHIFT_INT8 = 20  # add_common: data->left_shift for int8 outputs
_BROADCAST_MAX_RANK = 4  # BroadcastAdd4DSlow / BroadcastMul4DSlow (NdArrayDesc<4> in Chirale_TensorFLowLite)
_CMSIS_NN = "third_party/cmsis_nn/Include/arm_nnfunctions.h"


def needs_broadcast(shape1: Sequence[int], shape2: Sequence[int]) -> bool:
    """``reference_ops::ProcessBroadcastShapes``' result: whether the shapes, left-padded with 1s, differ."""
    n = max(len(shape1), len(shape2))
    return (1,) * (n - len(shape1)) + tuple(shape1) != (1,) * (n - len(shape2)) + tuple(shape2)


def add_params(s1: float, s2: float, s_out: float) -> dict[str, int]:
    """``CalculateOpDataAdd``'s int8 multipliers and shifts (double arithmetic as in add_common)."""
    twice_max = 2 * float(max(s1, s2))  # std::max of the float scales, then double
    m1, sh1 = quant.quantize_multiplier_smaller_than_one_exp(float(s1) / twice_max)
    m2, sh2 = quant.quantize_multiplier_smaller_than_one_exp(float(s2) / twice_max)
    mo, sho = quant.quantize_multiplier_smaller_than_one_exp(twice_max / ((1 << LEFT_SHIFT_INT8) * float(s_out)))
    return {"left_shift": LEFT_SHIFT_INT8, "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2,
            "input2_shift": sh2, "output_multiplier": mo, "output_shift": sho}


def mul_params(s1: float, s2: float, s_out: float) -> dict[str, int]:
    """``CalculateOpDataMul``'s int8 output multiplier: ``QuantizeMultiplier(double(s1) * double(s2) / double(so))``."""
    mo, sho = quant.quantize_multiplier(float(s1) * float(s2) / float(s_out))
    return {"output_multiplier": mo, "output_shift": sho}


def _operands(op: Op, em: Emitter) -> tuple[Tensor, Tensor, Tensor]:
    g = em.graph
    a, b, out = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    if not a.dtype == b.dtype == out.dtype == "INT8":
        raise unsupported(op, f"{a.dtype}/{b.dtype} -> {out.dtype} tensors (int8 only)")
    if any(t.per_channel or not t.scale for t in (a, b, out)):
        raise unsupported(op, "tensors that are not quantized per tensor")
    if needs_broadcast(a.shape, b.shape) and max(len(a.shape), len(b.shape), len(out.shape)) > _BROADCAST_MAX_RANK:
        raise unsupported(op, f"a broadcast of more than {_BROADCAST_MAX_RANK} dimensions")
    return a, b, out


def _prepare(op: Op, em: Emitter, params: dict[str, int]) -> str:
    """The statements that fill ``tflite::ArithmeticParams p`` as the kernel's Eval does."""
    a, b, out = _operands(op, em)
    act = quant.activation_range(int(op.options.get("fusedActivationFunction", 0)), "INT8", out.scale[0],
                                 out.zero_point[0])
    fields = {**params, "input1_offset": -int(a.zero_point[0]), "input2_offset": -int(b.zero_point[0]),
              "output_offset": int(out.zero_point[0]), "quantized_activation_min": act[0],
              "quantized_activation_max": act[1]}
    return "    tflite::ArithmeticParams p = {};\n" + "".join(f"    p.{k} = {v};\n" for k, v in fields.items())


def _reference(op: Op, em: Emitter, fn: str, broadcast: bool) -> str:
    """The call of ``reference_integer_ops::<fn>`` (after ``ProcessBroadcastShapes`` for a broadcast, as Eval)."""
    a, b, out = (em.graph.tensor(t) for t in (*op.inputs[:2], op.outputs[0]))
    body = runtime_shape("shape1", a.shape) + runtime_shape("shape2", b.shape) + runtime_shape("out_shape", out.shape)
    if broadcast:
        em.include("tensorflow/lite/kernels/internal/reference/process_broadcast_shapes.h")
        body += "    tflite::reference_ops::ProcessBroadcastShapes(shape1, shape2, &p);\n"
    return body + (f"    tflite::reference_integer_ops::{fn}(p, shape1, {em.ptr(op.inputs[0])}, shape2, "
                   f"{em.ptr(op.inputs[1])}, out_shape, {em.ptr(op.outputs[0])});\n")


# op -> (kernel file stem, same-shape reference function, broadcast function, the CMSIS-NN arguments between the
# inputs and the output: arm_elementwise_add_s8 takes multipliers, shifts and left_shift, arm_elementwise_mul_s8 not).
_KERNELS = {
    "ADD": ("add", "Add", "BroadcastAdd4DSlow", "p.input1_offset, p.input1_multiplier, p.input1_shift, "
            "p.input2_offset, p.input2_multiplier, p.input2_shift, p.left_shift"),
    "MUL": ("mul", "Mul", "BroadcastMul4DSlow", "p.input1_offset, p.input2_offset"),
}


_ESP_NN_ARGS = {
    "ADD": "p.input1_offset, p.input2_offset, p.input1_multiplier, p.input2_multiplier, p.input1_shift, "
           "p.input2_shift, p.left_shift",
    "MUL": "p.input1_offset, p.input2_offset",
}


def _binary(op: Op, em: Emitter, params_fn: Callable[[float, float, float], dict[str, int]]) -> str:
    a, b, out = _operands(op, em)
    try:
        params = params_fn(a.scale[0], b.scale[0], out.scale[0])
    except ValueError as e:
        raise unsupported(op, f"scales the int8 kernel cannot represent ({e})") from None
    stem, same_shape, broadcast, cmsis_args = _KERNELS[op.name]
    body = _prepare(op, em, params)
    em.include(f"tensorflow/lite/kernels/internal/reference/integer_ops/{stem}.h")
    if needs_broadcast(a.shape, b.shape):
        return body + _reference(op, em, broadcast, True)
    if em.esp_nn:
        # kernels/esp_nn/add.cc and mul.cc: esp_nn_add_elementwise_s8 takes the offsets, multipliers, shifts and
        # left_shift in that order; esp_nn_mul_elementwise_s8 the offsets only.
        em.include(esp_nn.HEADER)
        args = _ESP_NN_ARGS[op.name]
        return body + (f"    esp_nn_{stem}_elementwise_s8({em.ptr(op.inputs[0])}, {em.ptr(op.inputs[1])}, {args}, "
                       f"{em.ptr(op.outputs[0])}, p.output_offset, p.output_multiplier, p.output_shift, "
                       f"p.quantized_activation_min, p.quantized_activation_max, {out.size});\n")
    if em.kernels != "cmsis-nn":
        return body + _reference(op, em, same_shape, False)
    em.include(_CMSIS_NN)
    return body + (f"    if (arm_elementwise_{stem}_s8({em.ptr(op.inputs[0])}, {em.ptr(op.inputs[1])}, {cmsis_args}, "
                   f"{em.ptr(op.outputs[0])}, p.output_offset, p.output_multiplier, p.output_shift, "
                   f"p.quantized_activation_min, p.quantized_activation_max, {out.size}) != ARM_CMSIS_NN_SUCCESS) "
                   f"{em.fail()}\n")


@register("ADD", in_place=True)
def add(op: Op, em: Emitter) -> str:
    """ADD int8: ``arm_elementwise_add_s8`` (cmsis-nn, same shapes), ``reference_integer_ops::Add``
    (reference, same shapes), else ``BroadcastAdd4DSlow``."""
    return _binary(op, em, add_params)


@register("MUL", in_place=True)
def mul(op: Op, em: Emitter) -> str:
    """MUL int8: ``arm_elementwise_mul_s8`` (cmsis-nn, same shapes), ``reference_integer_ops::Mul``
    (reference, same shapes), else ``BroadcastMul4DSlow``."""
    return _binary(op, em, mul_params)
