"""Dense-weight quantization chosen for the target: per tensor where it is cheaper within the gate, measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench.refmodels import fc_autoencoder
from edgekd.cli import cli
from edgekd.convert import choose_dense_quantization, convert, evaluate_conversion
from edgekd.errors import AccuracyDropError, InvalidArgumentError
from edgekd.export import write_export
from edgekd.export.ops import per_channel_dense_layers
from edgekd.firmware import measure_arena


def _wide_channels():
    """One Dense(16, relu6) whose first 8 output channels have 1000× larger weights (they saturate at 0 or 6).

    Per-tensor weights take their scale from the large channels, so the small channels' weights round to 0:
    the outputs those channels carry are lost. Per-channel weights keep them.
    """
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), name="x")
    dense = keras.layers.Dense(16, activation="relu6", name="wide")
    model = keras.Model(inp, dense(inp), name="wide_channels")
    w, b = dense.get_weights()
    w[:, :8] *= 1000.0
    dense.set_weights([w, b + 1.0])
    return model, np.random.default_rng(0).random((32, 16), dtype=np.float32)


@pytest.fixture(scope="module")
def wide():
    return _wide_channels()


def test_auto_picks_per_tensor_for_the_anomaly_detection_autoencoder(capsys):
    import keras

    keras.utils.set_random_seed(0)
    model = fc_autoencoder()  # MLPerf Tiny AD: 640 → 128 ×4 → 8 → 128 ×4 → 640, random weights
    rep = np.random.default_rng(0).random((16, 640), dtype=np.float32)
    chosen = choose_dense_quantization(model, rep, target="esp-idf")
    choice = chosen.provenance["dense_quantization_choice"]
    pc, pt = choice["measured"]["per-channel"], choice["measured"]["per-tensor"]
    with capsys.disabled():
        print(f"\nfc_autoencoder TFLM arena (host): per-channel {pc['arena_bytes']:,} B, per-tensor "
              f"{pt['arena_bytes']:,} B; flatbuffer {pc['tflite_bytes']:,} B vs {pt['tflite_bytes']:,} B; SNR "
              f"{pc['validation']['snr_db']:.1f} vs {pt['validation']['snr_db']:.1f} dB\n  reason: {choice['reason']}")
    assert chosen.provenance["dense_quantization"] == choice["chosen"] == "per-tensor"
    assert choice["how"] == "measured" and pt["passes_gate"] and pc["passes_gate"]
    assert per_channel_dense_layers(chosen.parsed) == []
    # the per-channel multipliers and shifts of 1,664 output channels are most of the per-channel arena
    assert pt["arena_bytes"] * 2 < pc["arena_bytes"] and pt["tflite_bytes"] < pc["tflite_bytes"]
    assert pt["tflite_bytes"] == len(chosen)
    assert chosen.arena_bytes == pt["arena_bytes"] == measure_arena(bytes(chosen))  # TFLM's bisection, again
    assert f"arena {pt['arena_bytes']:,} B per-tensor vs {pc['arena_bytes']:,} B per-channel" in choice["reason"]
    assert "within the 30 dB gate" in choice["reason"]


def test_per_tensor_that_breaks_the_gate_keeps_per_channel(wide):
    model, rep = wide
    chosen = choose_dense_quantization(model, rep, target="esp-idf")
    choice = chosen.provenance["dense_quantization_choice"]
    pc, pt = choice["measured"]["per-channel"], choice["measured"]["per-tensor"]
    assert choice["chosen"] == "per-channel" and len(per_channel_dense_layers(chosen.parsed)) == 1
    assert pc["passes_gate"] and not pt["passes_gate"]
    assert pt["validation"]["snr_db"] < 30 <= pc["validation"]["snr_db"]
    # cheaper, yet refused: the gate decides first
    assert pt["arena_bytes"] + pt["tflite_bytes"] < pc["arena_bytes"] + pc["tflite_bytes"]
    assert choice["reason"].startswith("per-channel: per-tensor fails the 30 dB gate")
    # the same gate, applied by evaluate_conversion to the per-tensor conversion
    with pytest.raises(AccuracyDropError, match="SNR"):
        evaluate_conversion(model, convert(model, representative_data=rep, per_channel_dense=False), rep)


@pytest.mark.parametrize("target", ["arduino", None])
def test_the_runtime_rule_still_forces_per_tensor_on_chirale(wide, target):
    model, rep = wide  # per-tensor breaks the gate here, yet Chirale computes per-channel Dense wrong
    chosen = choose_dense_quantization(model, rep, target=target)
    choice = chosen.provenance["dense_quantization_choice"]
    assert choice["chosen"] == "per-tensor" and choice["how"] == "runtime" and choice["measured"] is None
    assert "Chirale_TensorFLowLite 2.0.0 lacks per-channel FULLY_CONNECTED" in choice["reason"]
    assert per_channel_dense_layers(chosen.parsed) == [] and chosen.arena_bytes is None


def test_export_reports_the_choice(wide, tmp_path):
    model, rep = wide
    model.save(tmp_path / "wide.keras")
    np.savez(tmp_path / "wide.npz", x=rep)
    out = tmp_path / "esp"
    run = CliRunner().invoke(cli, ["export", str(tmp_path / "wide.keras"), "--rep-data", str(tmp_path / "wide.npz"),
                                   "--target", "esp-idf", "-o", str(out)], terminal_width=200)
    assert run.exit_code == 0, (run.output, run.exception)
    summary = json.loads((out / "export.json").read_text())
    assert summary["dense_quantization"]["chosen"] == "per-channel"
    assert summary["dense_quantization"]["how"] == "measured"
    assert summary["dense_weights"] == summary["dense_quantization"]["reason"]
    assert summary["dense_quantization"]["measured"]["per-tensor"]["gate_failure"].startswith("The int8 model")
    assert "Dense weights" in run.output and "per-tensor fails the 30 dB gate" in run.output
    # an explicit choice the runtime computes wrong: refused before converting
    refused = CliRunner().invoke(cli, ["export", str(tmp_path / "wide.keras"), "--rep-data",
                                       str(tmp_path / "wide.npz"), "--target", "arduino", "--dense-quantization",
                                       "per-channel", "-o", str(tmp_path / "no")])
    assert isinstance(refused.exception, InvalidArgumentError)
    assert "--dense-quantization" in str(refused.exception) and "Chirale" in str(refused.exception)
    assert not (tmp_path / "no").exists()


def test_write_export_reports_a_choice_held_in_provenance(wide, tmp_path):
    model, rep = wide
    chosen = choose_dense_quantization(model, rep, target="arduino")
    summary = write_export(tmp_path / "out", chosen).summary
    assert summary["dense_quantization"] == chosen.provenance["dense_quantization_choice"]
    assert summary["dense_weights"].startswith("per-tensor: Chirale")
    assert json.loads((tmp_path / "out" / "export.json").read_text())["dense_quantization"]["how"] == "runtime"
