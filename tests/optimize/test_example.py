"""examples/qat_digits.py runs end to end with tiny settings (QAT + distillation; pruning is tested in
test_qat.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # ~35 s; `make test-slow`. QAT itself: tests/optimize/test_qat.py and test_cli_flags.py
def test_qat_digits_example(tmp_path):
    from edgekd.flatbuffer import read_tflite

    env = dict(os.environ, PYTHONPATH=ROOT)
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "qat_digits.py"), "--out", str(out),
         "--epochs", "2", "--qat-epochs", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "QAT + distillation int8" in proc.stdout
    assert read_tflite(str(out / "student_qat_kd_int8.tflite")).is_full_integer
