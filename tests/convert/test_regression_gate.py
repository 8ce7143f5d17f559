"""The conversion gate for models whose outputs are values (autoencoders, regressors), not class scores.

Top-1 agreement is meaningless there: an autoencoder whose inputs always peak at the same position "agrees
100 %" with its float model however far off its int8 reconstruction is. Such outputs are detected and gated
on their SNR against the float outputs (default 30 dB).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.convert import DEFAULT_MIN_SNR_DB, convert, evaluate_conversion, output_task
from edgekd.errors import AccuracyDropError, InvalidArgumentError


def _peaked(n: int, seed: int) -> np.ndarray:
    """64 features in [0, 1) with feature 0 always 4: every input, and its reconstruction, peaks at index 0."""
    x = np.random.default_rng(seed).random((n, 64), dtype=np.float32)
    x[:, 0] = 4.0
    return x


@pytest.fixture(scope="module")
def autoencoder():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    h = keras.layers.Dense(16, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(64)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = _peaked(1024, 0)
    model.fit(x, x, epochs=30, batch_size=64, verbose=0)
    return model


def test_output_task_rules():
    rng = np.random.default_rng(0)
    assert output_task(rng.random((8, 10))) == "classification"
    assert output_task(rng.random((8, 10)), labels=np.arange(8) % 10) == "classification"
    assert output_task(rng.random((8, 10)), labels=rng.random(8)) == "regression"  # continuous targets
    assert output_task(rng.random((8, 10)), labels=np.full(8, 12)) == "regression"  # not a class index
    assert output_task(rng.random((8, 1))) == "regression"
    assert output_task(rng.random((8, 4, 4, 3))) == "regression"
    assert output_task(rng.random((8, 640)), input_shape=(640,)) == "regression"  # autoencoder
    assert output_task(rng.random((8, 640)), input_shape=(49, 10, 1)) == "classification"


def test_autoencoder_gated_on_snr_not_top1(autoencoder):
    x = _peaked(200, 1)
    good = convert(autoencoder, mode="int8", representative_data=_peaked(200, 2))
    report = evaluate_conversion(autoencoder, good, x)
    assert report.task == "regression" and report.float_accuracy is None
    assert report.snr_db > DEFAULT_MIN_SNR_DB and report.relative_rms_error < 0.032
    assert report.max_error_steps is not None and report.max_error_steps >= 0
    json.dumps(report.to_dict())
    # Calibrated on inputs a tenth of the real range: activations clip, the reconstruction is far off,
    # yet every output still peaks at index 0, so top-1 "agrees" 100 %: the old gate passed this model.
    bad = convert(autoencoder, mode="int8", representative_data=_peaked(200, 2) * 0.1)
    assert evaluate_conversion(autoencoder, bad, x, task="classification").agreement == 1.0
    with pytest.raises(AccuracyDropError, match=r"outputs are values.*SNR -?\d+\.\d dB .*below the required 30 dB") \
            as e:
        evaluate_conversion(autoencoder, bad, x)
    assert e.value.exit_code == 1 and "output quantization steps" in str(e.value)
    assert evaluate_conversion(autoencoder, bad, x, min_snr_db=None).snr_db < DEFAULT_MIN_SNR_DB
    with pytest.raises(InvalidArgumentError, match="task"):
        evaluate_conversion(autoencoder, good, x, task="segmentation")


def test_single_output_regressor(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((512, 8), dtype=np.float32)
    y = x @ np.linspace(-1, 1, 8, dtype=np.float32) + 0.5
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(16, activation="relu")(inp)))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, epochs=20, verbose=0)
    data = convert(model, mode="int8", representative_data=x[:200])
    report = evaluate_conversion(model, data, x[:100], y[:100])  # float targets: a regressor
    assert report.task == "regression" and report.agreement == 1.0 and report.snr_db > DEFAULT_MIN_SNR_DB


def test_export_cli_prints_and_gates_snr(autoencoder, tmp_path, capsys):
    from tests.conftest import main_output  # the CLI in this process: (exit code, stdout, stderr)

    path = tmp_path / "ae.keras"
    autoencoder.save(path)
    x = _peaked(200, 1)

    def run(*args):
        return main_output(capsys, *args)

    np.savez(tmp_path / "good.npz", x=_peaked(200, 2), x_val=x)
    code, out, err = run("export", path, "--rep-data", tmp_path / "good.npz", "-o", tmp_path / "good")
    assert code == 0, err
    assert "SNR vs float" in out and "Top-1 agreement" not in out
    summary = json.loads((tmp_path / "good" / "export.json").read_text())
    assert summary["validation"]["task"] == "regression" and summary["validation"]["snr_db"] > 30
    np.savez(tmp_path / "bad.npz", x=_peaked(200, 2) * 0.1, x_val=x)
    code, out, err = run("export", path, "--rep-data", tmp_path / "bad.npz", "-o", tmp_path / "bad")
    assert code == 1 and "below the required 30 dB" in err and not (tmp_path / "bad").exists()
    code, out, err = run("export", path, "--rep-data", tmp_path / "bad.npz", "--min-snr-db", "0", "-o",
                         tmp_path / "bad")
    assert code == 0, err
