"""edgekd.model.ConvertedModel: what convert returns and every later stage takes."""

from __future__ import annotations

import hashlib
import math
import pickle

import numpy as np
import pytest

import edgekd
from edgekd.errors import DataError, InvalidArgumentError, TFLiteFileError
from edgekd.flatbuffer import read_tflite
from edgekd.model import ConvertedModel, dequantize, quantize


def _student(shape=(6, 6, 1)):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="six")


@pytest.fixture(scope="module")
def student():
    return _student()


@pytest.fixture(scope="module")
def converted(student):
    rng = np.random.default_rng(0)
    return edgekd.convert(student, representative_data=rng.random((16, 8, 8, 1), np.float32),
                          source_shape=(8, 8, 1), labels=["a", "b", "c"], per_channel_dense=False)


def test_convert_returns_the_model_object_with_its_facts(converted):
    assert isinstance(converted, edgekd.ConvertedModel)
    assert converted.name == "six" and converted.labels == ("a", "b", "c")
    assert converted.input_shape == (6, 6, 1) and converted.source_shape == (8, 8, 1)
    prov = converted.provenance
    assert prov["keras_model"] == "six" and prov["dense_quantization"] == "per-tensor"
    assert prov["options"]["mode"] == "int8" and prov["options"]["calibration_examples"] == 16
    assert prov["edgekd_version"] == edgekd.__version__
    # The Dense weights really are per tensor, as recorded.
    fc = next(op for op in converted.parsed.operators if op.op_name == "FULLY_CONNECTED")
    assert len(converted.parsed.tensors[fc.inputs[1]].quantization.scale) == 1
    assert converted.arena_bytes is None and converted.emulation is None


def test_old_bytes_uses_keep_working(converted, tmp_path):
    raw = bytes(converted)
    assert type(raw) is bytes and raw == converted.data and converted == raw and len(converted) == len(raw)
    assert hash(converted) == hash(raw)
    path = tmp_path / "m.tflite"
    path.write_bytes(converted)  # the buffer protocol, as for bytes
    assert path.read_bytes() == raw
    assert hashlib.sha256(converted).hexdigest() == converted.parsed.sha256 == read_tflite(converted).sha256
    assert np.frombuffer(converted, np.uint8).size == len(raw)


def test_round_trip_through_a_file_pickle_and_with_(converted, tmp_path):
    path = tmp_path / "student.tflite"
    path.write_bytes(converted)
    again = ConvertedModel.coerce(path)
    assert again == converted and again.name == "student" and again.input_shape == (6, 6, 1)
    assert again.provenance == {"file": str(path)}
    assert ConvertedModel.coerce(converted) is converted
    assert ConvertedModel.coerce(bytearray(converted.data)).input_shape == (6, 6, 1)
    copy = pickle.loads(pickle.dumps(converted))
    assert copy == converted and copy.labels == converted.labels and copy.source_shape == (8, 8, 1)
    enriched = converted.with_(arena_bytes=1234)
    assert enriched.arena_bytes == 1234 and converted.arena_bytes is None
    assert enriched.parsed is converted.parsed  # not parsed again
    assert "1234" in repr(enriched) and "bytes" in repr(enriched)
    with pytest.raises(Exception, match="cannot assign"):
        enriched.name = "other"  # frozen


def test_coerce_errors(tmp_path, converted):
    with pytest.raises(TFLiteFileError, match="not found.*model_tflite"):
        ConvertedModel.coerce(tmp_path / "missing.tflite", argument="model_tflite")
    with pytest.raises(TFLiteFileError, match="not found"):
        ConvertedModel.coerce(str(tmp_path))  # a folder is no .tflite file
    with pytest.raises(TFLiteFileError, match="not a valid TFLite model"):
        ConvertedModel.coerce(converted.data[: len(converted) // 2])
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(TFLiteFileError, match="bad.tflite is not a valid TFLite model"):
        ConvertedModel.coerce(bad)
    with pytest.raises(InvalidArgumentError, match="`model`.*Received model='int'"):
        ConvertedModel.coerce(3)
    with pytest.raises(InvalidArgumentError, match="arena_bytes"):
        converted.with_(arena_bytes=0)
    with pytest.raises(InvalidArgumentError, match="source_shape"):
        converted.with_(source_shape=(0, 8))


def _lround_reference(x: np.ndarray, scale: float, zero_point: int) -> list[int]:
    """C's lroundf(x / scale) + zero point, clamped to int8: the generated model_io::quantize_input."""
    out = []
    for v in np.asarray(x, np.float32).ravel():
        s = float(np.float32(v) / np.float32(scale))
        q = zero_point if math.isnan(s) else (zero_point + int(math.copysign(math.floor(abs(s) + 0.5), s))
                                              if math.isfinite(s) else (127 if s > 0 else -128))
        out.append(min(127, max(-128, q)))
    return out


def test_one_quantizer_rounds_ties_away_from_zero_like_the_firmware(converted):
    from edgekd.convert.runtime import quantize as runtime_quantize
    from edgekd.firmware import quantize as firmware_quantize

    assert runtime_quantize is quantize  # one quantizer, not copies
    scale = 0.5
    ties = np.array([0.25, -0.25, 0.75, -0.75, 1.25, -1.25], np.float32)  # x / scale = ±0.5, ±1.5, ±2.5
    assert quantize(ties, scale, 0).tolist() == [1, -1, 2, -2, 3, -3]
    assert np.round(ties / scale).tolist() != [1, -1, 2, -2, 3, -3]  # half-to-even would differ
    s, z = converted.input_quant
    k = np.arange(-140, 140, dtype=np.float32)
    x = np.concatenate([(k + np.float32(0.5)) * np.float32(s), np.random.default_rng(0).uniform(-2, 2, 500),
                        np.array([np.nan, np.inf, -np.inf, 1e30], np.float32)]).astype(np.float32)
    want = _lround_reference(x, s, z)
    assert converted.quantize(x).tolist() == want == firmware_quantize(x, s, z).tolist()
    assert converted.quantize(x).dtype == np.int8
    os_, oz = converted.output_quant
    q = np.arange(-128, 128)
    np.testing.assert_array_equal(converted.dequantize(q), dequantize(q, os_, oz))
    np.testing.assert_allclose(converted.dequantize(q), (q - oz) * os_, rtol=1e-6)


def test_adapt_resizes_the_source_shape_only(converted):
    x8 = np.random.default_rng(1).random((3, 8, 8, 1), np.float32)
    x6 = converted.adapt(x8)
    assert x6.shape == (3, 6, 6, 1) and x6.dtype == np.float32
    assert converted.adapt(x6) is x6 or np.array_equal(converted.adapt(x6), x6)
    with pytest.raises(DataError, match=r"\(N, 6, 6, 1\) or \(N, 8, 8, 1\)"):
        converted.adapt(np.zeros((2, 5, 5, 1), np.float32))
    same = converted.with_(source_shape=None)
    with pytest.raises(DataError, match="resize"):
        same.adapt(x8)


def test_lazy_export_from_the_package():
    assert edgekd.ConvertedModel is ConvertedModel
    assert "ConvertedModel" in dir(edgekd)
