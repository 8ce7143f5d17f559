"""QAT, quantization-aware distillation, pruning and pruning-preserving QAT with the real tfmot and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import DataError, InvalidArgumentError

# TFLite ops a Conv/BN/ReLU6 + depthwise-separable + Dense model may convert to when BatchNorm is
# folded; a float BatchNorm left over would add MUL/ADD.
_FOLDED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MEAN", "RESHAPE", "FULLY_CONNECTED"}


@pytest.fixture(scope="module")
def student(digits):
    """A tiny DS-CNN-style student (Conv-BN-ReLU6, depthwise-separable block, Dense logits)."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="input")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(6.0, name="conv1_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1_dw")(x)
    x = L.BatchNormalization(name="block1_dw_bn")(x)
    x = L.ReLU(6.0, name="block1_dw_relu")(x)
    x = L.Conv2D(16, 1, use_bias=False, name="block1_pw")(x)
    x = L.BatchNormalization(name="block1_pw_bn")(x)
    x = L.ReLU(6.0, name="block1_pw_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, L.Dense(10, name="logits")(x), name="tiny_ds_cnn")
    model.compile(optimizer=keras.optimizers.Adam(5e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.train.x, digits.train.y, epochs=12, batch_size=32, verbose=0)
    return model


def _accuracy(model_bytes, split):
    from edgekd.convert.runtime import predict

    return float(np.mean(np.argmax(predict(model_bytes, split.x), -1) == split.y))


def _float_accuracy(model, split):
    return float(np.mean(np.argmax(np.asarray(model(split.x, training=False)), -1) == split.y))


def _int8_weights(model_bytes):
    """{op name: [int8 weight arrays]} of the CONV_2D / FULLY_CONNECTED ops, read with LiteRT."""
    from edgekd.convert.runtime import make_interpreter
    from edgekd.flatbuffer import read_tflite

    fb = read_tflite(model_bytes)
    interp = make_interpreter(model_bytes)
    out = []
    for op in fb.operators:
        if op.op_name in ("CONV_2D", "FULLY_CONNECTED"):
            out.append(np.asarray(interp.get_tensor(op.inputs[1])))
    return out


def test_qat_converts_to_builtin_int8(student, digits):
    from edgekd.export.ops import resolver_calls
    from edgekd.flatbuffer import read_tflite
    from edgekd.optimize import convert_qat, quantize_aware

    result = quantize_aware(student, data=digits, epochs=1, learning_rate=1e-4)
    assert result.teacher is None and result.soft_losses == [None]
    assert result.float_layers == ()  # every layer (BN included) was quantization-aware
    assert len(result.history) == 1 and result.history[0].val_accuracy is not None
    data = convert_qat(result)
    fb = read_tflite(data)
    assert fb.is_full_integer
    assert all(op.custom_code is None and op.op_name != "CUSTOM" for op in fb.operators)
    assert set(fb.op_names) <= _FOLDED_OPS, fb.op_names  # BatchNorm folded, no float leftovers
    assert [t.dtype for t in fb.input_tensors + fb.output_tensors] == ["INT8", "INT8"]
    assert fb.input_tensors[0].shape == (1, 8, 8, 1)
    resolver_calls(fb)  # raises UnsupportedOpError if TFLM lacks an op
    # The int8 model is still the classifier it was fine-tuned from.
    float_acc = _float_accuracy(student, digits.test)
    assert float_acc > 0.7
    assert _accuracy(data, digits.test) >= float_acc - 0.06


def test_quantization_aware_distillation_uses_the_distillation_loss(student, digits, small_cnn):
    from edgekd.optimize import quantize_aware

    alpha = 0.3
    result = quantize_aware(student, data=digits, epochs=2, teacher=small_cnn, temperature=3.0, alpha=alpha,
                            learning_rate=1e-4)
    assert result.teacher == small_cnn.name and result.temperature == 3.0
    soft = result.soft_losses
    assert len(soft) == 2 and all(s is not None and s > 0 for s in soft)
    for e in result.history:
        # distillation_terms: total = alpha * hard + (1 - alpha) * soft, batch by batch, so also for the
        # epoch means; a plain cross-entropy run would give loss == hard.
        assert e.loss == pytest.approx(alpha * e.hard_loss + (1 - alpha) * e.soft_loss, rel=1e-4)
        assert abs(e.loss - e.hard_loss) > 1e-3


def test_prune_reaches_target_and_survives_prune_preserving_qat(student, digits):
    import keras

    from edgekd.optimize import convert_qat, prune, quantize_aware

    target = 0.6
    result = prune(student, data=digits, epochs=2, target_sparsity=target)
    assert isinstance(result.model, keras.Model)
    names = {s.layer for s in result.layers}
    assert names == {"conv1", "block1_pw", "logits"}  # tfmot does not prune depthwise kernels
    for s in result.layers:
        assert abs(s.sparsity - target) <= 0.01, s
        kernel = result.model.get_layer(s.layer).get_weights()[0]
        assert abs(np.mean(kernel == 0) - target) <= 0.01
    assert abs(result.sparsity - target) <= 0.01
    assert result.gzip_bytes_after < result.gzip_bytes_before
    assert result.int8_bytes_after == result.int8_bytes_before  # TFLite stores the zeros: same flash

    qat = quantize_aware(result.model, data=digits, epochs=1, preserve_sparsity=True, learning_rate=1e-4)
    weights = _int8_weights(convert_qat(qat))
    assert len(weights) == 3
    for w in weights:
        assert np.mean(w == 0) >= target - 0.01, np.mean(w == 0)


def test_qat_then_convert_pipeline(student, digits):
    from edgekd.flatbuffer import read_tflite
    from edgekd.optimize import format_report, qat_then_convert

    lines = []
    report = qat_then_convert(student, data=digits, epochs=1, learning_rate=1e-4, print_fn=lines.append)
    assert read_tflite(report.tflite).is_full_integer
    assert report.pruning is None and report.qat is not None
    assert lines and lines[0].startswith("qat epoch 1/1")
    assert "int8 .tflite" in format_report(report)
    assert report.to_dict()["tflite_bytes"] == len(report.tflite)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "`epochs`"),
        ({"temperature": 0}, "`temperature`"),
        ({"alpha": 1.5}, "`alpha`"),
        ({"learning_rate": -1.0}, "`learning_rate`"),
        ({"batch_size": 2.5}, "`batch_size`"),
    ],
)
def test_quantize_aware_validates_arguments(student, digits, kwargs, match):
    from edgekd.optimize import quantize_aware

    with pytest.raises(InvalidArgumentError, match=match):
        quantize_aware(student, data=digits, **kwargs)


def test_bad_data_and_sparsity(student, digits):
    from edgekd.optimize import prune, quantize_aware

    with pytest.raises(DataError, match=r"shape \(8, 8\)"):
        quantize_aware(student, data=(digits.train.x[..., 0], digits.train.y), epochs=1)
    with pytest.raises(DataError, match="labels"):
        quantize_aware(student, data=(digits.train.x, digits.train.y + 5), epochs=1)
    with pytest.raises(InvalidArgumentError, match="`target_sparsity`"):
        prune(student, data=digits, target_sparsity=1.0)


def test_distillation_on_unlabeled_inputs(student, digits, small_cnn):
    """With a teacher, inputs without labels get the soft loss alone (labels -1, as edgekd distill)."""
    from edgekd.optimize import quantize_aware

    result = quantize_aware(student, data=digits.train.x[:96], epochs=1, teacher=small_cnn, alpha=0.5,
                            learning_rate=1e-5)
    (epoch,) = result.history
    assert epoch.hard_loss == 0.0 and epoch.soft_loss > 0
    assert epoch.loss == pytest.approx(epoch.soft_loss, rel=1e-5)
    with pytest.raises(DataError, match="no labels"):
        quantize_aware(student, data=(digits.train.x[:8], None), epochs=1)


def test_float_layers_are_calibrated_by_the_converter(digits):
    """Rescaling has no tfmot int8 config: it trains float and the converter quantizes it."""
    import keras

    from edgekd.flatbuffer import read_tflite
    from edgekd.optimize import convert_qat, quantize_aware

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="scale")(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x)))
    result = quantize_aware(model, data=(digits.train.x[:128], digits.train.y[:128]), epochs=1)
    assert result.float_layers == ("scale (Rescaling)",)
    fb = read_tflite(convert_qat(result))
    assert fb.is_full_integer and "CONV_2D" in fb.op_names
