"""Latency: measured on the host with LiteRT, estimated on a board.

The board estimate is a per-op roofline-free cost model::

    cycles(op) = MACs(op) × cycles_per_mac[kernels][class(op)] + per_op_overhead_cycles
    latency    = Σ cycles(op) / clock_hz

``class(op)`` is ``conv`` (CONV_2D, TRANSPOSE_CONV), ``depthwise``
(DEPTHWISE_CONV_2D), ``fully_connected`` (FULLY_CONNECTED, BATCH_MATMUL) or
``other``. For ``other`` ops the "MACs" are the elementary operations: the
output elements times the pooling window for pooling, the input elements for
reductions, the larger of input/output elements otherwise. The coefficients
come from the board profile (see docs/boards.md for where each was calibrated).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Optional

import numpy as np

from edgekd.boards import Board
from edgekd.flatbuffer import TFLiteModel

_CONV = {"CONV_2D", "TRANSPOSE_CONV", "CONV_3D"}
_DW = {"DEPTHWISE_CONV_2D"}
_FC = {"FULLY_CONNECTED", "BATCH_MATMUL"}
_POOL = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}
_REDUCE = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}
_FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}  # TFLM aliases or copies; counted as overhead only


def _elems(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


@dataclasses.dataclass(frozen=True)
class OpCost:
    """MACs of one operator and the op class the latency model uses for it."""

    index: int
    op_name: str
    op_class: str
    macs: int
    output_name: str
    output_shape: tuple[int, ...]


def op_class(op_name: str) -> str:
    """The latency model's class of a TFLite op name."""
    if op_name in _CONV:
        return "conv"
    if op_name in _DW:
        return "depthwise"
    if op_name in _FC:
        return "fully_connected"
    return "other"


def op_costs(model: TFLiteModel) -> list[OpCost]:
    """Per-op MAC counts of a verified model, in execution order."""
    t = model.tensors
    out = []
    for op in model.operators:
        name = op.op_name if op.custom_code is None else f"CUSTOM:{op.custom_code}"
        ins = [t[i] for i in op.inputs if i >= 0]
        outs = [t[i] for i in op.outputs if i >= 0]
        o = outs[0] if outs else None
        oshape = o.shape if o is not None else ()
        cls = op_class(op.op_name)
        macs = 0
        if op.op_name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) >= 2 and len(ins[1].shape) == 4:
            _, kh, kw, cin = ins[1].shape  # conv: (O, KH, KW, I); depthwise: (1, KH, KW, O)
            macs = _elems(oshape) * kh * kw * (cin if op.op_name == "CONV_2D" else 1)
        elif op.op_name == "TRANSPOSE_CONV" and len(ins) >= 3 and len(ins[1].shape) == 4:
            _, kh, kw, _ = ins[1].shape
            macs = _elems(ins[2].shape) * kh * kw * ins[1].shape[0]
        elif op.op_name == "FULLY_CONNECTED" and len(ins) >= 2 and len(ins[1].shape) == 2:
            units, depth = ins[1].shape
            macs = _elems(oshape) // max(units, 1) * units * depth
        elif op.op_name == "BATCH_MATMUL" and len(ins) >= 2 and ins[0].shape:
            macs = _elems(oshape) * int(ins[0].shape[-1])
        elif op.op_name in _POOL:
            kh = int(op.options.get("filterHeight", 1) or 1)
            kw = int(op.options.get("filterWidth", 1) or 1)
            macs = _elems(oshape) * kh * kw
        elif op.op_name in _REDUCE and ins:
            macs = _elems(ins[0].shape)
        elif op.op_name in _FREE:
            macs = 0
        else:
            sizes = [_elems(x.shape) for x in ins + outs if not x.is_constant]
            macs = max(sizes) if sizes else 0
        out.append(OpCost(op.index, name, cls, int(macs), o.name if o is not None else "", tuple(oshape)))
    return out


@dataclasses.dataclass(frozen=True)
class BoardLatency:
    """A board latency estimate, total and per op."""

    board: str
    kernels: str  # "cmsis-nn" / "esp-nn" / "reference"
    clock_hz: int
    total_ms: float
    per_op_ms: tuple[float, ...]
    macs: int
    macs_by_class: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def estimate_board_latency(costs: list[OpCost], board: Board, *, optimized: bool = True) -> BoardLatency:
    """Estimate the on-board latency of a model from its per-op MACs.

    Args:
        costs: From :func:`op_costs`.
        board: The board profile.
        optimized: Use the optimized kernels (CMSIS-NN, ESP-NN) when the board has them.

    Returns:
        A :class:`BoardLatency`.
    """
    per_op = []
    by_class = {"conv": 0, "depthwise": 0, "fully_connected": 0, "other": 0}
    for c in costs:
        cycles = c.macs * board.coefficient(c.op_class, optimized=optimized) + board.per_op_overhead_cycles
        per_op.append(cycles / board.clock_hz * 1e3)
        by_class[c.op_class] += c.macs
    kernels = board.optimized_kernels if optimized and board.has_optimized_kernels else "reference"
    return BoardLatency(board.id, kernels, board.clock_hz, float(sum(per_op)), tuple(per_op),
                        int(sum(c.macs for c in costs)), by_class)


@dataclasses.dataclass(frozen=True)
class HostLatency:
    """LiteRT latency on this host (one thread)."""

    median_ms: float
    p90_ms: float
    runs: int
    warmup: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def measure_host_latency(model_bytes: bytes, *, runs: int = 50, warmup: int = 5,
                         max_seconds: float = 3.0, x: Optional[np.ndarray] = None) -> HostLatency:
    """Median and p90 latency of ``invoke()`` with LiteRT, one thread, after warm-up.

    Stops early (after at least 5 timed runs) once ``max_seconds`` are spent.
    The model must already be verified with :func:`edgekd.flatbuffer.read_tflite`.
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=bytes(model_bytes), num_threads=1)
    interp.allocate_tensors()
    for k, d in enumerate(interp.get_input_details()):
        shape = tuple(int(s) for s in d["shape"])
        if x is not None and k == 0:
            val = np.asarray(x, dtype=d["dtype"]).reshape(shape)
        else:
            val = np.zeros(shape, dtype=d["dtype"])
        interp.set_tensor(d["index"], val)
    for _ in range(warmup):
        interp.invoke()
    times = []
    t_end = time.perf_counter() + max_seconds
    for i in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
        if i >= 4 and time.perf_counter() > t_end:
            break
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return HostLatency(float(statistics.median(times)), float(p90), len(times), warmup)
