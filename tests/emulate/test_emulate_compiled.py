"""edgekd emulate --engine compiled: the compiled engine itself on QEMU's Cortex-M4F."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.check.test_check_compiled import model_the_engine_lacks
from tests.conftest import assert_clean_error, run_cli
from tests.engine.conftest import int8, tree_path

_READY = shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm") and tree_path("chirale") is not None
pytestmark = pytest.mark.skipif(not _READY, reason="needs arm-none-eabi-g++, qemu-system-arm and "
                                                   "shared/tflm/Chirale_TensorFLowLite")


def test_emulate_runs_the_compiled_engine(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
    path = tmp_path / "tiny.tflite"
    path.write_bytes(bytes(int8(m, per_channel_dense=False)))
    args = ("emulate", str(path), "--tflm", str(tree_path("chirale")), "--json", "--max-diff", "0")
    compiled, interpreter = (json.loads(run_cli(*args, "--engine", e).stdout) for e in ("compiled", "interpreter"))
    assert compiled["engine"] == "compiled" and interpreter["engine"] == "interpreter"
    assert compiled["passed"] and compiled["bit_exact"] and compiled["outputs"] == interpreter["outputs"]
    assert compiled["arena_used_bytes"] == 0 and compiled["ops"] == [] and interpreter["arena_used_bytes"] > 0
    assert 0 < compiled["instructions"][0] <= interpreter["instructions"][0]
    assert compiled["size"]["firmware_flash"] < interpreter["size"]["firmware_flash"]
    assert compiled["latency"]["total_ms"] <= interpreter["latency"]["total_ms"]


def test_an_op_the_engine_lacks_is_refused_before_any_build(tmp_path):
    path, op = model_the_engine_lacks(tmp_path)
    proc = run_cli("emulate", str(path), "--engine", "compiled", "--tflm", str(tree_path("chirale")))
    assert_clean_error(proc, op, "--engine interpreter")
