"""check takes the model object and returns it enriched; export and check run LiteRT and quantize one way.

The spies below wrap the real interpreter runs (nothing is replaced) to see what check fed them and got back.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.check import check
from edgekd.check.tflm import run_tflm
from edgekd.convert import evaluate_conversion
from edgekd.convert.runtime import LiteRTJob, run_litert
from edgekd.model import ConvertedModel


@pytest.fixture
def seen(monkeypatch):
    """Every LiteRT ``outputs`` job (job, result) and TFLM run (inputs, outputs) from here on."""
    import edgekd.check.core as core
    import edgekd.convert.runtime as runtime

    record: dict[str, list] = {"litert": [], "tflm": []}

    def litert(model, jobs, **kwargs):
        results = run_litert(model, jobs, **kwargs)
        record["litert"] += [(j, r) for j, r in zip(jobs, results) if j.kind == "outputs"]
        return results

    def tflm(model, **kwargs):
        result = run_tflm(model, **kwargs)
        record["tflm"].append((kwargs.get("inputs"), result[1]))
        return result

    monkeypatch.setattr(runtime, "run_litert", litert)
    monkeypatch.setattr(core, "run_litert", litert)
    monkeypatch.setattr(core, "run_tflm", tflm)
    return record


def test_check_parses_once_and_returns_the_model_with_its_arena(digits_tflite, digits, monkeypatch):
    import edgekd.flatbuffer as flatbuffer

    verified = []
    real = flatbuffer.verify
    monkeypatch.setattr(flatbuffer, "verify", lambda *a, **k: (verified.append(1), real(*a, **k))[1])
    report = check(digits_tflite, board="nano33ble", data=digits.test.x[:8], host_latency=False)
    assert len(verified) == 1  # read once; ops, profile, TFLM and LiteRT use the parsed model
    model = report.model
    assert isinstance(model, ConvertedModel) and report.model_path == digits_tflite
    assert model.arena_bytes == report.arena.arena_bytes > 0
    assert bytes(model) == open(digits_tflite, "rb").read()
    again = check(model, board="nano33ble", host_latency=False)  # the object goes in as it came out
    assert again.model.arena_bytes == model.arena_bytes and len(verified) == 1


def test_export_and_check_measure_int8_accuracy_the_same_way(digits_model, digits, seen):
    keras_model, data = digits_model
    model = ConvertedModel.coerce(data)
    x, y = digits.test.x, digits.test.y
    exported = evaluate_conversion(keras_model, model, x, y, max_accuracy_drop=None)
    report = check(model, board="nano33ble", data=x, labels=y, host_latency=False)
    assert exported.tflite_accuracy == report.accuracy.litert_accuracy
    (export_job, export_out), (check_job, check_out) = seen["litert"]
    assert (export_job.kernels, export_job.mode) == (check_job.kernels, check_job.mode) == ("builtin", "predict")
    # Output for output the same run. XNNPACK (export's kernels before) differs from the builtin
    # kernels by a step on some of these outputs.
    np.testing.assert_array_equal(model.dequantize(check_out.value), export_out.value)


def test_check_quantizes_ties_as_tflite_does(digits_model, seen):
    model = ConvertedModel.coerce(digits_model[1])
    scale, zero_point = model.input_quant
    k = 2 * np.random.default_rng(0).integers(0, (127 - zero_point) // 2, size=(24, 8, 8, 1))  # even k
    x = ((k + 0.5) * np.float32(scale)).astype(np.float32)
    ties = x / np.float32(scale) == (k + 0.5).astype(np.float32)
    assert ties.mean() > 0.5  # most pixels lie exactly halfway between two int8 steps
    away = model.quantize(x)
    even = np.clip(np.round(x / np.float32(scale)) + zero_point, -128, 127).astype(np.int8)  # NumPy's rounding
    assert (away != even).sum() == ties.sum()  # on every tie the two rounding rules disagree
    check(model, board="nano33ble", data=x, host_latency=False)
    (tflm_in, tflm_out), = seen["tflm"]
    np.testing.assert_array_equal(tflm_in, away)  # TFLM got TFLite's rounding (the firmware's)
    (_, litert_out), = seen["litert"]
    jobs = [LiteRTJob("outputs", kernels="builtin", inputs=q) for q in (away, even)]  # raw: these very bytes
    raw = [r.value for r in run_litert(model, jobs)]
    assert not np.array_equal(raw[0], raw[1])  # the rounding shows in the outputs ...
    np.testing.assert_array_equal(litert_out.value.reshape(24, -1), raw[0])  # ... and LiteRT's inputs were `away`
