"""Hostile labels and tensor names in every target's project: escaped, compiled, and printed byte for byte."""

from __future__ import annotations

import re
import subprocess

import pytest

from edgekd.firmware import render, write_project
from tests import _hostile
from tests.firmware.conftest import SHIMS, syntax_check_command
from tests.firmware.test_namespace_layouts import _tree

TARGETS = {"arduino": ("nano33ble", "edgekd_model", ".cpp", "edgekd_model.ino"),
           "esp-idf": ("esp32s3", "main", ".cc", "main.cc"),
           "platformio": ("esp32", "src", ".cpp", "main.cpp")}

HARNESS = _hostile.PRINT_LABELS % {"includes": '#include "model_io.h"\n#include "samples.h"',
                                   "extra": 'printf("samples %d\\n", samples::kNumSamples);'}


@pytest.fixture(scope="module")
def hostile_model(tiny_tflite):
    return _hostile.rename(tiny_tflite[1], input_name=_hostile.TENSOR_NAME, output_name=_hostile.TENSOR_NAME[::-1])


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_labels_and_tensor_names_compile_and_round_trip(target, hostile_model, tiny_arena, digits,
                                                                tmp_path):
    board, folder, ext, main = TARGETS[target]
    project = render(hostile_model, board=board, target=target, samples=digits.val, arena_size=tiny_arena,
                     num_samples=2, labels=_hostile.LABELS)
    for rel, text in project.files.items():  # no value started a line of its own, in any file
        assert not re.search(r"^\s*#error", text, re.M), rel
    out = tmp_path / target
    write_project(project, out)
    src = out / folder
    (src / "harness.cc").write_text(HARNESS)
    exe = tmp_path / "harness"
    for std in ("c++14", "gnu++17"):  # C++14 reads trigraphs
        proc = subprocess.run(["g++", f"-std={std}", "-Wall", "-Wextra", "-Werror", "-Wcomment", "-o", str(exe),
                               str(src / "harness.cc"), *(str(src / (s + ext)) for s in ("model_io", "samples",
                                                                                         "model_data"))],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{target} {std}:\n{proc.stderr[:3000]}"
        run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
        assert run.stdout.splitlines() == _hostile.printed_labels(_hostile.LABELS) + ["samples 2"]
    # The main file (setup/loop, ClassName, the Log lines) compiles with the TFLM API stand-ins.
    tree = _tree(tmp_path / "tree", "tflite-and-global")
    kind = target
    proc = subprocess.run(syntax_check_command(["g++"], kind, src / main, [SHIMS / "fallback", tree]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[:3000]


def test_firmware_prints_hostile_labels_byte_for_byte(hostile_model, tiny_tflite, digits):
    """The generated firmware, run on the host against the real esp-tflite-micro, prints each label exactly."""
    from tests.firmware.test_run_on_host import _tree_for

    from edgekd.emulate import run_on_host

    tree = _tree_for("esp-idf")
    if tree is None:
        pytest.skip("no esp-tflite-micro tree (shared/tflm/; docs/firmware.md)")
    labels = _hostile.ONE_LINE_LABELS  # one line per sample: the output is parsed line by line
    project = render(hostile_model, board="esp32s3", target="esp-idf", samples=digits.test, num_samples=12,
                     labels=labels)
    run = run_on_host(project, tflm=tree)
    printed = re.findall(r"^sample (\d+): predicted (\d+) (.*) score ", run.log, re.M)
    assert len(printed) == 12
    for _, cls, label in printed:
        assert label == labels[int(cls)]
    assert len({cls for _, cls, _ in printed}) >= 3  # several different labels went through
