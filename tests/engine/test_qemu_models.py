"""Bit-exact under QEMU's Cortex-M4F (CMSIS-NN DSP paths): the compiled engine and TFLM's interpreter built from
the same Chirale tree, on edgekd's students (digits small_cnn, ds_cnn and mobilenet_v1 at two widths) and the
MLPerf Tiny reference architectures of bench/refmodels.py, with random weights (BatchNormalization statistics
from the calibration data, as in a trained network) and random int8 inputs."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bench import refmodels
from edgekd import students
from edgekd.emulate.build import CORTEX_M4F
from edgekd.engine import compile_model, supported_ops
from edgekd.engine.build import run_engine, run_interpreter
from tests.engine.conftest import int8, random_inputs

pytestmark = pytest.mark.skipif(not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")),
                                reason="needs arm-none-eabi-g++ and qemu-system-arm (make sysdeps)")

# name -> (Keras builder, random inputs); the 96x96 MobileNet runs ~20 M instructions per input: one input
MODELS = {
    "digits_small_cnn": (lambda: students.get("small_cnn")(input_shape=(8, 8, 1), num_classes=10), 3),
    "ds_cnn_w0.25": (lambda: students.get("ds_cnn")(input_shape=(49, 10, 1), num_classes=12, width=0.25), 2),
    "ds_cnn_w0.5_softmax": (
        lambda: students.get("ds_cnn")(input_shape=(25, 10, 1), num_classes=12, width=0.5, softmax=True), 2),
    "mobilenet_v1_w0.25": (lambda: students.get("mobilenet_v1")(input_shape=(32, 32, 3), num_classes=5,
                                                                width=0.25), 2),
    "mobilenet_v1_w0.5": (lambda: students.get("mobilenet_v1")(input_shape=(24, 24, 1), num_classes=3, width=0.5,
                                                               depth=3), 2),
    "mlperf_vww_mobilenet_v1_025": (lambda: refmodels.mobilenet_v1_025(3), 1),
    "mlperf_kws_ds_cnn": (refmodels.ds_cnn, 2),
    "mlperf_ic_resnet8": (refmodels.resnet8, 1),
    "mlperf_ad_fc_autoencoder": (refmodels.fc_autoencoder, 2),
}


# `make test` runs one model of each family (digits student, DS-CNN, ResNet, FC autoencoder); the larger
# MobileNets and the other widths run with `make test-slow` (pytest -m slow), to keep the suite's time.
SLOW = {"ds_cnn_w0.5_softmax", "mobilenet_v1_w0.25", "mobilenet_v1_w0.5", "mlperf_vww_mobilenet_v1_025"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(MODELS)])
def test_bit_exact_under_qemu(name, chirale):
    import keras

    build, n = MODELS[name]
    keras.utils.set_random_seed(0)
    net = build()
    rep = np.random.default_rng(0).uniform(-1.0, 1.0, (32, *net.input_shape[1:])).astype("float32")
    model = int8(refmodels.with_batchnorm_statistics(net, rep), per_channel_dense=False)
    lacking = sorted(set(model.parsed.op_names) - set(supported_ops()))
    if lacking:
        pytest.skip(f"the compiled engine does not run {', '.join(lacking)} yet")
    x = random_inputs(model, n)
    engine = compile_model(model, runtime="chirale-2.0.0")
    with ThreadPoolExecutor(2) as pool:  # two builds and two QEMU runs, side by side
        engine_run = pool.submit(run_engine, engine, x, facts=chirale, toolchain=CORTEX_M4F, timeout=300)
        interpreter_run = pool.submit(run_interpreter, model, x, facts=chirale, toolchain=CORTEX_M4F, timeout=300)
        got, want = engine_run.result(), interpreter_run.result()
    np.testing.assert_array_equal(got.outputs, want.outputs)
    assert engine.activation_bytes <= want.arena_used_bytes
