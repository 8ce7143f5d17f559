"""`edgekd export` end to end, and every bad input it must refuse cleanly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgekd.flatbuffer import read_tflite
from tests.conftest import assert_clean_error, run_cli


def test_export_digits_end_to_end(small_cnn_path, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", small_cnn_path, "--dataset", "digits", "--name", "digits", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["export.json", "model.tflite", "model_data.cc", "model_data.h",
                                       "model_ops.h"]
    summary = json.loads((out / "export.json").read_text())
    fb = read_tflite(str(out / "model.tflite"))
    assert summary["sha256"] == fb.sha256 and summary["mode"] == "int8"
    assert summary["symbols"] == {"data": "g_digits_data", "length": "g_digits_data_len"}
    assert summary["validation"]["agreement"] >= 0.97
    assert summary["labels"] == [str(i) for i in range(10)]
    assert "Accuracy float" in proc.stdout
    # .tflite passes straight to the C export, byte-identical arrays
    out2 = tmp_path / "out2"
    proc = run_cli("export", str(out / "model.tflite"), "--name", "digits", "--labels",
                   _labels(tmp_path), "-o", out2)
    assert proc.returncode == 0, proc.stderr
    assert (out2 / "model_data.cc").read_bytes().split(b"#include")[1] == \
        (out / "model_data.cc").read_bytes().split(b"#include")[1]


def _labels(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("\n".join(str(i) for i in range(10)) + "\n")
    return str(p)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, small_cnn):
    import keras

    d = tmp_path_factory.mktemp("bad")
    (d / "corrupt.keras").write_bytes(b"PK\x03\x04 definitely not a model")
    (d / "corrupt.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40)
    small_cnn.save_weights(d / "w.weights.h5")
    os.rename(d / "w.weights.h5", d / "weights_only.h5")
    inp = keras.Input((None, None, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    keras.Model(inp, keras.layers.Dense(10)(x)).save(d / "dynamic.keras")
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Discretization(bin_boundaries=[0.0, 0.5])(keras.layers.Flatten()(inp))
    keras.Model(inp, keras.layers.Dense(10)(x)).save(d / "bucketize.keras")
    np.savez(d / "empty.npz", x=np.zeros((0, 8, 8, 1), np.float32))
    np.savez(d / "wrong_shape.npz", x=np.zeros((5, 4, 4, 1), np.float32))
    np.savez(d / "wrong_dtype.npz", x=np.array([["a"] * 3] * 2))
    (d / "afile").write_text("x")
    return d


@pytest.mark.parametrize("case, fragments", [
    ("missing", ("not found",)),
    ("corrupt_keras", ("not a valid .keras",)),
    ("corrupt_tflite", ("not a valid TFLite model",)),
    ("weights_only", ("holds no model",)),
    ("dynamic", ("--input-shape",)),
    ("empty_rep", ("empty",)),
    ("wrong_shape", ("shape (4, 4, 1)", "takes (8, 8, 1)", "pass --resize")),
    ("wrong_dtype", ("dtype",)),
    ("bucketize", ("BUCKETIZE",)),
    ("bad_name", ("`--name`",)),  # the option, as the command line spells it
    ("unwritable", ("Cannot write",)),
    ("no_rep_data", ("representative data",)),
])
def test_bad_input_is_one_clean_line(case, fragments, bad_models, small_cnn_path, tmp_path):
    d = bad_models
    out = tmp_path / "out"
    model, extra = small_cnn_path, ["--dataset", "digits"]
    if case == "missing":
        model = str(d / "nope.keras")
    elif case == "corrupt_keras":
        model = str(d / "corrupt.keras")
    elif case == "corrupt_tflite":
        model, extra = str(d / "corrupt.tflite"), []
    elif case == "weights_only":
        model = str(d / "weights_only.h5")
    elif case == "dynamic":
        model = str(d / "dynamic.keras")
    elif case in ("empty_rep", "wrong_shape", "wrong_dtype"):
        files = {"empty_rep": "empty.npz", "wrong_shape": "wrong_shape.npz", "wrong_dtype": "wrong_dtype.npz"}
        extra = ["--rep-data", str(d / files[case])]
    elif case == "bucketize":
        model = str(d / "bucketize.keras")
    elif case == "bad_name":
        extra += ["--name", "my-model"]
    elif case == "unwritable":
        out = d / "afile" / "out"
    elif case == "no_rep_data":
        extra = []
    proc = run_cli("export", model, *extra, "-o", out)
    assert_clean_error(proc, *fragments)
    assert not os.path.exists(out)  # nothing half-written


def test_export_target_decides_dense_quantization_and_refuses_what_the_runtime_computes_wrong(
        small_cnn_path, tmp_path):
    from edgekd.export.ops import per_channel_dense_layers

    esp = tmp_path / "esp"
    proc = run_cli("export", small_cnn_path, "--dataset", "digits", "--target", "esp-idf", "--dense-quantization",
                   "per-channel", "-o", esp)  # auto would keep per-tensor where it is cheaper (test_dense_choice)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((esp / "export.json").read_text())["dense_weights"].startswith("per-channel")
    assert per_channel_dense_layers(read_tflite(str(esp / "model.tflite")))
    portable = tmp_path / "any"
    proc = run_cli("export", small_cnn_path, "--dataset", "digits", "-o", portable)
    assert proc.returncode == 0, proc.stderr
    assert "Chirale_TensorFLowLite 2.0.0" in json.loads((portable / "export.json").read_text())["dense_weights"]
    assert per_channel_dense_layers(read_tflite(str(portable / "model.tflite"))) == []
    # the per-channel model, re-exported for the Arduino runtime: refused, nothing written
    refused = tmp_path / "arduino"
    proc = run_cli("export", str(esp / "model.tflite"), "--target", "arduino", "-o", refused)
    assert_clean_error(proc, "Chirale_TensorFLowLite 2.0.0", "per-channel", "--target arduino")
    assert not refused.exists()
