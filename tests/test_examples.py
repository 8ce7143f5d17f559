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
    "demo.py": ["--trials", "2", "--epochs", "1", "--teacher-epochs", "1", "--max-latency-ms", "100"],
}


def _examples():
    return sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))


def _tested_elsewhere(script: str) -> bool:
    """True when a test module of a stage runs the example itself."""
    for root, _, files in os.walk(os.path.join(ROOT, "tests")):
        for f in files:
            if f.endswith(".py") and f != "test_examples.py":
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    if f'"{script}"' in fh.read():
                        return True
    return False


def test_every_example_is_run_by_a_test():
    missing = [f for f in _examples() if f not in TINY and not _tested_elsewhere(f)]
    assert not missing, f"add tiny settings for {missing} to TINY (or a test of their own)"


@pytest.mark.parametrize("script", sorted(TINY))
def test_example_runs(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "--out", str(tmp_path / "o"),
                           *TINY[script]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.listdir(tmp_path / "o")
