"""Latency from emulated instructions: the board profile's cycles per instruction applied to real counts.

The counts come from a real run (Chirale's CMSIS-NN kernels on QEMU's Cortex-M4F); the CPI is the one
nucleo-l4r5zi.toml ships (calibrated by bench/emulate_latency.py, docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses

import pytest

from edgekd import boards
from edgekd.emulate.qemu import emulate, instruction_latency


@pytest.fixture(scope="module")
def emulated(tiny_tflite, chirale):
    return emulate(tiny_tflite[1], board="nucleo-l4r5zi", tflm=chirale, num_samples=1)


def test_latency_is_instructions_times_the_profile_cpi_over_the_clock(emulated):
    board = boards.get("nucleo-l4r5zi")
    assert set(board.cycles_per_instruction) == set(boards.OP_CLASSES)
    assert emulated.latency is not None
    assert {o.op for o in emulated.ops} >= {"CONV_2D", "FULLY_CONNECTED"}
    expected = [o.instructions * board.cycles_per_instruction[o.op_class] / board.clock_hz * 1e3
                for o in emulated.ops]
    assert all(o.instructions > 0 for o in emulated.ops)
    assert emulated.latency.per_op_ms == pytest.approx(expected)
    assert emulated.latency.total_ms == pytest.approx(sum(expected))
    assert (emulated.latency.board, emulated.latency.clock_hz) == ("nucleo-l4r5zi", 120_000_000)
    assert emulated.to_dict()["latency"]["total_ms"] == pytest.approx(sum(expected))
    print(f"{sum(o.instructions for o in emulated.ops):,} instructions -> {emulated.latency.total_ms:.3f} ms "
          f"(MAC-based {emulated.mac_latency_ms:.3f} ms)")


def test_each_op_uses_the_cpi_of_its_class(emulated):
    board = dataclasses.replace(boards.get("nucleo-l4r5zi"), cycles_per_instruction={
        "conv": 2.0, "depthwise": 3.0, "fully_connected": 1.0, "other": 1.5})
    lat = instruction_latency(emulated.ops, board)
    for op, ms in zip(emulated.ops, lat.per_op_ms):
        assert ms == pytest.approx(op.instructions * board.cycles_per_instruction[op.op_class] / 120e3)
    conv = next(i for i, o in enumerate(emulated.ops) if o.op_class == "conv")
    fc = next(i for i, o in enumerate(emulated.ops) if o.op_class == "fully_connected")
    assert lat.per_op_ms[conv] == pytest.approx(emulated.ops[conv].instructions * 2.0 / 120e3)
    assert lat.per_op_ms[fc] == pytest.approx(emulated.ops[fc].instructions * 1.0 / 120e3)


def test_same_core_boards_share_the_cpi_and_scale_with_their_clock(emulated):
    nano = boards.get("nano33ble")
    assert dict(nano.cycles_per_instruction) == dict(boards.get("nucleo-l4r5zi").cycles_per_instruction)
    lat = instruction_latency(emulated.ops, nano)
    assert lat.total_ms == pytest.approx(emulated.latency.total_ms * 120 / 64)


def test_no_cpi_no_instruction_latency(emulated):
    board = dataclasses.replace(boards.get("nucleo-l4r5zi"), cycles_per_instruction={})
    assert instruction_latency(emulated.ops, board) is None
