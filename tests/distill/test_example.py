"""examples/distill_digits.py runs end to end (tiny settings) and saves a loadable student."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_example_runs_tiny(tmp_path):
    out = tmp_path / "student.keras"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "distill_digits.py"), "--tiny",
                           "-o", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distilled student" in proc.stdout and "with activation='softmax'" in proc.stdout
    import keras

    assert keras.saving.load_model(out).count_params() == 16 * 64 + 16 + 16 * 10 + 10
