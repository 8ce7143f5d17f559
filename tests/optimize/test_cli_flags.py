"""The optimize flags of the CLI: `edgekd distill --qat` and `edgekd export --qat/--prune`."""

from __future__ import annotations

import json

from edgekd.flatbuffer import read_tflite
from edgekd.export.ops import resolver_calls
from tests.conftest import assert_clean_error, run_cli


def test_distill_qat_writes_int8_model(small_cnn_path, tmp_path):
    out = tmp_path / "student.keras"
    proc = run_cli("distill", "--teacher", small_cnn_path, "--student-arch", "small_cnn:width=0.5",
                   "--dataset", "digits", "--epochs", "1", "--qat", "--qat-epochs", "1", "-o", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fb = read_tflite(str(tmp_path / "student.int8.tflite"))
    assert fb.is_full_integer and fb.input_tensors[0].dtype == "INT8"
    assert resolver_calls(fb)  # every op has a TFLM kernel
    assert "distilled + QAT (int8)" in proc.stdout


def test_export_prune_and_qat(small_cnn_path, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", small_cnn_path, "--dataset", "digits", "--qat", "--prune", "0.5", "--epochs", "1",
                   "--max-accuracy-drop", "5", "-o", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "export.json").read_text())
    opt = summary["optimize"]
    assert opt["pruning"] is not None and opt["qat"] is not None
    assert opt["gzip_bytes"] < summary["tflite_bytes"]
    assert read_tflite(str(out / "model.tflite")).is_full_integer


def test_export_qat_needs_labels(small_cnn_path, tmp_path):
    import numpy as np

    data = tmp_path / "x.npy"
    np.save(data, np.zeros((8, 8, 8, 1), np.float32))
    assert_clean_error(run_cli("export", small_cnn_path, "--rep-data", data, "--qat", "-o", tmp_path / "o"),
                       "need labels")
