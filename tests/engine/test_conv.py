"""The compiled engine's CONV_2D and DEPTHWISE_CONV_2D are bit-exact with the interpreter.

Each model chains several tiny convolutions with random weights and biases (no training), so that one
compile covers many variants: 3x3 SAME/VALID, stride 2, 1x1, 1xN, dilation 2, RELU/RELU6/none, channel
counts that are not multiples of 4, depth multipliers 1, 2 and 4 and odd spatial sizes. The engine and
``MicroInterpreter`` run the same random int8 inputs, both built from the same TFLM tree:
Chirale_TensorFLowLite (CMSIS-NN: ``arm_convolve_wrapper_s8``'s 1x1, 1xN and generic paths,
``arm_depthwise_conv_wrapper_s8``'s 3x3, opt and generic paths) and esp-tflite-micro (the reference
kernels). Their output bytes must be equal.
"""

from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import pytest

from edgekd.emulate.build import CORTEX_M4F
from edgekd.engine import compile_model, quant
from edgekd.engine.build import run_engine, run_interpreter
from edgekd.engine.codegen import generate
from edgekd.engine.graph import read_graph
from edgekd.errors import UnsupportedOpError
from tests.engine.conftest import assert_bit_exact, int8, random_inputs

keras = pytest.importorskip("keras")

CHIRALE, ESP = "chirale-2.0.0", "esp-tflite-micro-1.4.0"
L = keras.layers


def _model(shape, *layers, seed: int = 0):
    """A Sequential model of ``layers`` on ``shape``; each layer's weights and biases uniform in ±0.5."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape), *layers])
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    return model


def _convs():
    # 7x5x3 -> 3x3 SAME relu (5 ch) -> 3x3 SAME dilation 2 (7 ch) -> 3x3 stride 2 SAME relu6 (odd sizes: padding
    # offsets) -> 1x1 pointwise (6 ch) -> 3x3 stride 2 VALID relu.
    return _model((7, 5, 3), L.Conv2D(5, 3, padding="same", activation="relu"),
                  L.Conv2D(7, 3, padding="same", dilation_rate=2),
                  L.Conv2D(9, 3, strides=2, padding="same", activation="relu6"),
                  L.Conv2D(6, 1), L.Conv2D(4, 3, strides=2, padding="valid", activation="relu"), seed=1)


def _convs_1xn():
    # Height 1, output width % 4 == 0, 1xN filters: Chirale's arm_convolve_1_x_n_s8 (then 1x1 on a 1x8 map); a
    # RESHAPE to an odd 4x2 map, then a MobileNet-like block: depthwise stride 2 SAME, pointwise, 3x3 SAME.
    return _model((1, 8, 3), L.Conv2D(5, (1, 3), padding="same", activation="relu"),
                  L.Conv2D(3, (1, 5), padding="same"), L.Conv2D(6, 1, activation="relu6"), L.Reshape((4, 2, 6)),
                  L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6"),
                  L.Conv2D(8, 1, activation="relu6"), L.Conv2D(5, 3, padding="same"), seed=2)


def _depthwise():
    # 7x5x6 -> dw 3x3 SAME relu (CMSIS 3x3 path) -> dw 5x5 SAME (opt path: padding 2) -> dw 3x3 stride 2 VALID
    # dm 2 relu6 (generic) -> dw 3x3 SAME dilation 2 (generic) -> dw 1x1 dm 4 (ch_mult % 4 == 0 path).
    return _model((7, 5, 6), L.DepthwiseConv2D(3, padding="same", activation="relu"),
                  L.DepthwiseConv2D(5, padding="same"),
                  L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu6"),
                  L.DepthwiseConv2D(3, padding="same", dilation_rate=2), L.DepthwiseConv2D(1, depth_multiplier=4),
                  seed=3)


MODELS = {"convs": _convs, "convs_1xn": _convs_1xn, "depthwise": _depthwise}


@pytest.fixture(scope="module")
def converted():
    """Each model converted once (int8, per-channel conv weights)."""
    return {name: int8(build()) for name, build in MODELS.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bit_exact_chirale(converted, chirale, name):
    assert_bit_exact(converted[name], chirale, runtime=CHIRALE)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bit_exact_esp(converted, esp, name):
    assert_bit_exact(converted[name], esp, runtime=ESP)


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-g++ and qemu-system-arm")
@pytest.mark.parametrize("name", ["convs", pytest.param("depthwise", marks=pytest.mark.slow)])  # DS-CNN: qemu_models
def test_bit_exact_chirale_cortex_m4(converted, chirale, name):
    """Under QEMU (Cortex-M4, ARM_MATH_DSP): CMSIS-NN's DSP branches, with the larger context buffers."""
    x = random_inputs(converted[name], 3)
    got = run_engine(compile_model(converted[name], runtime=CHIRALE), x, facts=chirale, toolchain=CORTEX_M4F)
    want = run_interpreter(converted[name], x, facts=chirale, toolchain=CORTEX_M4F)
    np.testing.assert_array_equal(got.outputs, want.outputs)


def _c_array(source: str, symbol: str) -> list[int]:
    body = re.search(rf"\b{symbol}\[\d+\] = \{{(.*?)\}};", source, re.S)
    assert body is not None, f"{symbol} is not in the generated source"
    return [int(v) for v in body.group(1).replace("\n", " ").split(",") if v.strip()]


@pytest.mark.parametrize("runtime", [CHIRALE, ESP])
def test_source_holds_per_channel_multipliers(converted, runtime):
    """The emitted multipliers and shifts are PopulateConvolutionQuantizationParams' (quant's port)."""
    model = converted["convs_1xn"]
    graph = read_graph(model)
    source = compile_model(model, runtime=runtime).files["model_engine.cc"]
    convs = [op for op in graph.ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 6
    for op in convs:
        inp, filt, out = (graph.tensor(i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        channels = filt.shape[3 if op.name == "DEPTHWISE_CONV_2D" else 0]
        mults, shifts = quant.per_channel_multipliers(inp.scale[0], filt.scale, out.scale[0], channels)
        assert len(set(mults)) > 1  # per-channel weights: the channels differ
        assert _c_array(source, f"g_op{op.index}_multiplier") == mults
        assert _c_array(source, f"g_op{op.index}_shift") == shifts


def test_cmsis_scratch_checked_at_init(converted):
    """A conv with a CMSIS-NN context buffer gets a planned scratch buffer and an init check of its size."""
    engine = compile_model(converted["convs"], runtime=CHIRALE)
    source = engine.files["model_engine.cc"]
    # op 0 (3x3, 3 input channels): arm_convolve_s8_get_buffer_size = 2 * 3 * 3 * 3 * sizeof(int16_t).
    assert "arm_convolve_wrapper_s8_get_buffer_size(&g_op0_params" in source
    assert re.search(r"g_op0_dims\[3\]\) > 108\) return 1;", source)
    assert 0 in engine.plan.scratch_offsets
    # op 3 (1x1, stride 1, no padding): arm_convolve_1x1_s8_fast needs no buffer.
    assert re.search(r"g_op3_dims\[3\]\) > 0\) return 4;", source)
    assert 3 not in engine.plan.scratch_offsets


def _retyped(model, tensor_of, dtype):
    graph = read_graph(model)
    t = tensor_of(graph)
    tensors = list(graph.tensors)
    tensors[t] = dataclasses.replace(tensors[t], dtype=dtype)
    return dataclasses.replace(graph, tensors=tuple(tensors))


@pytest.mark.parametrize("kernels", ["cmsis-nn", "reference"])
@pytest.mark.parametrize("what,tensor_of,dtype", [
    ("int16 activations", lambda g: g.ops[0].inputs[0], "INT16"),
    ("int4 weights", lambda g: g.ops[0].inputs[1], "INT4"),
    ("float input (hybrid)", lambda g: g.ops[0].inputs[0], "FLOAT32"),
])
def test_unsupported_variants_name_the_fix(converted, kernels, what, tensor_of, dtype):
    graph = _retyped(converted["depthwise"], tensor_of, dtype)
    with pytest.raises(UnsupportedOpError, match=r"DEPTHWISE_CONV_2D.*--engine interpreter"):
        generate(graph, kernels=kernels)
