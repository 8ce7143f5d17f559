"""Outputs overlapping their inputs (raster-order kernels): bit-exact with TFLM's interpreter on both trees, on the
host and under QEMU's Cortex-M4F, with the plan really overlapping and smaller; and a distance one output row
shorter than the rule's breaks bit-exactness (the rule is needed, and its bound is tight enough to matter)."""

from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import pytest

from edgekd.engine import compile_model, read_graph
from edgekd.engine.build import run_engine, run_interpreter
from edgekd.engine.plan import plan_memory
from tests.engine.conftest import int8, random_inputs

RUNTIMES = {"chirale": "chirale-2.0.0", "esp": "esp-tflite-micro-1.4.0"}


def _dscnn():
    """DS-CNN-like: conv (5x3, stride 2) to 16 channels, depthwise 3x3 + pointwise to 8, depthwise 5x5 (CMSIS-NN's
    opt path) + pointwise, average pool."""
    import keras

    x = keras.Input((17, 6, 1))
    y = keras.layers.Conv2D(16, (5, 3), strides=2, padding="same", activation="relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(8, 1, activation="relu")(y)
    y = keras.layers.DepthwiseConv2D(5, padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(8, 1, activation="relu")(y)
    y = keras.layers.AveragePooling2D((9, 3))(y)
    return keras.Model(x, keras.layers.Dense(5)(keras.layers.Flatten()(y)))


def _resnet():
    """ResNet-like: two residual blocks (3x3 convs; the second with stride 2 and a 1x1 stride-2 shortcut)."""
    import keras

    x = keras.Input((10, 6, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    y = keras.layers.Conv2D(8, 3, padding="same")(y)
    h = keras.layers.Add()([h, y])
    y = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu")(h)
    y = keras.layers.Conv2D(12, 3, padding="same")(y)
    h = keras.layers.Add()([keras.layers.Conv2D(12, 1, strides=2)(h), y])
    return keras.Model(x, keras.layers.Dense(4)(keras.layers.Flatten()(keras.layers.AveragePooling2D((5, 3))(h))))


def _raster():
    """A tall, narrow chain: average pool, depthwise 5x5, depthwise with multiplier 2, max pool, conv stride 2."""
    import keras

    x = keras.Input((24, 3, 1))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.AveragePooling2D(3, strides=1, padding="same")(y)
    y = keras.layers.DepthwiseConv2D(5, padding="same", activation="relu")(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(y)
    y = keras.layers.MaxPooling2D(3, strides=1, padding="same")(y)
    y = keras.layers.Conv2D(6, 3, strides=2, padding="valid", activation="relu")(y)
    return keras.Model(x, keras.layers.Dense(4)(keras.layers.Flatten()(y)))


# The ops each plan must overlap (kernel paths: CMSIS-NN 3x3 / opt / generic depthwise, im2col conv, pools).
MODELS = {
    "dscnn": (_dscnn, {"chirale": {"DEPTHWISE_CONV_2D"}, "esp": {"DEPTHWISE_CONV_2D", "CONV_2D"}}),
    "resnet": (_resnet, {"chirale": {"CONV_2D"}, "esp": {"CONV_2D"}}),
    "raster": (_raster, {"chirale": {"AVERAGE_POOL_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "CONV_2D"},
                         "esp": {"AVERAGE_POOL_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"}}),
}
_CACHE: dict = {}


def _model(name: str):
    if name not in _CACHE:
        import keras

        keras.utils.set_random_seed(7)
        _CACHE[name] = int8(MODELS[name][0](), per_channel_dense=False)
    return _CACHE[name]


def _without_overlap(engine) -> int:
    """The same plan (scratch, aliases, in-place ops) with no output allowed over its input."""
    graph = read_graph(engine.model)
    scratch = {int(b.name[7:]): b.size for b in engine.plan.buffers if b.name.startswith("scratch")}
    aliases = {op.outputs[0]: op.inputs[0] for op in graph.ops
               if op.name == "RESHAPE" and engine.plan.offsets[op.outputs[0]] == engine.plan.offsets[op.inputs[0]]}
    return plan_memory(graph, scratch=scratch, aliases=aliases, in_place=engine.plan.in_place).total_bytes


@pytest.mark.parametrize("tree", sorted(RUNTIMES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_overlapping_plan_is_bit_exact_on_the_host(name, tree, request):
    facts = request.getfixturevalue(tree)
    model = _model(name)
    engine = compile_model(model, runtime=RUNTIMES[tree])
    names = dict(engine.ops)
    overlapped = engine.plan.overlapped()
    assert MODELS[name][1][tree] <= {names[k] for k in overlapped}, engine.plan.report()
    for k in overlapped:  # at least the declared distance
        t, u, d = engine.plan.overlaps[k]
        assert engine.plan.offsets[t] - engine.plan.offsets[u] >= d > 0
    assert engine.plan.total_bytes < _without_overlap(engine)
    x = random_inputs(model)
    np.testing.assert_array_equal(run_engine(engine, x, facts=facts).outputs,
                                  run_interpreter(model, x, facts=facts).outputs)


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-g++ and qemu-system-arm (make sysdeps)")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_overlapping_plan_is_bit_exact_under_qemu(name, chirale):
    """CMSIS-NN's DSP paths (im2col conv, depthwise 3x3/opt/generic, pools) on QEMU's Cortex-M4F."""
    from edgekd.emulate.build import CORTEX_M4F

    model = _model(name)
    engine = compile_model(model, runtime=RUNTIMES["chirale"])
    assert engine.plan.overlapped()
    x = random_inputs(model, 4)
    np.testing.assert_array_equal(run_engine(engine, x, facts=chirale, toolchain=CORTEX_M4F).outputs,
                                  run_interpreter(model, x, facts=chirale, toolchain=CORTEX_M4F).outputs)


def _moved(engine, k: int, distance: int):
    """``engine`` with op ``k``'s input and output moved to fresh bytes above the planned buffer, the output
    starting exactly ``distance`` bytes below the input (the generated offsets rewritten; nothing else moves,
    and the activation buffer grows to hold them)."""
    plan = engine.plan
    t, u, _ = plan.overlaps[k]
    top = -(-plan.total_bytes // 16) * 16
    src, dst = (next(b for b in plan.buffers if v in b.tensors) for v in (t, u))
    # An esp-nn engine holds ESP-NN variants after its reference variant (engine.plan's): edit that one.
    source, sep, variants = engine.files["model_engine.cc"].partition("\n#elif ")
    for buf, at in ((dst, top), (src, top + distance)):
        for v in buf.tensors:
            source, n = re.subn(rf"constexpr size_t kT{v} = \d+;", f"constexpr size_t kT{v} = {at};", source)
            assert n == 1
    size = max(top + dst.size, top + distance + src.size)
    source, n = re.subn(r"constexpr size_t kActivationBytes = \d+;", f"constexpr size_t kActivationBytes = {size};",
                        source)
    assert n == 1
    return dataclasses.replace(engine, files={**engine.files, "model_engine.cc": source + sep + variants})


@pytest.mark.parametrize("tree", sorted(RUNTIMES))
def test_a_distance_one_row_short_of_the_rule_breaks_bit_exactness(tree, request):
    """The first depthwise 3x3 (stride 1, SAME) of the DS-CNN-like model: its rule distance is two output rows.
    At exactly that distance the outputs stay bit-exact; one row less, output pixel (y, x) lands on input pixel
    (y - 1, x) before output pixel (y, x + 1) has read it, and the outputs differ."""
    facts = request.getfixturevalue(tree)
    model = _model("dscnn")
    engine = compile_model(model, runtime=RUNTIMES[tree])
    graph = read_graph(model)
    k = next(op.index for op in graph.ops if op.name == "DEPTHWISE_CONV_2D")
    assert k in engine.plan.overlapped()
    _, u, d = engine.plan.overlaps[k]
    row = graph.tensor(u).shape[2] * graph.tensor(u).shape[3]
    assert d == 2 * row
    x = random_inputs(model)
    want = run_interpreter(model, x, facts=facts).outputs
    np.testing.assert_array_equal(run_engine(_moved(engine, k, d), x, facts=facts).outputs, want)
    short = run_engine(_moved(engine, k, d - row), x, facts=facts).outputs
    assert not np.array_equal(short, want)
