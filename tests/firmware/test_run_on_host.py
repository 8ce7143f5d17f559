"""The generated projects run on the host against the real TFLM trees, byte for byte.

Each target's project (the Arduino sketch and the PlatformIO main link
Chirale_TensorFLowLite with CMSIS-NN kernels; the ESP-IDF app links
esp-tflite-micro, built with TFLM's reference kernels since ESP-NN's sources are
not in the component) is compiled unchanged with -Wall -Wextra -Werror, linked
with the TFLM library built from ../shared/tflm/ and the board-SDK stand-ins,
and run. Every embedded sample's int8 output must equal what TFLM's Python
interpreter computed (reference kernels), or be within one quantized step of
it (CMSIS-NN).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgekd.boards import runtime as runtimes
from tests.firmware.test_tflm_headers import TREES

TARGETS = [("arduino", "nano33ble"), ("esp-idf", "esp32s3"), ("platformio", "esp32")]


def _tree_for(target):
    from edgekd.emulate import FirmwareRunError, find_tree

    try:
        return find_tree(runtimes.for_target(target), extra=TREES).root
    except FirmwareRunError:
        return None


def _project(tiny_tflite, digits, target, board, n=16):
    from edgekd.firmware import render

    return render(tiny_tflite[1], board=board, target=target, samples=digits.test, num_samples=n,
                  labels=[str(i) for i in range(10)])


@pytest.mark.parametrize("target,board", TARGETS, ids=[t for t, _ in TARGETS])
def test_generated_project_computes_what_tflm_computed_on_the_host(target, board, tiny_tflite, digits):
    from edgekd.emulate import run_on_host

    tree = _tree_for(target)
    if tree is None:
        pytest.skip(f"no {runtimes.for_target(target).label} tree (shared/tflm/; docs/firmware.md)")
    project = _project(tiny_tflite, digits, target, board)
    run = run_on_host(project, tflm=tree)
    tolerance = 0 if run.kernels == "reference" else 1
    first = run.first_difference()
    assert run.max_diff_steps <= tolerance, (
        f"{target} ({run.kernels}): sample {first[0]} element {first[1]} is {first[2]} on the device, "
        f"{first[3]} in TFLM's Python interpreter")
    assert all(run.device_match), run.log
    assert list(run.predicted) == list(np.argmax(project.expected_outputs, axis=1))
    assert 0 < run.arena_used_bytes <= project.arena.size
    print(f"{target}: {run.kernels} kernels, max diff {run.max_diff_steps} steps over {len(run.predicted)} "
          f"samples, arena used {run.arena_used_bytes} B (check: {project.arena.measured} B)")


def test_a_tampered_expected_output_fails(tiny_tflite, digits):
    """The comparison can fail: one expected byte off by 3 is seen by the firmware and by the test."""
    from edgekd.emulate import run_on_host

    tree = _tree_for("esp-idf")
    if tree is None:
        pytest.skip("no esp-tflite-micro tree")
    import dataclasses
    import types

    project = _project(tiny_tflite, digits, "esp-idf", "esp32s3", n=2)
    expected = project.expected_outputs.copy()
    expected[1, 4] = np.int8(np.clip(int(expected[1, 4]) + 3, -128, 127) if expected[1, 4] < 124 else 120)
    files = dict(project.files)
    rows = "\n".join("    {\n        " + " ".join(f"{int(v)}," for v in row) + "\n    }," for row in expected)
    files["main/samples.cc"] = re.sub(r"(kExpectedOutputs\[kNumSamples\]\[kOutputSize\] = \{\n).*?(\n\};)",
                                      lambda m: m.group(1) + rows + m.group(2), files["main/samples.cc"],
                                      flags=re.S)
    tampered = dataclasses.replace(project, files=types.MappingProxyType(files), expected_outputs=expected)
    run = run_on_host(tampered, tflm=tree)
    assert run.device_match == (True, False)
    assert run.first_difference()[:2] == (1, 4)


@pytest.mark.parametrize("target", ["esp-idf", "arduino"])
def test_an_arena_over_the_static_limit_comes_from_the_heap_and_runs(target, tiny_tflite, digits):
    """esp32 links at most 128 KiB of static arena (board profile): above it the project allocates
    from the heap, compiles warning-free against the real tree and still computes the same bytes."""
    from edgekd.boards import get
    from edgekd.emulate import run_on_host
    from edgekd.firmware import render

    tree = _tree_for(target)
    if tree is None:
        pytest.skip(f"no {runtimes.for_target(target).label} tree")
    limit = get("esp32").static_arena_max_bytes
    project = render(tiny_tflite[1], board="esp32", target=target, samples=digits.test, num_samples=4,
                     arena_size=110_000)
    assert project.arena.size > limit and project.arena.allocation == "heap"
    assert project.marker["arena"]["allocation"] == "heap"
    main = next(text for rel, text in project.files.items() if rel.endswith((".ino", "main.cc")))
    assert "heap_caps_aligned_alloc(16, kTensorArenaSize" in main and "uint8_t tensor_arena[" not in main
    run = run_on_host(project, tflm=tree)
    assert run.max_diff_steps <= (0 if run.kernels == "reference" else 1)
    assert all(run.device_match)


def test_a_heap_that_cannot_hold_the_arena_is_reported_by_the_firmware(tiny_tflite, digits, monkeypatch):
    from edgekd.emulate import FirmwareRunError, run_on_host
    from edgekd.firmware import render

    tree = _tree_for("esp-idf")
    if tree is None:
        pytest.skip("no esp-tflite-micro tree")
    project = render(tiny_tflite[1], board="esp32", target="esp-idf", samples=digits.test, num_samples=1,
                     arena_size=110_000)
    monkeypatch.setenv("EDGEKD_HEAP_LIMIT", "65536")  # the host stand-in's largest free block
    with pytest.raises(FirmwareRunError, match="cannot allocate the 137504-byte tensor arena .largest free heap "
                                               "block: 65536 bytes"):
        run_on_host(project, tflm=tree)


def test_an_arena_that_fits_neither_way_is_refused_before_rendering(tiny_tflite):
    from edgekd.errors import InvalidArgumentError
    from edgekd.firmware import render

    with pytest.raises(InvalidArgumentError, match="fits esp32 neither as a static array"):
        render(tiny_tflite[1], board="esp32", target="esp-idf", arena_size=200_000)
