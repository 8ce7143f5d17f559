"""The generated C++ that needs no TFLM headers compiles (host g++ and Arm), and its helpers match Python.

The sketch / ESP-IDF ``main`` themselves include TFLM headers, which no
package registry reachable here ships; they are checked against the
resolver table in test_render.py, not compiled (see docs/firmware.md).
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from edgekd.firmware import dequantize, quantize, render, write_project

NO_TFLM = ("model_data", "model_io", "samples")
ARM = ["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb"]

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "model_io.h"
#include "samples.h"

// stdin: one float per line as its IEEE-754 bits in hex. stdout: "q <int>" per float, then
// "d <q> <bits>" for every int8 q, then "a <argmax>" of each embedded sample's first 10 values.
int main() {
  unsigned int bits;
  while (scanf("%x", &bits) == 1) {
    float x;
    memcpy(&x, &bits, sizeof(x));
    printf("q %d\n", static_cast<int>(model_io::quantize_input(x)));
  }
  for (int q = -128; q <= 127; ++q) {
    float y = model_io::dequantize_output(static_cast<int8_t>(q));
    memcpy(&bits, &y, sizeof(bits));
    printf("d %d %08x\n", q, bits);
  }
  for (int i = 0; i < samples::kNumSamples; ++i) {
    printf("a %d\n", model_io::argmax(samples::kInputs[i], 10));
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def esp_project(tiny_tflite, tiny_arena, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("fw_c") / "esp"
    project = render(tiny_tflite[1], board="esp32s3", target="esp-idf", samples=digits.val,
                     arena_size=tiny_arena, num_samples=3)
    write_project(project, out)
    return out / "main"


@pytest.fixture(scope="module")
def arduino_project(tiny_tflite, tiny_arena, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("fw_c") / "ino"
    project = render(tiny_tflite[1], board="nano33ble", target="arduino", samples=digits.val,
                     arena_size=tiny_arena, num_samples=3, labels=[str(i) for i in range(10)])
    write_project(project, out)
    return out / "edgekd_model"


def _compile(cxx: list[str], src, obj, std: str = "c++11") -> None:
    proc = subprocess.run([*cxx, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-O2", "-c", str(src),
                           "-o", str(obj)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_compiles_with_host_gpp(esp_project, arduino_project, tmp_path):
    for folder, ext in ((esp_project, ".cc"), (arduino_project, ".cpp")):
        for stem in NO_TFLM:
            _compile(["g++"], folder / (stem + ext), tmp_path / (stem + ".o"))


@pytest.mark.arm
def test_compiles_with_arm_none_eabi(esp_project, arduino_project, tmp_path):
    if shutil.which(ARM[0]) is None:
        pytest.skip("arm-none-eabi-g++ is not installed (make sysdeps installs it)")
    for folder, ext in ((esp_project, ".cc"), (arduino_project, ".cpp")):
        for stem in NO_TFLM:
            _compile(ARM, folder / (stem + ext), tmp_path / (stem + ".o"), std="gnu++17")
            _compile(ARM + ["-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], folder / (stem + ext),
                     tmp_path / (stem + "_hf.o"))


def test_helpers_quantize_and_dequantize_exactly_as_python(esp_project, tiny_tflite, digits, tmp_path):
    from edgekd.flatbuffer import read_tflite

    fb = read_tflite(tiny_tflite[1])
    inp, out = fb.input_tensors[0], fb.output_tensors[0]
    in_s, in_z = inp.quantization.scale[0], inp.quantization.zero_point[0]
    out_s, out_z = out.quantization.scale[0], out.quantization.zero_point[0]

    (esp_project / "harness.cc").write_text(HARNESS)
    exe = tmp_path / "harness"
    srcs = [esp_project / f for f in ("harness.cc", "model_io.cc", "samples.cc", "model_data.cc")]
    proc = subprocess.run(["g++", "-std=c++11", "-O2", "-Wall", "-Werror", "-o", str(exe), *map(str, srcs)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    rng = np.random.default_rng(0)
    s32 = np.float32(in_s)
    k = np.arange(-300, 300, dtype=np.float32)
    x = np.concatenate([
        rng.uniform(-0.5, 1.5, 2000).astype(np.float32),           # the data range and beyond
        (k + np.float32(0.5)) * s32,                                # near the rounding ties
        np.nextafter((k + np.float32(0.5)) * s32, np.float32(np.inf)),
        np.nextafter((k + np.float32(0.5)) * s32, np.float32(-np.inf)),
        np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 1e-45], dtype=np.float32),
    ]).astype(np.float32)
    stdin = "\n".join(f"{struct.unpack('<I', struct.pack('<f', v))[0]:08x}" for v in x) + "\n"
    run = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    q_c = np.array([int(ln.split()[1]) for ln in lines if ln.startswith("q ")])
    np.testing.assert_array_equal(q_c, quantize(x, in_s, in_z).astype(int))

    d = [ln.split() for ln in lines if ln.startswith("d ")]
    q_all = np.arange(-128, 128)
    bits_c = np.array([int(b, 16) for _, _, b in d], dtype=np.uint32)
    np.testing.assert_array_equal(bits_c, dequantize(q_all, out_s, out_z).view(np.uint32))
    # And the real values are what the affine formula says (up to float32 rounding).
    np.testing.assert_allclose(bits_c.view(np.float32), (q_all - out_z) * out_s, rtol=1e-6)

    argmax_c = [int(ln.split()[1]) for ln in lines if ln.startswith("a ")]
    # argmax over int8 (first index on ties, like numpy) of the embedded samples' first 10 values.
    want = [int(quantize(digits.val.x[i], in_s, in_z).reshape(-1)[:10].argmax()) for i in range(3)]
    assert argmax_c == want
