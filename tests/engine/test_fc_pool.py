"""The compiled engine's FULLY_CONNECTED, AVERAGE/MAX_POOL_2D, MEAN and SOFTMAX are bit-exact with the interpreter.

Each model is tiny, with random weights (no training), converted to int8 and run on random int8 inputs
by the engine and by ``MicroInterpreter``, both built from the same TFLM tree: Chirale_TensorFLowLite
(CMSIS-NN kernels) and esp-tflite-micro (reference kernels). Their output bytes must be equal. Several
variants share one model to keep the conversions and links few; each test checks that its model holds
the variants it claims (kernel branch, padding, quantization) so a converter change cannot hollow it out.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from edgekd.convert import convert
from edgekd.engine import compile_model, read_graph
from edgekd.engine.ops.activations import softmax_params
from edgekd.errors import UnsupportedOpError
from tests.engine.conftest import assert_bit_exact, int8

keras = pytest.importorskip("keras")

CHIRALE, ESP = "chirale-2.0.0", "esp-tflite-micro-1.4.0"


def _model(shape, *layers, seed: int = 0, scales=()):
    """A Keras model of ``layers`` on an input of ``shape``; weight array i uniform in ±scales[i] (default 1)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    x = inp
    for layer in layers:
        x = layer(x)
    m = keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    weights = m.get_weights()
    scales = list(scales) + [1.0] * (len(weights) - len(scales))
    m.set_weights([rng.uniform(-s, s, w.shape).astype("float32") for w, s in zip(weights, scales)])
    return m


def _ops(model, name):
    g = read_graph(model)
    return g, [op for op in g.ops if op.name == name]


def test_dense(chirale, esp):
    """FULLY_CONNECTED: rank 3 with accum depth 8 (Chirale: arm_convolve_1x1_s8_fast) and 6
    (arm_fully_connected_s8), with and without bias, ReLU, rank 2; SOFTMAX after it. Per-tensor weights on both
    trees, per-channel on esp (FullyConnectedPerChannel)."""
    m = _model((5, 8), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(5, use_bias=False),
               keras.layers.Flatten(), keras.layers.Dense(7), keras.layers.Softmax())
    per_tensor = int8(m, per_channel_dense=False)
    g, fcs = _ops(per_tensor, "FULLY_CONNECTED")
    assert [(len(g.tensor(op.outputs[0]).shape), g.tensor(op.inputs[1]).shape[-1], len(op.inputs) > 2
             and op.inputs[2] >= 0, op.options["fusedActivationFunction"]) for op in fcs] == \
        [(3, 8, True, 1), (3, 6, False, 0), (2, 25, True, 0)]
    assert_bit_exact(per_tensor, chirale, runtime=CHIRALE)
    assert_bit_exact(per_tensor, esp, runtime=ESP)
    per_channel = int8(m, per_channel_dense=True)
    g, fcs = _ops(per_channel, "FULLY_CONNECTED")
    assert all(g.tensor(op.inputs[1]).per_channel for op in fcs)
    assert_bit_exact(per_channel, esp, runtime=ESP)
    with pytest.raises(UnsupportedOpError, match="per_channel_dense=False"):
        compile_model(per_channel, runtime=CHIRALE)


def test_pools(chirale, esp):
    """AVERAGE_POOL_2D and MAX_POOL_2D: 2x2 stride 2 and 3x3 stride 1, SAME (odd sizes: uneven padding) and VALID."""
    layers = [keras.layers.AveragePooling2D(2, 2, "same"), keras.layers.MaxPooling2D(2, 2, "same"),
              keras.layers.AveragePooling2D(3, 1, "same"), keras.layers.MaxPooling2D(3, 1, "same"),
              keras.layers.AveragePooling2D(3, 1, "valid"), keras.layers.MaxPooling2D(3, 1, "valid"),
              keras.layers.AveragePooling2D(2, 2, "valid"), keras.layers.MaxPooling2D(2, 2, "valid")]
    model = int8(_model((29, 29, 3), *layers))
    g = read_graph(model)
    assert [(op.name[:3], op.options["filterWidth"], op.options["strideW"], op.options["padding"])
            for op in g.ops] == [("AVE", 2, 2, 0), ("MAX", 2, 2, 0), ("AVE", 3, 1, 0), ("MAX", 3, 1, 0),
                                 ("AVE", 3, 1, 1), ("MAX", 3, 1, 1), ("AVE", 2, 2, 1), ("MAX", 2, 2, 1)]
    assert_bit_exact(model, chirale, runtime=CHIRALE)
    assert_bit_exact(model, esp, runtime=ESP)


def _same_scale_data(shape, n=32, seed=0):
    """Calibration inputs constant over H and W: the mean over H, W has the input's range, so MEAN's output gets
    the input's scale and zero point (Chirale's reference_ops::Mean branch)."""
    rng = np.random.default_rng(seed)
    # Multiples of 1/64 over H*W = 16 cells: the float mean is exact, so the two ranges are equal to the bit.
    values = rng.integers(-64, 65, (n, 1, 1, shape[-1])) / 64.0
    return np.broadcast_to(values, (n, *shape)).astype("float32").copy()


@pytest.mark.parametrize("keepdims", [True, False])
def test_mean(chirale, esp, keepdims):
    """MEAN over H, W (GlobalAveragePooling2D), the model's output: keepDims with input and output scales different
    (QuantizedMeanOrSum on both trees), and without keepDims with equal scales (reference_ops::Mean on Chirale)."""
    shape = (6, 5, 7) if keepdims else (4, 4, 3)
    m = _model(shape, keras.layers.GlobalAveragePooling2D(keepdims=keepdims))
    model = (int8(m) if keepdims
             else convert(m, mode="int8", representative_data=_same_scale_data(shape)))
    g, (mean,) = _ops(model, "MEAN")
    src, dst = g.tensor(mean.inputs[0]), g.tensor(mean.outputs[0])
    assert mean.options["keepDims"] == keepdims and len(dst.shape) == (4 if keepdims else 2)
    assert ((src.scale, src.zero_point) == (dst.scale, dst.zero_point)) == (not keepdims)
    assert_bit_exact(model, chirale, runtime=CHIRALE)
    assert_bit_exact(model, esp, runtime=ESP)


@pytest.mark.parametrize("input_range", [0.05, 100.0])
def test_softmax(chirale, esp, input_range):
    """SOFTMAX (beta 1) on a small input scale (diff_min ~ -10^5: every input counts) and a large one (diff_min ~ -20:
    most inputs are below it)."""
    m = _model((3, 9), keras.layers.Softmax())
    rep = np.random.default_rng(0).uniform(-input_range, input_range, (32, 3, 9)).astype("float32")
    model = convert(m, mode="int8", representative_data=rep)
    g, (sm,) = _ops(model, "SOFTMAX")
    diff_min = softmax_params(sm.options["beta"], g.tensor(sm.inputs[0]).scale[0])[2]
    assert sm.options["beta"] == 1.0 and (diff_min < -10000 if input_range < 1 else -100 < diff_min)
    assert_bit_exact(model, chirale, runtime=CHIRALE)
    assert_bit_exact(model, esp, runtime=ESP)


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-g++ and qemu-system-arm")
def test_cortex_m4_qemu(chirale):
    """Under QEMU (Cortex-M4F: CMSIS-NN's DSP paths, arm_avgpool_s8 with its scratch buffer) on Chirale, every op of
    this file in one model: average and max pool, FULLY_CONNECTED on a 4-D tensor (arm_convolve_1x1_s8_fast) and
    on a 2-D one, MEAN, SOFTMAX."""
    from edgekd.emulate.build import CORTEX_M4F
    from edgekd.engine.build import run_engine, run_interpreter
    from tests.engine.conftest import random_inputs

    m = _model((9, 9, 8), keras.layers.AveragePooling2D(2, 2, "same"), keras.layers.MaxPooling2D(3, 1, "valid"),
               keras.layers.Dense(8, activation="relu"), keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(6), keras.layers.Softmax())
    model = int8(m, per_channel_dense=False)
    names = [op.name for op in read_graph(model).ops]
    assert names == ["AVERAGE_POOL_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    x = random_inputs(model, 4)
    got = run_engine(compile_model(model, runtime=CHIRALE), x, facts=chirale, toolchain=CORTEX_M4F)
    want = run_interpreter(model, x, facts=chirale, toolchain=CORTEX_M4F)
    assert len(got.instructions) == len(x) and all(got.instructions)  # it ran under QEMU
    np.testing.assert_array_equal(got.outputs, want.outputs)


SOFTMAX_PROBE = r"""
#include <cstdio>

#include "tensorflow/lite/kernels/internal/quantization_util.h"

// One "beta input_scale" per line (beta and the scale are float32 in TFLM, widened to double).
int main() {
  float beta = 0.0f, scale = 0.0f;
  while (std::scanf("%f %f", &beta, &scale) == 2) {
    int32_t multiplier = 0;
    int shift = 0;
    tflite::PreprocessSoftmaxScaling(static_cast<double>(beta), static_cast<double>(scale), 5, &multiplier, &shift);
    const int diff_min = -1.0 * tflite::CalculateInputRadius(5, shift);
    std::printf("%ld %d %d\n", static_cast<long>(multiplier), shift, diff_min);
  }
  return 0;
}
"""


def test_softmax_params_match_tflm(esp, tmp_path):
    """softmax_params (PreprocessSoftmaxScaling, CalculateInputRadius ported) equals the tree's own routines on
    scales from 1e-6 to 40 (the 2**31 - 1 cap included) and a few betas."""
    from edgekd.emulate.build import HOST, build_library, link_program

    rng = np.random.default_rng(0)
    scales = np.float32(10.0) ** rng.uniform(-6, 1.6, 400).astype(np.float32)
    cases = [(np.float32(b), np.float32(s)) for s in scales for b in (1.0, 0.5, 2.5)]
    (tmp_path / "probe.cc").write_text(SOFTMAX_PROBE)
    exe = link_program([tmp_path / "probe.cc"], library=build_library(esp, HOST, ops=[]), includes=[tmp_path],
                       out=tmp_path / "probe")
    # %.9g round-trips a float32 exactly.
    stdin = "".join(f"{b:.9g} {s:.9g}\n" for b, s in cases)
    lines = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True).stdout.split("\n")
    want = [tuple(int(v) for v in ln.split()) for ln in lines if ln]
    assert want == [softmax_params(float(b), float(s)) for b, s in cases]
    assert any(m == (1 << 31) - 1 for m, _, _ in want)  # the cap was reached
