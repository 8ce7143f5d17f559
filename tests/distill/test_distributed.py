"""MirroredStrategy on two logical CPU devices gives the loss and update of one device (global-batch mean)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT


def test_mirrored_two_devices_equals_one_device():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "tests.distill._mirrored_child"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, two = out["one"], out["two"]
    assert one["replicas"] == 1 and two["replicas"] == 2
    for key in ("eval_loss", "eval_soft", "fit_loss"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, err_msg=key)
    # the update after one step on the same batch: gradients are the global-batch mean on both
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
