"""Fixtures of the compiled-engine tests: the TFLM trees and int8 models with random weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_TREES = {"chirale": "Chirale_TensorFLowLite", "esp": "esp-tflite-micro"}


def tree_path(which: str) -> Path | None:
    """The shared TFLM tree (``shared/tflm/<tree>`` in or beside the checkout), or None."""
    for base in (ROOT / "shared" / "tflm", ROOT.parent / "shared" / "tflm"):
        if (base / _TREES[which]).is_dir():
            return base / _TREES[which]
    return None


def _facts(which: str):
    from edgekd.boards import runtime as runtimes

    path = tree_path(which)
    if path is None:
        pytest.skip(f"no {_TREES[which]} tree in shared/tflm/ (see docs/firmware.md)")
    return runtimes.tree_facts(path)


@pytest.fixture(scope="session")
def chirale():
    """Chirale_TensorFLowLite 2.0.0 (CMSIS-NN kernels)."""
    return _facts("chirale")


@pytest.fixture(scope="session")
def esp():
    """esp-tflite-micro 1.4.0 (reference kernels on a build without ESP-NN)."""
    return _facts("esp")


def int8(model, *, seed: int = 0, per_channel_dense=None, samples: int = 32):
    """A Keras model as a full-int8 ConvertedModel, calibrated on uniform random data."""
    from edgekd.convert import convert

    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    rep = rng.uniform(-1.0, 1.0, (samples, *shape)).astype("float32")
    return convert(model, mode="int8", representative_data=rep, per_channel_dense=per_channel_dense)


def random_inputs(model, n: int = 8, seed: int = 1) -> np.ndarray:
    """``n`` random int8 inputs for a converted model."""
    shape = tuple(model.parsed.input_tensors[0].shape)
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape[1:]), dtype=np.int8)


def assert_bit_exact(model, facts, *, runtime: str, n: int = 8, seed: int = 1) -> None:
    """The compiled engine's output bytes equal the interpreter's, both built from ``facts``' tree."""
    from edgekd.engine import compile_model
    from edgekd.engine.build import run_engine, run_interpreter

    x = random_inputs(model, n, seed)
    engine = compile_model(model, runtime=runtime)
    got = run_engine(engine, x, facts=facts).outputs
    want = run_interpreter(model, x, facts=facts).outputs
    np.testing.assert_array_equal(got, want)


os.environ.setdefault("EDGEKD_BUILD_DIR", str(ROOT / "build" / "edgekd"))
