"""`edgekd.students.dense`: the fully connected student, from the registry to TFLM."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edgekd import students
from edgekd.errors import InvalidArgumentError


def test_architecture_names_and_parameters():
    m = students.dense((8, 8, 1), 10, width=4)  # the benchmark's distill_patient_dense student
    assert [layer.name for layer in m.layers] == ["input", "flatten", "fc1", "logits"]
    assert m.get_layer("fc1").units == 512 and m.get_layer("fc1").activation.__name__ == "relu"
    assert m.count_params() == 64 * 512 + 512 + 512 * 10 + 10 == 38_410
    assert m.get_layer("logits").activation.__name__ == "linear"

    deep = students.get("dense:width=0.5,depth=3,units=48,dropout=0.2,softmax=true")(
        input_shape=(8, 8, 1), num_classes=4)
    assert [layer.name for layer in deep.layers] == ["input", "flatten", "fc1", "fc2", "fc3", "dropout", "logits",
                                                     "probs"]
    assert [deep.get_layer(f"fc{i}").units for i in (1, 2, 3)] == [24, 24, 24]  # make_divisible(48 * 0.5)
    assert deep.output_shape == (None, 4)

    low = students.get("dense:resolution=0.5")(input_shape=(8, 8, 1), num_classes=10)
    assert low.input_shape == (None, 4, 4, 1) and low.get_layer("fc1").kernel.shape == (16, 128)


def test_bad_options_are_refused_with_the_argument_named():
    for spec, arg in [("dense:units=0", "units"), ("dense:units=1.5", "units"), ("dense:dropout=1", "dropout"),
                      ("dense:depth=0", "depth"), ("dense:depth=9", "depth"), ("dense:width=5", "width"),
                      ("dense:softmax=3", "softmax")]:
        with pytest.raises(InvalidArgumentError, match=f"`{arg}`"):
            students.get(spec)(input_shape=(8, 8, 1), num_classes=10)
    with pytest.raises(InvalidArgumentError, match="Valid options: width, resolution, depth, units, dropout"):
        students.get("dense:hidden=3")
    with pytest.raises(InvalidArgumentError, match="input_shape"):
        students.dense((64,), 10)


def test_serializes_and_converts_to_int8_fully_connected_ops_tflm_runs(digits, tmp_path):
    from edgekd.check import check
    from edgekd.convert import convert

    keras.utils.set_random_seed(3)
    model = students.dense((8, 8, 1), 10, depth=2, units=32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.train.x, digits.train.y, epochs=3, batch_size=64, verbose=0)
    path = tmp_path / "dense.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(again.predict(digits.val.x[:8], verbose=0),
                                  model.predict(digits.val.x[:8], verbose=0))

    data = convert(model, mode="int8", representative_data=digits.val.x)
    assert [op.op_name for op in data.parsed.operators if op.op_name != "RESHAPE"] == ["FULLY_CONNECTED"] * 3
    report = check(data, board="nano33ble", data=digits.test, float_model=model, host_latency=False)
    acc = report.accuracy
    assert report.exit_code == 0 and acc.samples == len(digits.test)
    assert acc.max_diff_steps <= 1 and abs(acc.tflm_accuracy - acc.litert_accuracy) <= 0.01
    assert acc.float_accuracy > 0.5 and abs(acc.float_accuracy - acc.litert_accuracy) < 0.05
