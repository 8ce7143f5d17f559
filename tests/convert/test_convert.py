"""edgekd.convert: every mode converts; int8 is full-integer, static batch 1, accurate, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.convert import MODES, convert, evaluate_conversion
from edgekd.convert.runtime import predict
from edgekd.errors import AccuracyDropError, ConversionError, DataError, InvalidArgumentError, ModelLoadError
from edgekd.flatbuffer import read_tflite


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_converts_to_builtin_ops(small_cnn, digits, mode):
    data = convert(small_cnn, mode=mode, representative_data=digits.val.x)
    fb = read_tflite(data)
    assert fb.input_tensors[0].shape == (1, 8, 8, 1)  # static batch of 1
    assert not any(name.startswith("CUSTOM") for name in fb.op_names)
    # Keras 3's dynamic batch would put SHAPE/STRIDED_SLICE/PACK before RESHAPE.
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(fb.op_names)
    if mode == "int8":
        assert fb.is_full_integer
        assert fb.input_tensors[0].dtype == "INT8" and fb.output_tensors[0].dtype == "INT8"
    else:
        assert fb.input_tensors[0].dtype == "FLOAT32"
    out = predict(data, digits.test.x[:5])
    assert out.shape == (5, 10) and np.all(np.isfinite(out))


def test_int8_float_io_keeps_float_edges(small_cnn, digits):
    fb = read_tflite(convert(small_cnn, mode="int8", representative_data=digits.val.x, float_io=True))
    assert fb.is_full_integer
    assert fb.input_tensors[0].dtype == "FLOAT32" and fb.output_tensors[0].dtype == "FLOAT32"
    assert "QUANTIZE" in fb.op_names


def test_int8_agrees_with_float_on_97_percent(small_cnn, small_cnn_tflite, digits):
    _, data = small_cnn_tflite
    report = evaluate_conversion(small_cnn, data, digits.test.x, digits.test.y, max_accuracy_drop=None)
    assert report.agreement >= 0.97, report
    assert report.float_accuracy > 0.9
    # Cross-check the report against an independent computation.
    ref = small_cnn.predict(digits.test.x, verbose=0).argmax(1)
    got = predict(data, digits.test.x).argmax(1)
    assert report.agreement == pytest.approx(np.mean(ref == got))
    assert report.tflite_accuracy == pytest.approx(np.mean(got == digits.test.y))


def test_conversion_is_deterministic(small_cnn, digits):
    a = convert(small_cnn, mode="int8", representative_data=digits.val.x[:50])
    b = convert(small_cnn, mode="int8", representative_data=digits.val.x[:50])
    assert a == b


def test_accuracy_gate_says_by_how_much(small_cnn, digits):
    import keras

    # Calibrating on a constant image squeezes every activation range: the int8 model collapses.
    bad = convert(small_cnn, mode="int8", representative_data=np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(AccuracyDropError, match=r"loses \d+\.\d\d percentage points") as info:
        evaluate_conversion(small_cnn, bad, digits.test.x, digits.test.y, max_accuracy_drop=1.0)
    assert info.value.exit_code == 1
    assert keras  # keras imported for the fixture model


@pytest.mark.parametrize(
    "rep, match",
    [
        (np.zeros((0, 8, 8, 1), np.float32), "empty"),
        (np.zeros((10, 4, 4, 1), np.float32),
         r"shape \(4, 4, 1\), but the model takes \(8, 8, 1\)\. To resize .* pass source_shape=\(4, 4, 1\)"),
        (np.zeros((10, 8, 8, 1), np.int32), "dtype int32"),
        (np.full((10, 8, 8, 1), np.nan, np.float32), "NaN"),
        (None, "representative_data"),
    ],
)
def test_bad_representative_data(small_cnn, rep, match):
    with pytest.raises((DataError, InvalidArgumentError), match=match):
        convert(small_cnn, mode="int8", representative_data=rep)


def test_bad_options(small_cnn, digits):
    with pytest.raises(InvalidArgumentError, match="Invalid value for argument `mode`"):
        convert(small_cnn, mode="int4", representative_data=digits.val.x)
    with pytest.raises(InvalidArgumentError, match="num_calibration_samples"):
        convert(small_cnn, representative_data=digits.val.x, num_calibration_samples=0)


def test_unknown_input_shape_asks_for_it(digits):
    import keras

    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ModelLoadError, match="Pass `input_shape`"):  # the parameter, not the CLI flag
        convert(model, representative_data=digits.val.x)
    data = convert(model, representative_data=digits.val.x, input_shape=(8, 8, 1))
    assert read_tflite(data).input_tensors[0].shape == (1, 8, 8, 1)


def test_op_that_stays_float_is_named():
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Discretization(bin_boundaries=[0.0, 0.5])(keras.layers.Dense(4)(inp)))
    with pytest.raises(ConversionError, match="BUCKETIZE"):
        convert(model, representative_data=np.random.default_rng(0).random((20, 4), dtype=np.float32))
