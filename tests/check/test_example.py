"""examples/check_digits.py runs end to end."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_check_digits_example():
    env = dict(os.environ, PYTHONPATH=ROOT)
    script = os.path.join(ROOT, "examples", "check_digits.py")
    proc = subprocess.run([sys.executable, script, "--epochs", "3"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Result: PASS" in proc.stdout and "Accuracy on" in proc.stdout
