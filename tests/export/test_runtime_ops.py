"""Models are checked against the TFLM runtime the firmware target links (edgekd.boards.runtime)."""

from __future__ import annotations

import pytest

from edgekd.boards import runtime as runtimes
from edgekd.errors import UnsupportedOpError
from edgekd.export.ops import per_channel_dense_layers, resolver_calls
from edgekd.flatbuffer import read_tflite


def _dense_model():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(12, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


@pytest.fixture(scope="module")
def dense_models(digits):
    from edgekd.convert import convert

    model = _dense_model()
    rep = digits.val.x[:64]
    return {pc: convert(model, mode="int8", representative_data=rep, per_channel_dense=pc)
            for pc in (True, False, None)}


def test_per_channel_dense_is_refused_where_the_runtime_lacks_it(dense_models):
    per_channel = read_tflite(dense_models[True])
    assert len(per_channel_dense_layers(per_channel)) == 2
    with pytest.raises(UnsupportedOpError, match=r"Chirale_TensorFLowLite 2\.0\.0.*per-channel.*--target arduino"):
        resolver_calls(per_channel, runtime=runtimes.for_target("arduino"))
    assert "AddFullyConnected" in resolver_calls(per_channel, runtime="esp-tflite-micro-1.4.0")


def test_per_tensor_dense_runs_everywhere_and_is_the_portable_default(dense_models):
    for fb in (read_tflite(dense_models[False]), read_tflite(dense_models[None])):
        assert per_channel_dense_layers(fb) == []
        fc_weights = [fb.tensors[op.inputs[1]] for op in fb.operators if op.op_name == "FULLY_CONNECTED"]
        assert fc_weights and all(len(t.quantization.scale) == 1 for t in fc_weights)
        for rt in runtimes.all_runtimes():
            assert resolver_calls(fb, runtime=rt)


def test_an_op_the_runtime_lacks_is_refused_naming_runtime_and_alternative(digits):
    import keras

    from edgekd.convert import convert

    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.min(t, axis=(1, 2)), name="reduce_min")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    fb = read_tflite(convert(model, mode="int8", representative_data=digits.val.x[:32]))
    assert "REDUCE_MIN" in fb.op_names
    with pytest.raises(UnsupportedOpError) as e:
        resolver_calls(fb, runtime="chirale-2.0.0")
    msg = str(e.value)
    assert "Chirale_TensorFLowLite 2.0.0" in msg and "REDUCE_MIN" in msg and "AddReduceMin" in msg
    assert "esp-tflite-micro 1.4.0 (--target esp-idf) has it" in msg
    assert "AddReduceMin" in resolver_calls(fb, runtime="esp-tflite-micro-1.4.0")


def test_render_refuses_what_the_target_runtime_computes_wrong(dense_models, digits):
    from edgekd.firmware import render

    for target, board in (("arduino", "nano33ble"), ("platformio", "esp32")):
        with pytest.raises(UnsupportedOpError, match="per-channel"):
            render(dense_models[True], board=board, target=target, samples=digits.val, arena_size=4096)
    project = render(dense_models[True], board="esp32s3", target="esp-idf", samples=digits.val, arena_size=4096)
    assert project.marker["runtime"] == "esp-tflite-micro-1.4.0"


def test_dense_quantization_choice_names_the_runtime():
    from edgekd.convert import dense_quantization

    assert dense_quantization("esp-idf").per_channel is True
    d = dense_quantization()
    assert d.per_channel is False and "Chirale_TensorFLowLite 2.0.0" in d.reason
    assert dense_quantization("arduino").per_channel is False
