"""Latency: measured on the host with LiteRT, estimated on a board.

The board estimate is a per-op roofline-free cost model::

    cycles(op) = MACs(op) × cycles_per_mac[kernels][class(op)] + per_op_overhead_cycles
    latency    = Σ cycles(op) / clock_hz

``class(op)`` and ``MACs(op)`` come from the profiler (``edgekd.profile``):
``conv`` (CONV_2D, TRANSPOSE_CONV), ``depthwise`` (DEPTHWISE_CONV_2D),
``fully_connected`` (FULLY_CONNECTED, BATCH_MATMUL) or ``other``, whose "MACs"
are elementary operations (pooling window × outputs, elementwise ops, …; see
docs/profile.md). The coefficients come from the board profile (see
docs/boards.md for where each was calibrated).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from edgekd.boards import Board
from edgekd.convert.runtime import LiteRTJob, litert_error, run_litert
from edgekd.profile import profile


@dataclasses.dataclass(frozen=True)
class OpCost:
    """MACs of one operator and the op class the latency model uses for it."""

    index: int
    op_name: str
    op_class: str
    macs: int
    output_name: str
    output_shape: tuple[int, ...]


def op_costs(model: bytes | bytearray | str | os.PathLike) -> list[OpCost]:
    """Per-op MACs and op classes of a ``.tflite`` model, in execution order.

    The counts come from the profiler (:func:`edgekd.profile.profile` on the
    TFLite graph), so ``edgekd profile`` and ``edgekd check`` agree on every op.

    Args:
        model: The ``.tflite`` bytes or path (verified by the profiler).
    """
    return costs_from_profile(profile(bytes(model) if isinstance(model, bytearray) else model))


def costs_from_profile(prof) -> list[OpCost]:
    """:class:`OpCost` rows from a TFLite :class:`edgekd.profile.ModelProfile` (one per operator)."""
    return [OpCost(i, layer.op_type, layer.kind, int(layer.macs), layer.name, tuple(layer.output_shape))
            for i, layer in enumerate(prof.layers)]


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
                         max_seconds: float = 3.0, x: Optional[np.ndarray] = None,
                         timeout: float = 120.0) -> HostLatency:
    """Median and p90 latency of ``invoke()`` with LiteRT, one thread, after warm-up.

    Stops early (after at least 5 timed runs) once ``max_seconds`` are spent.
    LiteRT runs in a child process (:func:`edgekd.convert.runtime.run_litert`,
    default delegate XNNPACK): a model that crashes or hangs it raises instead
    of ending this process.

    Args:
        model_bytes: The ``.tflite`` flatbuffer (verified first).
        runs: Timed runs after warm-up.
        warmup: Untimed runs first.
        max_seconds: Stop timing after this long (at least 5 runs).
        x: The first input's value (zeros by default).
        timeout: Seconds before the child process is killed.

    Raises:
        TFLiteFileError: The model is not a valid TFLite flatbuffer.
        LiteRTError: LiteRT fails, crashes or hangs on the model (the message names the stage and op).
    """
    inputs = None if x is None else np.asarray(x)[None]
    (res,) = run_litert(model_bytes, [LiteRTJob("latency", runs=runs, warmup=warmup, max_seconds=max_seconds,
                                                inputs=inputs, task="host latency")], timeout=timeout)
    if res.failure is not None:
        raise litert_error(res.failure)
    return HostLatency(**res.value)
