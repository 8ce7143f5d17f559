"""Student blocks, builders, registry and shrink."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edgekd import students
from edgekd.convert import convert
from edgekd.errors import InvalidArgumentError, UnsupportedLayerError
from edgekd.export.ops import unsupported_ops
from edgekd.flatbuffer import read_tflite
from edgekd.profile import profile
from edgekd.students import graph


def test_make_divisible():
    assert students.make_divisible(32 * 0.5) == 16
    assert students.make_divisible(24 * 0.5) == 16   # 12 rounds to 16 (8 would be 33% below)
    assert students.make_divisible(64 * 0.25) == 16
    assert students.make_divisible(3) == 8           # minimum 8
    assert students.make_divisible(100) == 104       # nearest multiple of 8
    assert students.make_divisible(10, divisor=4, min_value=4) == 12
    with pytest.raises(InvalidArgumentError, match="value"):
        students.make_divisible(0)


def test_depthwise_separable_block_names_and_tiny_inputs():
    inp = keras.Input((1, 8, 4))
    out = students.depthwise_separable_block(inp, 16, stride=2, block_id=7)
    m = keras.Model(inp, out)
    assert [layer.name for layer in m.layers[1:]] == [
        "block7_dw", "block7_dw_bn", "block7_dw_relu", "block7_pw", "block7_pw_bn", "block7_pw_relu"]
    assert m.output_shape == (None, 1, 4, 16)  # no stride over the 1-pixel height
    assert m.get_layer("block7_dw_relu").max_value == 6.0
    with pytest.raises(InvalidArgumentError, match="stride"):
        students.depthwise_separable_block(inp, 16, stride=3)


@pytest.mark.parametrize("name", ["dense", "ds_cnn", "mobilenet_v1", "small_cnn"])
@pytest.mark.parametrize("shape", [(8, 8, 1), (96, 96, 1)])
def test_builders_tiny_and_large_inputs_output_logits(name, shape):
    model = students.get(name)(input_shape=shape, num_classes=10)
    assert model.input_shape == (None, *shape) and model.output_shape == (None, 10)
    assert type(model.layers[-1]).__name__ == "Dense" and model.layers[-1].activation.__name__ == "linear"
    assert all(d >= 1 for layer in model.layers for d in layer.output.shape[1:])


def test_numpy_ints_accepted():
    model = students.small_cnn(tuple(np.array([8, 8, 1])), np.int64(3), width=np.float32(0.5), depth=1)
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 3)


def test_width_resolution_depth_multipliers():
    base = profile(students.ds_cnn((49, 10, 1), 12))
    half = students.get("ds_cnn:width=0.5,resolution=0.5")(input_shape=(49, 10, 1), num_classes=12)
    assert half.input_shape == (None, 24, 5, 1)  # round(49*0.5) = 24 (banker's rounding of 24.5), round(5)
    assert half.get_layer("block1_pw").filters == 32  # make_divisible(64*0.5)
    assert profile(half).macs < base.macs / 6  # ~ alpha^2 * rho^2 = 1/16 for the pointwise part
    assert len(students.ds_cnn((49, 10, 1), 12, depth=2).layers) == len(students.ds_cnn((49, 10, 1), 12).layers) - 12
    mnet = students.mobilenet_v1((224, 224, 3), 1000, depth=0)  # the paper's "shallow" MobileNet
    assert not any(layer.name.startswith("block13") for layer in mnet.layers)
    up = students.get("mobilenet_v1:width=0.25,resolution=4,upsample=true")(input_shape=(8, 8, 1), num_classes=10)
    assert up.input_shape == (None, 32, 32, 1)


def test_registry_specs_and_errors():
    fn = students.get("ds_cnn:width=0.5,resolution=0.75")
    assert fn.keywords == {"width": 0.5, "resolution": 0.75}
    assert students.get({"name": "small_cnn", "depth": 3}).keywords == {"depth": 3}
    assert students.get({"class_name": "small_cnn", "config": {"width": 2}}).keywords == {"width": 2}
    assert students.parse_arch("mobilenet_v1:depth=0,upsample=true,resolution=2") == (
        "mobilenet_v1", {"depth": 0, "upsample": True, "resolution": 2})
    assert students.get(students.small_cnn) is students.small_cnn
    with pytest.raises(InvalidArgumentError, match="Valid students: dense, ds_cnn, mobilenet_v1, small_cnn"):
        students.get("resnet")
    with pytest.raises(InvalidArgumentError, match="not key=value"):
        students.parse_arch("ds_cnn:width")
    with pytest.raises(InvalidArgumentError, match="repeated"):
        students.parse_arch("ds_cnn:width=1,width=2")
    with pytest.raises(InvalidArgumentError, match="Valid options: width, resolution, depth"):
        students.get("ds_cnn:wdth=0.5")
    with pytest.raises(InvalidArgumentError, match="`width`"):
        students.get("ds_cnn:width=-1")
    with pytest.raises(InvalidArgumentError, match="upsample=True"):
        students.get("small_cnn:resolution=2")
    with pytest.raises(InvalidArgumentError, match="`depth`"):
        students.get("mobilenet_v1:depth=6")
    with pytest.raises(InvalidArgumentError, match="given when the student is built"):
        students.get("ds_cnn:num_classes=3")
    with pytest.raises(InvalidArgumentError, match="input_shape"):
        students.small_cnn((8, 8), 10)


def _teacher():
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    for i in range(3):  # a run of identical, shape-preserving blocks
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=f"rep{i}")(x)
    y = keras.layers.Conv2D(64, 1, name="skip")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="teacher")


def test_shrink_structure():
    teacher = _teacher()
    s = students.shrink(teacher, width=0.5, resolution=0.5, depth=1)
    assert s.input_shape == (None, 4, 4, 1)
    names = [layer.name for layer in s.layers]
    assert "conv1" in names  # first conv on a 1-channel image stays a full conv
    assert names[names.index("conv1") + 1:][:4] == ["block1_dw", "block1_dw_bn", "block1_dw_relu", "block1_pw"]
    assert s.get_layer("block1_pw").filters == 32 and s.get_layer("fc").units == 32
    assert s.get_layer("logits").units == 10  # the classifier keeps its width
    assert not any(n.startswith("rep") for n in names) and sum(n.endswith("_pw") for n in names) == 2  # conv2 + rep0
    assert s.output_shape == (None, 10)
    # 4x4 -> stride 2 -> 2x2 -> pool 2 -> 1x1; on a 1x1 input the pool stops striding
    tiny = students.shrink(teacher, width=0.5, resolution=0.125, separable=False)
    assert tiny.input_shape == (None, 1, 1, 1) and tiny.get_layer("pool").output.shape[1:3] == (1, 1)
    assert type(tiny.get_layer("conv2")).__name__ == "Conv2D"
    runs = students.repeated_blocks(graph.walk(teacher))
    assert [(period, reps) for _, period, reps in runs] == [(1, 3)]
    tp, sp = profile(teacher), profile(s)
    assert sp.params < tp.params / 5 and sp.macs < tp.macs / 10


def test_shrink_errors():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c")(inp)
    x = keras.layers.Reshape((36 * 4,), name="fixed_reshape")(x)
    m = keras.Model(inp, keras.layers.Dense(2)(x))
    with pytest.raises(UnsupportedLayerError, match="fixed_reshape"):
        students.shrink(m, resolution=0.5)
    seq = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(2)])
    with pytest.raises(UnsupportedLayerError, match="'lstm' \\(LSTM\\)"):
        students.shrink(seq)
    with pytest.raises(InvalidArgumentError, match="`width`"):
        students.shrink(m, width=0)
    with pytest.raises(InvalidArgumentError, match="`depth`"):
        students.shrink(m, depth=0)
    with pytest.raises(InvalidArgumentError, match="upsample"):
        students.shrink(m, resolution=2.0)


def test_shrunk_student_trains_and_converts_to_builtin_int8(digits):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    student = students.shrink(_teacher(), width=0.5, resolution=2.0, upsample=True, depth=1)
    side = student.input_shape[1]
    assert side == 16
    x = tf.image.resize(digits.train.x[:384], (side, side)).numpy()  # fed at the declared input size
    student.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = student.fit(x, digits.train.y[:384], epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(hist.history["loss"][-1])
    data = convert(student, mode="int8", representative_data=x[:32])
    fb = read_tflite(data)
    assert fb.is_full_integer and not any(n.startswith("CUSTOM") for n in fb.op_names)
    assert unsupported_ops(fb) == []
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(fb.op_names)
    assert abs(profile(data).macs - profile(student).macs) <= 0.01 * profile(data).macs


def test_builders_convert_to_tflm_ops():
    m = students.get("ds_cnn:width=0.25")(input_shape=(8, 8, 1), num_classes=4)
    fb = read_tflite(convert(m, mode="int8", representative_data=np.random.default_rng(0).uniform(
        0, 1, (8, 8, 8, 1)).astype("float32")))
    assert unsupported_ops(fb) == [] and "AVERAGE_POOL_2D" in fb.op_names


def test_get_with_options_builds_directly():
    model = students.get("small_cnn:width=0.5", depth=1, input_shape=(8, 8, 1), num_classes=3)
    assert model.output_shape == (None, 3) and model.get_layer("conv1").filters == 8
    fn = students.get("small_cnn", width=2.0)
    assert fn.keywords == {"width": 2.0}
    with pytest.raises(InvalidArgumentError, match="Unknown option 'wdth'"):
        students.get("small_cnn", wdth=2.0)


def test_shrink_sequential_teacher_with_nested_model():
    features = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(16, 3, name="f1"),
                                 keras.layers.Conv2D(32, 3, strides=2, name="f2")], name="features")
    teacher = keras.Sequential([keras.Input((16, 16, 3)), features, keras.layers.Flatten(name="flat"),
                                keras.layers.Dense(5, name="out")])
    s = students.shrink(teacher, width=0.5, resolution=0.5)
    # f1 sees 3 channels: stays a full conv (8 filters); f2 becomes block1 (dw 3x3 /2 + pw 16)
    assert s.get_layer("f1").filters == 8 and s.get_layer("block1_pw").filters == 16
    # 8x8 input: f1 valid 3x3 -> 6x6; block1 dw valid 3x3 stride 2 -> 2x2; flatten 2*2*16 = 64
    assert s.get_layer("flat").output.shape[1:] == (64,) and s.output_shape == (None, 5)
