"""The compiled engine on an emulated Cortex-M4F (QEMU mps2-an386, CMSIS-NN's DSP paths): bit-exact with TFLM's
interpreter built from the same Chirale tree, with fewer instructions, less static RAM and less flash; and the
bit-exact comparison fails when one precomputed requantization parameter is off by one."""

from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import pytest

from edgekd.emulate.build import CORTEX_M4F
from edgekd.engine import compile_model
from edgekd.engine.build import link_engine, run_engine, run_interpreter
from tests.engine.conftest import int8, random_inputs

pytestmark = pytest.mark.skipif(not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")),
                                reason="needs arm-none-eabi-g++ and qemu-system-arm (make sysdeps)")
RUNTIME = "chirale-2.0.0"


@pytest.fixture(scope="module")
def small_cnn():
    """Conv (stride 2, SAME) -> depthwise (VALID, 5 channels) -> 1x1 conv -> Dense: the CMSIS-NN DSP paths."""
    import keras

    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((11, 11, 3)),
                          keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
                          keras.layers.DepthwiseConv2D(3, activation="relu6"),
                          keras.layers.Conv2D(5, 1),
                          keras.layers.Flatten(), keras.layers.Dense(7)])
    return int8(m, per_channel_dense=False)


@pytest.fixture(scope="module")
def both(small_cnn, chirale):
    """(engine run, interpreter run, engine) of the small CNN under QEMU."""
    x = random_inputs(small_cnn, 6)
    engine = compile_model(small_cnn, runtime=RUNTIME)
    got = run_engine(engine, x, facts=chirale, toolchain=CORTEX_M4F)
    want = run_interpreter(small_cnn, x, facts=chirale, toolchain=CORTEX_M4F)
    return got, want, engine


def test_bit_exact_under_qemu_cortex_m4(both):
    got, want, _ = both
    assert got.outputs.shape == want.outputs.shape == (6, 7)
    np.testing.assert_array_equal(got.outputs, want.outputs)


def test_measures_instructions_and_sizes(both):
    got, want, engine = both
    # instructions per invoke, counted by QEMU (ticks of 40 instructions)
    assert len(got.instructions) == len(want.instructions) == 6
    assert all(n > 0 and n % 40 == 0 for n in got.instructions + want.instructions)
    assert max(got.instructions) <= min(want.instructions)  # the same kernels, without the interpreter around them
    # the ELF: the engine's activation buffer is in .bss, no arena; the interpreter's arena is what it used
    assert got.arena_used_bytes is None and want.arena_used_bytes > 0
    assert got.size.arena == 0 and got.size.model_ram >= engine.activation_bytes
    assert got.ram_bytes == got.size.data + got.size.bss
    assert want.ram_bytes == want.size.data + want.size.bss - want.size.arena + -(-want.arena_used_bytes // 16) * 16
    assert got.ram_bytes < want.ram_bytes and got.flash_bytes < want.flash_bytes
    assert got.size.tflm_flash < want.size.tflm_flash  # no interpreter, allocator or flatbuffer code linked


def test_link_engine_gives_the_sizes_without_running(small_cnn, chirale, both):
    size = link_engine(compile_model(small_cnn, runtime=RUNTIME), facts=chirale)
    ran = both[0].size
    # the same objects of the engine and the kernels; only the runner's embedded inputs differ
    assert (size.model_flash, size.model_ram, size.tflm_flash, size.tflm_ram) == \
        (ran.model_flash, ran.model_ram, ran.tflm_flash, ran.tflm_ram)


def test_activation_buffer_is_no_larger_than_tflms_plan(small_cnn, chirale, both):
    """TFLM's own plan for the same CMSIS-NN kernels: the head of its arena after AllocateTensors on the target."""
    _, want, engine = both
    recorded = run_interpreter(small_cnn, random_inputs(small_cnn, 1), facts=chirale, toolchain=CORTEX_M4F,
                               record=True)
    np.testing.assert_array_equal(recorded.outputs, want.outputs[:1])
    assert 0 < engine.activation_bytes <= recorded.arena_head_bytes < recorded.arena_used_bytes


def _off_by_one(engine, pattern: str):
    """The engine with the first value of the first array matching ``pattern`` incremented by one."""
    source = engine.files["model_engine.cc"]
    m = re.search(r"(const int(?:32_t)? (" + pattern + r")\[\d+\] = \{\s*)(-?\d+)", source)
    assert m is not None, f"no {pattern} array in the generated source"
    edited = source[:m.start(3)] + str(int(m.group(3)) + 1) + source[m.end(3):]
    return m.group(2), dataclasses.replace(engine, files={**engine.files, "model_engine.cc": edited})


def test_one_parameter_off_by_one_breaks_bit_exactness(small_cnn, chirale, both):
    """The test above can fail: the first conv's first output channel with its precomputed shift off by one
    (its multiplier doubled or halved) changes the outputs under QEMU.

    (The Q31 mantissa off by one would not do: it moves a requantized value by about acc / 2^(31 + shift) of
    a step, some 1e-7, so the output bytes of a few inputs almost never change.)
    """
    _, want, engine = both
    x = random_inputs(small_cnn, 6)
    symbol, broken = _off_by_one(engine, r"g_op0_shifts?")
    got = run_engine(broken, x, facts=chirale, toolchain=CORTEX_M4F).outputs
    assert symbol.startswith("g_op0_")
    assert not np.array_equal(got, want.outputs)
