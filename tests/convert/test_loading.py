"""edgekd.convert.load_model: .keras, .h5 (incl. tf.keras 2 files Keras 3 rejects), SavedModel."""

from __future__ import annotations

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
