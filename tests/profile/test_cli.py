"""`edgekd profile` and `edgekd shrink` from the command line."""

from __future__ import annotations

import json
import os

import keras
import pytest

from edgekd.profile import profile
from tests.conftest import assert_clean_error, run_cli
from tests.conftest import main_output as _main  # the CLI in this process (TensorFlow already loaded)


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="teacher")
    path = tmp_path_factory.mktemp("cli") / "teacher.keras"
    model.save(path)
    return str(path)


def test_profile_tflite_json_and_csv(small_cnn_tflite):
    path, data = small_cnn_tflite
    proc = run_cli("profile", path, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    expected = profile(data)
    assert d["macs"] == expected.macs and d["params"] == expected.params
    assert d["peak_ram_bytes"] == expected.peak_ram_bytes
    assert d["layers"][0]["op_type"] == "CONV_2D" and d["flash_int8_bytes"] == len(data)


def test_profile_keras_table_and_shrink(teacher_path, tmp_path, capsys):
    code, stdout, err = _main(capsys, "profile", teacher_path)
    assert code == 0, err
    assert "conv2" in stdout and "Conv2D" in stdout and "total" in stdout
    out = tmp_path / "student.keras"
    proc = run_cli("shrink", teacher_path, "--width", "0.5", "--resolution", "0.75", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "teacher" in proc.stdout and "student" in proc.stdout and "peak RAM int8" in proc.stdout
    student = keras.saving.load_model(out)
    assert student.input_shape == (None, 6, 6, 1) and student.get_layer("block1_pw").filters == 16
    assert [p.name for p in tmp_path.iterdir()] == ["student.keras"]  # no temp files left behind


def test_profile_keras_int8_csv(teacher_path, capsys):
    code, out, err = _main(capsys, "profile", teacher_path, "--int8", "--csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("name,op_type,kind,")
    assert [ln.split(",")[1] for ln in lines[1:]] == ["CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED"]


@pytest.mark.parametrize("args, fragment", [
    (("profile", "missing.keras"), "not found"),
    (("profile", "model.txt"), "extension"),
    (("profile", "x.tflite", "--json", "--csv"), "either --json or --csv"),
    (("profile", "x.keras", "--input-shape", "8,a"), "--input-shape"),
    (("shrink", "t.keras", "-o", "student.h5"), ".keras"),
    (("shrink", "t.tflite", "-o", "s.keras"), "keras teacher"),
    (("shrink", "t.keras", "--width", "0", "-o", "s.keras"), "width"),
])
def test_bad_inputs_fail_cleanly_in_process(args, fragment, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(capsys, *args)
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert fragment.lower() in line.lower()


def test_bad_inputs_fail_cleanly_subprocess(teacher_path, tmp_path):
    out = tmp_path / "s.keras"
    assert_clean_error(run_cli("shrink", teacher_path, "--resolution", "2", "-o", str(out)), "upsample")
    assert not os.path.exists(out)


def test_corrupt_tflite(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8)
    code, _, err = _main(capsys, "profile", str(bad))
    assert code == 2 and "not a valid TFLite model" in err


def test_shrink_options_json_in_process(teacher_path, tmp_path, capsys):
    out = tmp_path / "full.keras"
    code, stdout, err = _main(capsys, "shrink", teacher_path, "--no-separable", "--width", "0.25", "--json",
                              "-o", str(out))
    assert code == 0, err
    d = json.loads(stdout)
    assert d["output"] == str(out) and d["student"]["params"] < d["teacher"]["params"]
    student = keras.saving.load_model(out)
    # no separable blocks; conv2 keeps a full 3x3 kernel with make_divisible(32 * 0.25) = 8 filters
    assert student.get_layer("conv2").filters == 8 and student.get_layer("conv2").kernel_size == (3, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["full.keras"]


def test_profile_legacy_h5_and_savedmodel(tmp_path, capsys):
    """A tf.keras 2 .h5 with BatchNormalization + DepthwiseConv2D (MLPerf VWW-like) profiles as
    the Keras 3 model (it crashed on the tf-keras DepthwiseConv2D's missing `kernel`), and a SavedModel directory
    profiles as export takes it (its int8 graph), instead of "has extension (none)"."""
    import tf_keras

    L = tf_keras.layers
    legacy = tf_keras.Sequential([
        L.InputLayer(input_shape=(8, 8, 1)), L.Conv2D(8, 3, padding="same"), L.BatchNormalization(), L.ReLU(6.0),
        L.DepthwiseConv2D(3, padding="same"), L.BatchNormalization(), L.ReLU(6.0), L.Flatten(), L.Dense(10),
    ])
    legacy.save(tmp_path / "vww_like.h5")
    from edgekd.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="not a tf-keras one: load the file with edgekd.convert.load_model"):
        profile(legacy)  # the API names the fix instead of an AttributeError deep in a layer
    code, out, err = _main(capsys, "profile", str(tmp_path / "vww_like.h5"), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["source"] == "keras" and d["macs"] > 0 and not d["unsupported"]
    assert {row["op_type"] for row in d["layers"]} >= {"DepthwiseConv2D", "BatchNormalization"}
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(inputs)
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x))).export(str(tmp_path / "sm"), verbose=False)
    code, out, err = _main(capsys, "profile", str(tmp_path / "sm"), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["source"] == "tflite" and d["name"] == "sm (int8)"
    assert [row["op_type"] for row in d["layers"]][:1] == ["DEPTHWISE_CONV_2D"] and d["macs"] > 0
