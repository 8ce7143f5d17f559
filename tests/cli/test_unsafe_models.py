"""Safe mode on every path: model files whose loading runs code are refused by every verb and
the API unless the user opts in, before any of their code runs; each payload writes a marker file when it runs.

The commands run in-process (one TensorFlow start-up), so a payload that ran anywhere in edgekd would leave its
marker; one run goes through the real console entry point in a child process.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.cli._payloads import keras3_lambda, legacy_lambda_h5, writefile_savedmodel
from tests.conftest import assert_clean_error, main_output, run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("unsafe")
    marker = str(d / "MARKER")
    legacy_lambda_h5(str(d / "legacy_lambda.h5"), marker)
    keras3_lambda(str(d / "lambda.keras"), marker)
    writefile_savedmodel(str(d / "writefile_sm"), marker)
    inputs = keras.Input((8, 8, 1))
    good = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    good.save(d / "good.keras")
    rng = np.random.default_rng(0)
    from edgekd.convert import convert

    (d / "good.tflite").write_bytes(convert(good, representative_data=rng.random((8, 8, 8, 1), np.float32)))
    # data of the wrong shape: with the opt-in, each verb loads the model and then stops at this (exit 2)
    np.savez(d / "wrong_shape.npz", x=rng.random((12, 4, 4, 1), np.float32), y=np.arange(12) % 10)
    return d


PAYLOADS = ["legacy_lambda.h5", "lambda.keras", "writefile_sm"]


def _verbs(d, model):
    return {
        "export": ["export", model, "--rep-data", d / "wrong_shape.npz", "-o", d / "out_export"],
        "profile": ["profile", model],
        "profile --int8": ["profile", model, "--int8"],
        "shrink": ["shrink", model, "-o", d / "out_shrink.keras"],
        "check --float-model": ["check", d / "missing.tflite", "--board", "nano33ble", "--float-model", model],
        "distill (teacher)": ["distill", "--teacher", model, "--student-arch", "ds_cnn", "--data",
                              d / "wrong_shape.npz", "--epochs", "1", "-o", d / "out_distill.keras"],
        "distill (student)": ["distill", "--teacher", d / "good.keras", "--student", model, "--data",
                              d / "wrong_shape.npz", "--epochs", "1", "-o", d / "out_distill.keras"],
        "fit": ["fit", "--teacher", model, "--data", d / "wrong_shape.npz", "--board", "nano33ble",
                "-o", d / "out_fit"],
    }


VERBS = list(_verbs(__import__("pathlib").Path("."), "m.keras"))


def _no_outputs(d):
    return not [f for f in os.listdir(d) if f.startswith("out_") or f.startswith(".edgekd")]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_refuses_without_running_the_payload(files, payload, verb, capsys):
    marker = files / "MARKER"
    code, out, err = main_output(capsys, *_verbs(files, files / payload)[verb])
    assert code == 2, (out, err)
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if verb == "shrink" and payload == "writefile_sm":
        assert "SavedModel does not keep" in line  # shrink needs the layers: refused before loading anything
    else:
        assert "needs code to load" in line and "pass --unsafe" in line and "safe_mode" not in line, line
    assert not marker.exists(), f"{verb} ran the payload of {payload}"
    assert _no_outputs(files)


@pytest.mark.parametrize("verb, expected_code, fragment", [
    ("export", 2, "shape (4, 4, 1)"),
    ("profile", 0, "payload"),
    ("shrink", 2, "cannot transform layer 'payload' (Lambda)"),
    ("check --float-model", 2, "missing.tflite"),
    ("distill (teacher)", 2, "(4, 4, 1)"),
    ("distill (student)", 2, "(4, 4, 1)"),
    ("fit", 2, "(4, 4, 1)"),
])
def test_with_unsafe_every_verb_loads_the_model(files, verb, expected_code, fragment, capsys):
    """Opted in, the model loads (its code runs, as the user accepted) and the verb goes on to its next step."""
    marker = files / "MARKER"
    if marker.exists():
        marker.unlink()
    code, out, err = main_output(capsys, *_verbs(files, files / "legacy_lambda.h5")[verb], "--unsafe")
    assert code == expected_code, (out, err)
    assert "needs code" not in err and "Traceback" not in err
    assert fragment in (out + err)
    assert marker.exists()
    assert _no_outputs(files)


def test_refusal_names_unsafe_only_where_it_exists(files, digits, tmp_path):
    """The Python API names safe_mode=False; nothing the API loads from a path runs the payload."""
    from edgekd.check import check
    from edgekd.convert import convert, load_model
    from edgekd.errors import UnsafeModelError
    from edgekd.fit import fit

    marker = files / "MARKER"
    if marker.exists():
        marker.unlink()
    for payload in PAYLOADS:
        path = str(files / payload)
        calls = [
            lambda: load_model(path),
            lambda: convert(path, representative_data=digits.val.x),
            lambda: check(str(files / "good.tflite"), board="nano33ble", float_model=path, host_latency=False),
            lambda: fit(path, train=(digits.train.x, digits.train.y), val=(digits.val.x, digits.val.y),
                        board="nano33ble", storage=f"sqlite:///{tmp_path / 'study.db'}"),
        ]
        for call in calls:
            with pytest.raises(UnsafeModelError) as info:
                call()
            assert "safe_mode=False" in str(info.value) and "--unsafe" not in str(info.value)
        assert not marker.exists(), payload
    assert not os.listdir(tmp_path)  # fit created no study


def test_console_entry_point_fit_refuses_before_anything(files, tmp_path):
    """`fit` used to run the payload twice and then exit 2; now the child process exits 2 before it runs."""
    marker = files / "MARKER"
    if marker.exists():
        marker.unlink()
    out = tmp_path / "fitout"
    proc = run_cli("fit", "--teacher", files / "legacy_lambda.h5", "--dataset", "digits", "--board", "nano33ble",
                   "-o", out)
    assert_clean_error(proc, "needs code to load", "Lambda layer", "--unsafe")
    assert not marker.exists() and not out.exists()
