"""edgekd emulate: the model on QEMU's Cortex-M4F with Chirale's CMSIS-NN kernels, compared byte by byte.

Everything here is real: the TFLM tree of shared/tflm/ cross-compiled with
arm-none-eabi-g++, the program run by qemu-system-arm, the outputs compared with
TFLM's Python interpreter.
"""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

from edgekd.emulate.qemu import EmulationError, emulate


@pytest.fixture(scope="module")
def emulated(tiny_tflite, digits, chirale):
    return emulate(tiny_tflite[1], board="nucleo-l4r5zi", tflm=chirale, samples=digits.test, num_samples=16)


def test_outputs_agree_with_tflm_within_one_step(emulated):
    """CMSIS-NN on the Cortex-M4F computes what TFLM's reference kernels computed on the host (±1 step)."""
    first = np.argwhere(emulated.diff_steps > 1)
    assert not len(first), (f"sample {first[0][0]} element {first[0][1]}: {emulated.outputs[tuple(first[0])]} "
                            f"emulated, {emulated.expected[tuple(first[0])]} expected")
    assert emulated.outputs.shape == (16, 10)
    assert emulated.class_agreement == 1.0
    assert emulated.kernels == "cmsis-nn"
    print(f"emulated: max diff {emulated.max_diff_steps} steps over 16 samples")


def test_32_bit_arena_is_below_the_64_bit_host_figure(emulated, tiny_tflite):
    from edgekd.firmware import measure_arena

    host = measure_arena(tiny_tflite[1])
    assert 0 < emulated.arena_used_bytes < host, (emulated.arena_used_bytes, host)
    print(f"arena: {emulated.arena_used_bytes} B on the Cortex-M4F vs {host} B on the 64-bit host")


def test_image_sizes_come_from_the_elf(emulated, tiny_tflite):
    size = emulated.size
    # The model array is the flatbuffer itself (alignment padding at most 15 bytes).
    assert len(tiny_tflite[1]) <= size.model_flash < len(tiny_tflite[1]) + 16
    assert 10_000 < size.tflm_flash < 200_000
    assert size.flash == size.tflm_flash + size.model_flash + size.samples_flash + size.support_flash
    assert size.bss >= size.arena > 0


def test_per_op_instructions_add_up_and_name_the_ops(emulated, tiny_tflite):
    from edgekd.profile import profile

    layers = profile(tiny_tflite[1]).layers
    assert [o.op for o in emulated.ops] == [layer.op_type for layer in layers]
    assert all(o.instructions > 0 for o in emulated.ops)
    assert [o.macs for o in emulated.ops] == [int(layer.macs) for layer in layers]
    total = emulated.instructions[0]
    per_op = sum(o.instructions for o in emulated.ops)
    assert per_op <= total < per_op + 5_000  # the interpreter's own loop between the kernels
    conv = next(o for o in emulated.ops if o.op == "CONV_2D")
    assert conv.instructions > next(o for o in emulated.ops if o.op == "RESHAPE").instructions


def test_a_second_model_reuses_the_cached_library(emulated, tiny_tflite, chirale):
    again = emulate(tiny_tflite[1], board="nano33ble", tflm=chirale, num_samples=1)
    assert again.library_objects_built == 0
    assert again.board == "nano33ble"


def test_a_tampered_expected_output_is_seen(emulated):
    """The comparison can fail: one expected byte off by 3 steps."""
    expected = emulated.expected.copy()
    expected[3, 2] = np.int8(int(expected[3, 2]) + 3 if expected[3, 2] < 120 else 100)
    tampered = dataclasses.replace(emulated, expected=expected)
    assert tampered.max_diff_steps >= 3


def test_too_small_an_arena_is_reported(tiny_tflite, chirale):
    with pytest.raises(EmulationError, match=r"AllocateTensors\(\) failed with a 256-byte arena"):
        emulate(tiny_tflite[1], board="nucleo-l4r5zi", tflm=chirale, num_samples=1, arena_size=256)


def test_a_crash_names_the_op_it_stopped_in(tiny_tflite, chirale):
    """A fault of the emulated CPU (an undefined instruction at the start of op 1) names that op."""
    with pytest.raises(EmulationError, match="HardFault in op DEPTHWISE_CONV_2D|HardFault in op MAX_POOL_2D"):
        emulate(tiny_tflite[1], board="nucleo-l4r5zi", tflm=chirale, num_samples=1, _fault_at_op=1)


def test_a_run_past_its_time_limit_is_killed(tiny_tflite, chirale):
    with pytest.raises(EmulationError, match="did not finish in"):
        # 1 ms: below QEMU's own start-up, so the limit always strikes first (64 samples of the tiny model
        # once finished inside 50 ms on a quiet machine, and the test failed)
        emulate(tiny_tflite[1], board="nucleo-l4r5zi", tflm=chirale, num_samples=64, timeout=0.001)
    left = subprocess.run(["pgrep", "-f", "qemu-system-arm.*edgekd_emulate_"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
