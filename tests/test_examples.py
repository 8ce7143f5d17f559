"""Every script in examples/ runs (with tiny settings) so none rots."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# script -> arguments that make it quick
TINY = {
    "export_digits.py": ["--epochs", "2"],
}


def _examples():
    return sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))


def test_every_example_has_tiny_settings():
    missing = [f for f in _examples() if f not in TINY and f != "demo.py"]
    assert not missing, f"add tiny settings for {missing} to TINY (or a test of their own)"


@pytest.mark.parametrize("script", sorted(TINY))
def test_example_runs(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "--out", str(tmp_path / "o"),
                           *TINY[script]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.listdir(tmp_path / "o")
