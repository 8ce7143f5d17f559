"""Compiled engine: ADD, MUL, LOGISTIC, TANH, QUANTIZE, DEQUANTIZE, PAD, CONCATENATION, RESHAPE are bit-exact with
the interpreter built from the same TFLM tree (Chirale_TensorFLowLite's CMSIS-NN kernels, esp-tflite-micro's
reference kernels)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from tests.engine.conftest import assert_bit_exact, int8, random_inputs

keras = pytest.importorskip("keras")

RUNTIMES = {"chirale": "chirale-2.0.0", "esp": "esp-tflite-micro-1.4.0"}


def _branches(shape):
    """Input -> sigmoid, tanh (int8 outputs of fixed, different scales and zero points)."""
    i = keras.Input(shape)
    return i, keras.layers.Activation("sigmoid")(i), keras.layers.Activation("tanh")(i)


def _arithmetic():
    # ADD of two scales with a fused RELU, MUL, ADD without activation of tensors of other zero points, then ADD
    # and MUL with a constant of shape (1, 1, 3) (ProcessBroadcastShapes -> Broadcast{Add,Mul}4DSlow).
    # 5*7*3 = 105 elements: CMSIS-NN's 4-wide loop and its tail.
    c = np.random.default_rng(3).uniform(-1.0, 1.0, (1, 1, 3)).astype("float32")
    i, a, b = _branches((5, 7, 3))
    x = keras.layers.Multiply()([keras.layers.ReLU()(keras.layers.Add()([a, b])), a])
    x = keras.layers.Add()([x, i])
    x = keras.layers.Lambda(lambda t: t + c)(x)
    return keras.Model(i, keras.layers.Lambda(lambda t: c * t)(keras.layers.Activation("tanh")(x)))


def _bytes():
    # Concatenate of three scales (the converter requantizes two inputs: QUANTIZE int8 -> int8), ZeroPadding2D
    # (PadImageStyle), a padding of the channels (the generic Pad), a concatenation along the width, and Reshape
    # as the model output (the engine copies it).
    i, a, b = _branches((5, 6, 3))
    x = keras.layers.Concatenate()([a, b, i])
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 1)))(x)
    x = keras.layers.Lambda(lambda t: keras.ops.pad(t, [[0, 0], [0, 1], [0, 0], [1, 2]]))(x)
    x = keras.layers.Concatenate(axis=2)([x, x])
    return keras.Model(i, keras.layers.Reshape((-1,))(x))


MODELS = {"arithmetic": _arithmetic, "bytes": _bytes}


@pytest.fixture(scope="module")
def models():
    """The converted models (converted once for both trees)."""
    keras.utils.set_random_seed(0)
    return {name: int8(build()) for name, build in MODELS.items()}


@pytest.mark.parametrize("tree", sorted(RUNTIMES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_bit_exact(models, request, tree, name):
    facts = request.getfixturevalue(tree)
    assert_bit_exact(models[name], facts, runtime=RUNTIMES[tree])


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-g++ and qemu-system-arm")
@pytest.mark.slow  # `make test-slow`: builds the Cortex-M4 kernels of these ops; ADD under QEMU: test_qemu_models
def test_bit_exact_chirale_cortex_m4(models, chirale):
    """Under QEMU (Cortex-M4, ARM_MATH_DSP): arm_elementwise_add_s8/mul_s8's DSP branches (4 at a time)."""
    from edgekd.emulate.build import CORTEX_M4F
    from edgekd.engine import compile_model
    from edgekd.engine.build import run_engine, run_interpreter

    model = models["arithmetic"]
    x = random_inputs(model, 3)
    got = run_engine(compile_model(model, runtime=RUNTIMES["chirale"]), x, facts=chirale, toolchain=CORTEX_M4F)
    want = run_interpreter(model, x, facts=chirale, toolchain=CORTEX_M4F)
    np.testing.assert_array_equal(got.outputs, want.outputs)


def test_ops_covered(models):
    """The models exercise every op of this file's emitters (so a converter change cannot skip one silently)."""
    from edgekd.engine.graph import read_graph

    seen = {op.name for m in models.values() for op in read_graph(m).ops}
    assert {"ADD", "MUL", "LOGISTIC", "TANH", "QUANTIZE", "PAD", "CONCATENATION", "RESHAPE"} <= seen


@pytest.mark.parametrize("tree", sorted(RUNTIMES))
def test_float_io(tree, request):
    """float_io: QUANTIZE float32 -> int8 (AffineQuantize) in, DEQUANTIZE int8 -> float32 out, bit-exact."""
    from edgekd.convert import convert
    from edgekd.engine import compile_model
    from edgekd.engine.build import run_engine, run_interpreter

    facts = request.getfixturevalue(tree)
    i, a, _ = _branches((4, 5, 3))
    model = keras.Model(i, keras.layers.Activation("tanh")(a))
    rng = np.random.default_rng(5)
    cm = convert(model, mode="int8", representative_data=rng.uniform(-1, 1, (32, 4, 5, 3)).astype("float32"),
                 float_io=True)
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(cm.parsed.op_names)
    # Values across and beyond the calibrated range (AffineQuantize saturates).
    x = rng.uniform(-3, 3, (8, 4, 5, 3)).astype("float32")
    engine = compile_model(cm, runtime=RUNTIMES[tree])
    np.testing.assert_array_equal(run_engine(engine, x, facts=facts).outputs,
                                  run_interpreter(cm, x, facts=facts).outputs)


def _changed(model, op_name: str, which, **fields):
    """The graph of ``model`` with tensor ``which(op)`` of its last ``op_name`` op changed (a tensor no earlier op
    reads, so that this op is the first to see it)."""
    from edgekd.engine.graph import read_graph

    graph = read_graph(model)
    t = which([op for op in graph.ops if op.name == op_name][-1])
    tensors = list(graph.tensors)
    tensors[t] = dataclasses.replace(tensors[t], **fields)
    return dataclasses.replace(graph, tensors=tuple(tensors))


@pytest.mark.parametrize("kernels", ["cmsis-nn", "reference"])
@pytest.mark.parametrize("model,op,which,fields", [
    ("arithmetic", "ADD", lambda op: op.inputs[1], {"dtype": "INT16"}),  # the broadcast constant
    ("arithmetic", "MUL", lambda op: op.outputs[0], {"scale": (0.1, 0.2), "zero_point": (0, 0)}),
    ("arithmetic", "LOGISTIC", lambda op: op.outputs[0], {"zero_point": (0,)}),  # Prepare requires -128
    ("arithmetic", "TANH", lambda op: op.outputs[0], {"dtype": "INT16"}),
    ("bytes", "PAD", lambda op: op.outputs[0], {"dtype": "INT16"}),
    ("bytes", "PAD", lambda op: op.inputs[1], {"dtype": "INT64"}),  # TFLM reads the paddings as int32
    ("bytes", "QUANTIZE", lambda op: op.outputs[0], {"dtype": "INT64"}),
])
def test_unsupported_variants_name_the_fix(models, kernels, model, op, which, fields):
    """Variants the trees' kernels do not run raise UnsupportedOpError naming the op and the interpreter."""
    from edgekd.engine.codegen import generate
    from edgekd.errors import UnsupportedOpError

    graph = _changed(models[model], op, which, **fields)
    with pytest.raises(UnsupportedOpError, match=rf"{op}.*--engine interpreter"):
        generate(graph, kernels=kernels)


def test_prepare_parameters():
    """The host's Prepare: broadcast detection as ProcessBroadcastShapes, ADD's multipliers as add_common."""
    from edgekd.engine.ops.activations import sigmoid_tanh_params
    from edgekd.engine.ops.elementwise import add_params, needs_broadcast

    assert needs_broadcast((1, 4, 5, 3), (1, 1, 3)) and not needs_broadcast((4, 5, 3), (1, 4, 5, 3))
    p = add_params(0.5, 0.25, 0.75)  # twice_max = 1.0: input multipliers 0.5 and 0.25, output 1/(2**20 * 0.75)
    assert (p["input1_multiplier"], p["input1_shift"]) == (1 << 30, 0)
    assert (p["input2_multiplier"], p["input2_shift"]) == (1 << 30, -1)
    assert p["output_shift"] == -19 and p["output_multiplier"] == round((4 / 3) / 2 * (1 << 31))
    with pytest.raises(ValueError):
        add_params(1.0, 1.0, 1e-9)  # output multiplier >= 1: QuantizeMultiplierSmallerThanOneExp fails
    with pytest.raises(ValueError):
        sigmoid_tanh_params(1e-12)  # a negative input_left_shift
