"""edgekd.convert.load_model: .keras, .h5 (incl. tf.keras 2 files Keras 3 rejects), SavedModel."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgekd.convert import convert, load_model
from edgekd.errors import ModelLoadError
from edgekd.flatbuffer import read_tflite


def test_keras_and_h5_roundtrip(small_cnn, tmp_path, digits):
    for name in ("m.keras", "m.h5"):
        path = tmp_path / name
        small_cnn.save(path)
        loaded = load_model(str(path))
        np.testing.assert_allclose(loaded.predict(digits.test.x[:8], verbose=0),
                                   small_cnn.predict(digits.test.x[:8], verbose=0), atol=1e-5)


def test_legacy_tf_keras_h5_with_depthwise_groups(tmp_path, digits):
    """tf.keras 2 writes `groups` into DepthwiseConv2D configs; Keras 3 refuses it; edgekd falls back."""
    import keras
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    legacy = tf_keras.Sequential([
        tf_keras.layers.InputLayer(input_shape=(8, 8, 1)),
        tf_keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=4),
        tf_keras.layers.ReLU(6.0),
        tf_keras.layers.GlobalAveragePooling2D(),
        tf_keras.layers.Dense(10),
    ])
    path = str(tmp_path / "legacy.h5")
    legacy.save(path)
    import h5py

    with h5py.File(path, "r") as f:
        assert '"groups"' in f.attrs["model_config"]  # the very config Keras 3 rejects
    with pytest.raises(Exception):
        keras.saving.load_model(path, compile=False)
    model = load_model(path)
    assert isinstance(model, keras.Model)  # Keras 3, not the tf-keras model
    np.testing.assert_allclose(model.predict(digits.test.x[:8], verbose=0),
                               legacy.predict(digits.test.x[:8], verbose=0), atol=1e-5)
    assert read_tflite(convert(model, representative_data=digits.val.x)).is_full_integer


def test_savedmodel_directory(small_cnn, tmp_path, digits):
    path = str(tmp_path / "sm")
    small_cnn.export(path, verbose=False)
    model = load_model(path)
    np.testing.assert_allclose(model.predict(digits.test.x[:4], verbose=0),
                               small_cnn.predict(digits.test.x[:4], verbose=0), atol=1e-5)
    fb = read_tflite(convert(path, representative_data=digits.val.x))
    assert fb.is_full_integer and fb.input_tensors[0].shape == (1, 8, 8, 1)


def test_in_memory_model_passes_through(small_cnn):
    assert load_model(small_cnn) is small_cnn


@pytest.mark.parametrize("content, name, match", [
    (None, "missing.keras", "not found"),
    (b"not a zip", "bad.keras", "not a valid .keras"),
    (b"\x89HDF\r\n garbage", "bad.h5", "not a valid HDF5"),
    (b"x", "model.onnx", "extension .onnx"),
])
def test_bad_model_files(tmp_path, content, name, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load_model(str(path))


def test_weights_only_h5_is_not_a_model(small_cnn, tmp_path):
    path = tmp_path / "w.weights.h5"
    small_cnn.save_weights(path)
    renamed = tmp_path / "w.h5"
    path.rename(renamed)
    with pytest.raises(ModelLoadError, match="holds no model"):
        load_model(str(renamed))


# --- legacy files come back as the same Keras 3 model for every stage ----------------------------------------


def test_legacy_h5_with_batchnorm_and_depthwise_is_a_keras3_model(tmp_path, digits):
    """tf.keras 2 lists trainable weights first; a BN + DepthwiseConv2D model (MLPerf VWW-like) must not come
    back as the tf-keras model (the profiler then read `kernel` on a tf-keras DepthwiseConv2D and crashed)."""
    import keras
    import tf_keras

    from edgekd.profile import profile

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    legacy = tf_keras.Sequential([
        L.InputLayer(input_shape=(8, 8, 1)), L.Conv2D(8, 3, padding="same", use_bias=False),
        L.BatchNormalization(), L.ReLU(6.0), L.DepthwiseConv2D(3, padding="same"), L.BatchNormalization(),
        L.ReLU(6.0), L.SeparableConv2D(8, 3, padding="same"), L.AveragePooling2D(), L.Flatten(),
        L.Dense(10, activation="softmax"),
    ])
    # non-trivial BN statistics, so a weight mix-up shows in the outputs
    legacy.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    legacy.fit(digits.train.x[:128], digits.train.y[:128], epochs=1, verbose=0)
    path = str(tmp_path / "vww_like.h5")
    legacy.save(path)
    model = load_model(path)
    assert isinstance(model, keras.Model) and type(model).__module__.startswith("keras.")
    np.testing.assert_allclose(model.predict(digits.test.x[:16], verbose=0),
                               legacy.predict(digits.test.x[:16], verbose=0), atol=1e-5)
    p = profile(model)
    assert p.macs > 0 and not p.unsupported
    assert {r.op_type for r in p.layers} >= {"DepthwiseConv2D", "SeparableConv2D", "BatchNormalization"}


def test_legacy_groups_other_than_one_are_not_dropped(tmp_path):
    from edgekd.convert.loading import _strip_legacy_keys

    config = {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1, "kernel_size": [3, 3]}}
    assert "groups" not in _strip_legacy_keys(config)["config"]
    grouped = {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 2}}
    assert _strip_legacy_keys(grouped)["config"]["groups"] == 2  # would change the layer: Keras 3 must refuse
    conv = {"class_name": "Conv2D", "config": {"name": "c", "groups": 1}}
    assert _strip_legacy_keys(conv)["config"]["groups"] == 1  # Keras 3's Conv2D takes groups


# --- safe mode: what needs code is refused before any loader runs --------------------------------------------


def _dense(**extra):
    return {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2, **extra},
            "registered_name": None}


@pytest.mark.parametrize("obj, fragment", [
    ({"class_name": "Lambda", "config": {"name": "lam", "function": "x"}}, "Lambda layer 'lam'"),
    ({"class_name": "TFOpLambda", "config": {"name": "tf.math.add", "function": "math.add"}}, "TFOpLambda"),
    ({"module": "keras.layers", "class_name": "TFSMLayer", "config": {"name": "sm", "filepath": "/x"}},
     "TFSMLayer"),
    ({"module": "my_layers", "class_name": "Dense", "config": {"name": "d"}}, "module 'my_layers'"),
    ({"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}, "registered_name": "pkg>Dense"},
     "registered custom class 'pkg>Dense'"),
    ({"class_name": "MyBlock", "config": {"name": "b"}}, "'MyBlock'"),
    (_dense(activation={"module": "builtins", "class_name": "function", "config": "my_act",
                        "registered_name": "function"}), "'my_act'"),
    (_dense(activation={"module": "os", "class_name": "function", "config": "system",
                        "registered_name": "function"}), "module 'os'"),
    (_dense(kernel_initializer={"class_name": "__lambda__", "config": {"code": "x"}}), "lambda"),
    ({"module": "keras.layers", "class_name": "StringLookup",
      "config": {"name": "lookup", "vocabulary": "/etc/passwd"}}, "reads the file '/etc/passwd'"),
    ({"class_name": "Layer", "config": {"name": "base"}}, "'Layer'"),
])
def test_config_objects_that_need_code(obj, fragment):
    from edgekd.convert._vet import config_problems

    model = {"module": "keras", "class_name": "Sequential", "config": {"name": "m", "layers": [_dense(), obj]}}
    problems = config_problems(model)
    assert len(problems) == 1 and fragment in problems[0], problems


def test_builtin_configs_need_no_code(small_cnn, tmp_path):
    from edgekd.convert._vet import config_problems, needs_code

    relu = {"module": "builtins", "class_name": "function", "config": "relu", "registered_name": "function"}
    custom_loss = {"module": "builtins", "class_name": "function", "config": "my_loss", "registered_name": "function"}
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [_dense(activation=relu)]},
              "compile_config": {"loss": custom_loss}}  # not loaded: edgekd loads with compile=False
    assert config_problems(config) == []
    for name in ("m.keras", "m.h5"):
        small_cnn.save(tmp_path / name)
        assert needs_code(str(tmp_path / name)) is None
    sm = str(tmp_path / "sm")
    small_cnn.export(sm, verbose=False)
    assert needs_code(sm) is None


def test_refusal_comes_before_any_loader_and_opt_in_loads(tmp_path, digits):
    import keras

    from edgekd.errors import UnsafeModelError
    from tests.cli._payloads import keras3_lambda, legacy_lambda_h5, writefile_savedmodel

    marker = str(tmp_path / "MARKER")
    paths = [legacy_lambda_h5(str(tmp_path / "legacy.h5"), marker), keras3_lambda(str(tmp_path / "k3.keras"), marker),
             writefile_savedmodel(str(tmp_path / "sm"), marker)]
    for path in paths:
        with pytest.raises(UnsafeModelError, match="needs code to load") as info:
            load_model(path)
        assert "safe_mode=False" in str(info.value) and "--unsafe" not in str(info.value)
        with pytest.raises(UnsafeModelError):
            convert(path, representative_data=digits.val.x)
        assert not os.path.exists(marker), path
    # opted in, the legacy file loads, as a Keras 3 model, and its code runs
    model = load_model(paths[0], safe_mode=False)
    assert isinstance(model, keras.Model) and os.path.exists(marker)
    assert model.predict(digits.test.x[:2], verbose=0).shape == (2, 10)


def test_savedmodel_ops_unknown_or_python_are_refused(tmp_path):
    """An op TensorFlow does not know (a custom kernel) or a Python callback is refused, by graph inspection."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from edgekd.convert._vet import savedmodel_problems

    class Py(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": tf.py_function(lambda t: t * 2.0, [x], tf.float32)}

    m = Py()
    path = str(tmp_path / "py")
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
    assert any("EagerPyFunc" in p for p in savedmodel_problems(path))
    # rename an op of a clean SavedModel to one no registry has
    clean = str(tmp_path / "clean")

    class Clean(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": tf.nn.relu(x)}

    c = Clean()
    tf.saved_model.save(c, clean, signatures={"serving_default": c.serve})
    assert savedmodel_problems(clean) == []
    pb = os.path.join(clean, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        sm.ParseFromString(f.read())
    for fn in sm.meta_graphs[0].graph_def.library.function:
        for node in fn.node_def:
            if node.op == "Relu":
                node.op = "EvilCustomOp"
    with open(pb, "wb") as f:
        f.write(sm.SerializeToString())
    assert savedmodel_problems(clean) == ["the unknown TensorFlow op EvilCustomOp"]


def test_convert_names_what_it_got_instead_of_a_model(small_cnn, digits):
    from edgekd.errors import InvalidArgumentError
    from edgekd.optimize import QATResult

    qat = QATResult(model=None, history=(), teacher=None, temperature=1.0, alpha=0.0, preserve_sparsity=False,
                    calibration=digits.val.x[:4])
    with pytest.raises(InvalidArgumentError, match=r"not a QATResult: .*edgekd\.optimize\.convert_qat"):
        convert(qat, representative_data=digits.val.x)
    with pytest.raises(InvalidArgumentError, match="Received model='dict'"):
        convert({"model": small_cnn}, representative_data=digits.val.x)
