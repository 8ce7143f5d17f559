"""Profile a TFLite flatbuffer operator by operator (batch as stored, normally 1)."""

from __future__ import annotations

import math
import os
from typing import Any

from edgekd.flatbuffer import TFLiteModel, read_tflite
from edgekd.profile._types import LayerProfile, ModelProfile, live_bytes, peak_live_bytes

# ops whose weight (input 1) and bias (input 2) are parameters
_LINEAR_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"}
# element-wise ops: one op per output element per extra operand
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW"}
# per-element transcendental activations
_UNARY = {"LOGISTIC", "TANH", "SOFTMAX", "LOG_SOFTMAX", "HARD_SWISH", "ELU", "EXP", "LOG", "SQRT", "RSQRT",
          "LEAKY_RELU", "PRELU", "GELU", "ABS", "NEG", "SQUARE"}
_REDUCE = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}
_PARAM_TYPES = {"INT8", "UINT8", "INT16", "FLOAT32", "FLOAT16", "INT4"}


def _n(shape: tuple[int, ...]) -> int:
    return int(math.prod(max(d, 1) for d in shape)) if shape else 1


def _operand(ins: list, k: int, min_rank: int = 0) -> Any:
    """Shape of input ``k`` when it is there with at least ``min_rank`` dims, else None (omitted or missing)."""
    if k >= len(ins) or ins[k] is None or len(ins[k].shape) < min_rank:
        return None
    return ins[k].shape


def _op_macs(m: TFLiteModel, op: Any) -> int:
    """MACs (or elementary operations) of one op; 0 when an operand it needs is omitted or malformed.

    A model file is untrusted: an op may lack the inputs its kernel needs (an
    interpreter refuses it when it prepares the op), so nothing here may assume
    the operands exist.
    """
    t = m.tensors
    name = op.op_name
    outs = [t[i] for i in op.outputs if i >= 0]
    ins = [t[i] if i >= 0 else None for i in op.inputs]
    out_n = _n(outs[0].shape) if outs else 0
    if name == "CONV_2D":
        f = _operand(ins, 1, 4)  # (cout, kh, kw, cin/groups)
        return out_n * _n(f[1:]) if f is not None else 0
    if name == "CONV_3D":
        f = _operand(ins, 1, 2)  # (kd, kh, kw, cin, cout)
        return out_n * _n(f[:-1]) if f is not None else 0
    if name == "DEPTHWISE_CONV_2D":
        f = _operand(ins, 1, 3)  # (1, kh, kw, cout)
        return out_n * _n(f[1:3]) if f is not None else 0
    if name == "FULLY_CONNECTED":
        w = _operand(ins, 1, 1)  # (units, in)
        return out_n * max(int(w[-1]), 0) if w is not None else 0
    if name == "BATCH_MATMUL":
        a = _operand(ins, 0, 2)
        adj_x = bool(op.options.get("adjX", False))
        return out_n * max(int(a[-2] if adj_x else a[-1]), 0) if a is not None else 0
    if name == "TRANSPOSE_CONV":
        f, x = _operand(ins, 1, 3), _operand(ins, 2)  # f: (cout, kh, kw, cin); input 2 is the data
        return _n(x) * _n(f[:3]) if f is not None and x is not None else 0
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        kh = max(int(op.options.get("filterHeight", 1)), 0)
        kw = max(int(op.options.get("filterWidth", 1)), 0)
        return out_n * kh * kw
    if name in _REDUCE:
        x = _operand(ins, 0)
        return _n(x) if x is not None else 0
    if name in _ELEMENTWISE:
        return out_n * max(sum(1 for x in ins if x is not None) - 1, 1)
    if name == "ADD_N":
        return out_n * max(len(ins) - 1, 1)
    if name in _UNARY:
        return out_n
    if name == "RESIZE_BILINEAR":
        return 4 * out_n
    return 0


def _op_params(m: TFLiteModel, op: Any, seen: set[int]) -> tuple[int, int, int]:
    """(params, stored bytes, float32 bytes) of an op's constant operands not counted by an earlier op."""
    params = stored = 0
    for pos, i in enumerate(op.inputs):
        if i < 0 or i in seen:
            continue
        tensor = m.tensors[i]
        if not tensor.is_constant:
            continue
        wpos = (1, 3) if op.op_name == "TRANSPOSE_CONV" else (1, 2)
        is_param = op.op_name in _LINEAR_OPS and pos in wpos
        is_param = is_param or (op.op_name not in _LINEAR_OPS and tensor.dtype in _PARAM_TYPES)
        if is_param:
            seen.add(i)
            params += _n(tensor.shape)
            stored += tensor.data_bytes
    return params, stored, 4 * params


def profile_tflite(model: bytes | bytearray | str | os.PathLike | TFLiteModel) -> ModelProfile:
    """Profile a ``.tflite`` model (or its parsed flatbuffer); see :func:`edgekd.profile.profile`."""
    m = model if isinstance(model, TFLiteModel) else read_tflite(model)
    t = m.tensors
    rows: list[LayerProfile] = []
    steps = []
    sizes8: dict[int, int] = {}
    sizes32: dict[int, int] = {}
    for i, tensor in enumerate(t):
        if not tensor.is_constant:
            dt = tensor.numpy_dtype  # a dynamic (-1) batch counts as 1
            sizes8[i] = _n(tensor.shape) * (dt.itemsize if dt is not None else 1)
            sizes32[i] = 4 * _n(tensor.shape)
    seen: set[int] = set()
    params_total = w8_total = 0
    for op in m.operators:
        macs = _op_macs(m, op)
        params, stored, f32 = _op_params(m, op, seen)  # a constant shared by two ops counts once
        outs = [i for i in op.outputs if i >= 0]
        out_t = t[outs[0]] if outs else None
        params_total += params
        w8_total += stored
        rows.append(LayerProfile(
            name=out_t.name.split(";")[0] if out_t is not None and out_t.name else f"op{op.index}",
            op_type=op.op_name if op.custom_code is None else f"CUSTOM:{op.custom_code}",
            output_shape=tuple(out_t.shape) if out_t is not None else (),
            params=params, macs=int(macs), weight_bytes_f32=f32, weight_bytes_int8=stored,
            activation_bytes=sum(sizes8.get(i, 0) for i in outs),
            activation_bytes_f32=sum(sizes32.get(i, 0) for i in outs),
        ))
        steps.append((tuple(i for i in op.inputs if i >= 0 and not t[i].is_constant), tuple(outs)))
    peak8, at8 = peak_live_bytes(steps, sizes8, m.inputs, m.outputs)
    live8 = live_bytes(steps, sizes8, m.inputs, m.outputs)
    peak32, _ = peak_live_bytes(steps, sizes32, m.inputs, m.outputs)
    name = os.path.basename(m.source) if m.source != "<bytes>" else "model.tflite"
    return ModelProfile(
        name=name,
        source="tflite",
        input_shapes=tuple(tuple(x.shape) for x in m.input_tensors),
        layers=tuple(rows),
        params=int(params_total),
        inference_params=int(params_total),
        macs=sum(r.macs for r in rows),
        weight_bytes_f32=4 * int(params_total),
        weight_bytes_int8=int(w8_total),
        flash_int8_bytes=int(m.size_bytes),
        peak_ram_bytes=int(peak8),
        peak_ram_f32_bytes=int(peak32),
        peak_ram_at=rows[at8].name if 0 <= at8 < len(rows) else "",
        unsupported=(),
        live_bytes=tuple(live8),
    )
