"""Hand-computed params/MACs/bytes per layer type, peak RAM on a branching graph, rendering."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import keras
import pytest

from edgekd.errors import InvalidArgumentError, TFLiteFileError
from edgekd.profile import live_bytes, peak_live_bytes, print_comparison, print_profile, profile


def _row(layer, input_shape, inputs=1):
    """Profile row of ``layer`` applied to ``inputs`` fresh inputs of ``input_shape``."""
    ins = [keras.Input(input_shape) for _ in range(inputs)]
    out = layer(ins[0] if inputs == 1 else ins)
    p = profile(keras.Model(ins, out))
    return p.layer(layer.name), p


def test_conv2d_same():
    r, _ = _row(keras.layers.Conv2D(4, 3, padding="same", name="c"), (8, 8, 3))
    # output 8x8x4 = 256 elements, each 3*3*3 = 27 multiply-adds -> 6912
    assert r.macs == 6912
    # kernel 3*3*3*4 = 108 + bias 4 = 112; int8: 108 B kernel + 4*4 B int32 bias = 124
    assert (r.params, r.weight_bytes_f32, r.weight_bytes_int8) == (112, 448, 124)
    assert (r.activation_bytes, r.activation_bytes_f32, r.output_shape) == (256, 1024, (1, 8, 8, 4))


def test_conv2d_strided_valid_without_bias():
    r, _ = _row(keras.layers.Conv2D(4, 3, strides=2, use_bias=False, name="c"), (8, 8, 3))
    # output side floor((8-3)/2)+1 = 3 -> 3*3*4 = 36 elements * 27 = 972
    assert r.macs == 972 and r.output_shape == (1, 3, 3, 4)
    # 108 params; int8 adds the int32 bias TFLite emits: 108 + 16 = 124
    assert (r.params, r.weight_bytes_int8) == (108, 124)


def test_depthwise_conv2d():
    r, p = _row(keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="d"), (8, 8, 3))
    # output 8x8x6 = 384 elements, each 3*3 = 9 multiply-adds -> 3456
    assert r.macs == 3456 and r.kind == "depthwise"
    # kernel 3*3*3*2 = 54 + bias 6 = 60
    assert r.params == 60
    assert p.macs_by_kind["depthwise"] == 3456


def test_separable_conv2d_splits_depthwise_and_pointwise():
    r, p = _row(keras.layers.SeparableConv2D(5, 3, padding="same", name="s"), (8, 8, 3))
    # depthwise: 8*8*3 outputs * 9 = 1728; pointwise: 8*8*5 outputs * 3 = 960; total 2688
    assert r.macs == 2688
    assert p.macs_by_kind == {"conv": 960, "depthwise": 1728, "fully_connected": 0, "other": 0}
    # params: depthwise 27 + pointwise 15 + bias 5 = 47
    assert r.params == 47


def test_dense_and_softmax_activation():
    r, _ = _row(keras.layers.Dense(7, name="fc"), (10,))
    assert (r.macs, r.params, r.kind) == (70, 77, "fully_connected")  # 10*7 MACs; 70 weights + 7 biases
    r, _ = _row(keras.layers.Dense(7, activation="softmax", name="fc2"), (10,))
    assert r.macs == 77  # 70 + one op per softmax output (7)


def test_conv2d_transpose():
    r, _ = _row(keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", name="t"), (4, 4, 3))
    # each of the 4*4*3 = 48 input elements scatters into 3*3*2 = 18 outputs -> 864
    assert r.macs == 864 and r.output_shape == (1, 8, 8, 2)
    assert r.params == 3 * 3 * 2 * 3 + 2  # 56


def test_batchnorm_folded_after_conv_and_standalone():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="c")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    y = keras.layers.BatchNormalization(name="bn_alone")(inp)
    p = profile(keras.Model(inp, [x, y]))
    bn, alone, conv = p.layer("bn"), p.layer("bn_alone"), p.layer("c")
    # 4 vectors (gamma, beta, mean, variance) of 4 channels; folded into the conv: 0 MACs, 0 bytes, no tensor
    assert (bn.params, bn.macs, bn.weight_bytes_int8, bn.activation_bytes) == (16, 0, 0, 0)
    # standalone on 8x8x3 = 192 elements: MUL + ADD per element = 384; 2*3 constants
    assert (alone.params, alone.macs, alone.weight_bytes_int8) == (12, 384, 6)
    # inference params: conv 12 kernel + 4 folded biases; standalone BN 6 constants
    assert conv.params == 12 and p.inference_params == 12 + 4 + 6
    assert p.params == 12 + 16 + 12


@pytest.mark.parametrize("layer, macs, shape", [
    (keras.layers.MaxPooling2D(2, name="l"), 48 * 4, (1, 4, 4, 3)),      # 4*4*3 outputs, 2*2 window
    (keras.layers.AveragePooling2D(2, name="l"), 48 * 4, (1, 4, 4, 3)),
    (keras.layers.GlobalAveragePooling2D(name="l"), 192, (1, 3)),       # one add per input element
    (keras.layers.GlobalMaxPooling2D(name="l"), 192, (1, 3)),
    (keras.layers.ReLU(6.0, name="l"), 0, (1, 8, 8, 3)),                 # fuses into the producer
    (keras.layers.Activation("sigmoid", name="l"), 192, (1, 8, 8, 3)),   # one op per element
    (keras.layers.Flatten(name="l"), 0, (1, 192)),
    (keras.layers.ZeroPadding2D(1, name="l"), 0, (1, 10, 10, 3)),
    (keras.layers.UpSampling2D(2, name="l"), 0, (1, 16, 16, 3)),         # nearest: copies only
    (keras.layers.Dropout(0.5, name="l"), 0, (1, 8, 8, 3)),
])
def test_weightless_layers(layer, macs, shape):
    r, _ = _row(layer, (8, 8, 3))
    assert (r.macs, r.params, r.output_shape) == (macs, 0, shape)


def test_merge_layers():
    r, _ = _row(keras.layers.Add(name="add"), (8, 8, 3), inputs=3)
    assert r.macs == 2 * 192  # two adds per output element for three operands
    r, _ = _row(keras.layers.Multiply(name="mul"), (8, 8, 3), inputs=2)
    assert r.macs == 192
    r, _ = _row(keras.layers.Concatenate(name="cat"), (8, 8, 3), inputs=2)
    assert (r.macs, r.output_shape, r.activation_bytes) == (0, (1, 8, 8, 6), 384)


def _branch_model():
    inp = keras.Input((8, 8, 1), name="in")
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(4, 1, name="b")(a)
    c = keras.layers.Conv2D(4, 3, padding="same", name="c")(b)
    d = keras.layers.Add(name="d")([a, c])
    e = keras.layers.GlobalAveragePooling2D(name="e")(d)
    f = keras.layers.Dense(3, name="f")(e)
    return keras.Model(inp, f)


def test_peak_ram_branch_hand_computed():
    p = profile(_branch_model())
    # int8 bytes: in 64, a/b/c/d 256 each, e 4, f 3. `a` lives until the Add (skip branch).
    # step a: in + a = 320; step b: a + b = 512 (in freed); step c: a + b + c = 768;
    # step d: a + c + d = 768; step e: d + e = 260; step f: e + f = 7  -> peak 768, first at `c`.
    assert p.peak_ram_bytes == 768
    assert p.peak_ram_f32_bytes == 4 * 768
    assert p.peak_ram_at == "c"
    assert sum(r.activation_bytes for r in p.layers) + 64 == 1095  # the naive sum is much higher


def test_peak_live_bytes_model():
    # two steps: t0 -> t1, t1 -> t2; t0 is a graph input read at step 0 only
    assert peak_live_bytes([((0,), (1,)), ((1,), (2,))], {0: 10, 1: 20, 2: 5}, (0,), (2,)) == (30, 0)
    # a graph output produced first stays live until the end
    assert peak_live_bytes([((0,), (1,)), ((0,), (2,))], {0: 10, 1: 20, 2: 5}, (0,), (1, 2)) == (35, 1)
    # the per-step figures behind the peak (edgekd check's per-layer RAM column reads them)
    assert live_bytes([((0,), (1,)), ((0,), (2,))], {0: 10, 1: 20, 2: 5}, (0,), (1, 2)) == [30, 35]


def test_tflite_profile_carries_live_bytes_per_op(small_cnn_tflite):
    from edgekd.model import ConvertedModel

    p = profile(small_cnn_tflite[1])
    assert len(p.live_bytes) == len(p.layers) and max(p.live_bytes) == p.peak_ram_bytes
    assert p.layers[p.live_bytes.index(p.peak_ram_bytes)].name == p.peak_ram_at
    assert profile(ConvertedModel.coerce(small_cnn_tflite[0])) == dataclasses.replace(p, name="small_cnn_int8.tflite")


def test_rendering_json_csv_print_fn():
    p = profile(_branch_model())
    d = json.loads(p.to_json())
    assert d["macs"] == p.macs and d["peak_ram_bytes"] == 768
    assert set(d["macs_by_kind"]) == {"conv", "depthwise", "fully_connected", "other"}
    assert d["layers"][0]["op_type"] == "Conv2D"
    rows = list(csv.DictReader(io.StringIO(p.to_csv())))
    assert [r["name"] for r in rows] == ["a", "b", "c", "d", "e", "f"]
    assert sum(int(r["macs"]) for r in rows) == p.macs
    out = []
    print_profile(p, print_fn=out.append)
    assert len(out) == 1 and "Conv2D" in out[0] and f"{p.macs:,}" in out[0]
    out.clear()
    print_comparison(p, p, print_fn=out.append)
    assert "1.000×" in out[0]


def test_macs_by_kind_sum_to_total():
    p = profile(_branch_model())
    k = p.macs_by_kind
    # a: 256 outputs * 3*3*1 = 2304; b: 256 * 1*1*4 = 1024; c: 256 * 3*3*4 = 9216 -> conv 12544;
    # f: 4*3 = 12; add 256 + gap 256 = 512
    assert k == {"conv": 12544, "depthwise": 0, "fully_connected": 12, "other": 512}
    assert sum(k.values()) == p.macs


def test_sequential_nested_and_errors(tmp_path):
    seq = keras.Sequential([keras.layers.Conv2D(2, 3, name="c"), keras.layers.Flatten(name="fl")])
    with pytest.raises(InvalidArgumentError, match="input_shape"):
        profile(seq)
    p = profile(seq, input_shape=(5, 5, 1))
    assert p.layer("c").macs == 3 * 3 * 2 * 9  # 3x3x2 outputs, 9 MACs each
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_fc")], name="sub")
    inp = keras.Input((4,))
    outer = keras.Model(inp, keras.layers.Dense(2, name="head")(inner(inp)))
    p = profile(outer)
    assert [r.name for r in p.layers] == ["sub/inner_fc", "head"] and p.macs == 12 + 6
    with pytest.raises(InvalidArgumentError, match="model_or_tflite"):
        profile(42)
    with pytest.raises(InvalidArgumentError, match="load_model"):
        profile(str(tmp_path / "m.keras"))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TFLiteFileError):
        profile(str(bad))
    with pytest.raises(InvalidArgumentError, match="input_shape"):
        profile(seq, input_shape=(0, 5, 1))


def test_legacy_tf_keras_model(tmp_path):
    """A tf-keras object is refused with the fix; its .h5, loaded as Keras 3 by edgekd, profiles."""
    from edgekd.convert import load_model
    from edgekd.errors import InvalidArgumentError

    tf_keras = pytest.importorskip("tf_keras")
    inp = tf_keras.Input((8, 8, 1))
    x = tf_keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    legacy = tf_keras.Model(inp, tf_keras.layers.Dense(3)(x))
    with pytest.raises(InvalidArgumentError, match="edgekd.convert.load_model"):
        profile(legacy)
    legacy.save(tmp_path / "legacy.h5")
    p = profile(load_model(str(tmp_path / "legacy.h5")))
    # conv 8*8*4 outputs * 9 = 2304; GAP 256 input elements; dense 4*3 = 12
    assert p.macs == 2304 + 256 + 12 and p.params == 40 + 15


def test_saved_student_profiles_the_same(tmp_path):
    from edgekd import students

    model = students.get("ds_cnn:width=0.25,depth=2")(input_shape=(8, 8, 1), num_classes=4)
    path = tmp_path / "s.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert profile(loaded).to_dict() | {"name": ""} == profile(model).to_dict() | {"name": ""}
