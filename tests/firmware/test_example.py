"""examples/firmware_digits.py runs end to end with tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_firmware_digits_example(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "firmware_digits.py"), "--out",
                           str(tmp_path), "--epochs", "1", "--samples", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for sub, target, board in (("nano33ble_sense_arduino", "arduino", "nano33ble"),
                               ("esp32s3_idf", "esp-idf", "esp32s3")):
        marker = json.loads((tmp_path / sub / "edgekd-project.json").read_text())
        assert (marker["target"], marker["board"]) == (target, board)
        assert f"flash: edgekd flash {tmp_path / sub} --port PORT" in proc.stdout
    assert (tmp_path / "nano33ble_sense_arduino" / "edgekd_digits" / "edgekd_digits.ino").is_file()
    assert (tmp_path / "esp32s3_idf" / "main" / "main.cc").is_file()
