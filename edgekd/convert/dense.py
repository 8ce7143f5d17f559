"""Choose how Dense (FULLY_CONNECTED) weights are quantized for a target: measured, within the accuracy gate.

Two rules decide it, in order:

1. **Correctness** (:func:`edgekd.convert.dense_quantization`): where the
   target's TFLM runtime lacks per-channel FULLY_CONNECTED (Chirale_TensorFLowLite
   2.0.0, the Arduino/PlatformIO runtime; and so also for "every target"), Dense
   weights are per tensor, without measuring anything.
2. **Cost** (:func:`choose_dense_quantization` where the runtime computes both):
   the model is converted both ways; each is measured — the TFLM arena
   (:func:`edgekd.firmware.measure_arena`, TFLM's interpreter on this host), the
   flatbuffer size (flash), and the conversion gate of
   :func:`edgekd.convert.evaluate_conversion` on validation data. Per-tensor is
   chosen when it passes the gate and its arena + flatbuffer is not larger;
   per-channel otherwise. Per-channel FULLY_CONNECTED keeps a multiplier and a
   shift per output channel in the arena (plus the per-channel scales and zero
   points in the flatbuffer), which on wide Dense models (the MLPerf Tiny
   anomaly-detection autoencoder) is most of the arena.

The chosen :class:`~edgekd.model.ConvertedModel` records the choice and why in
its provenance (``dense_quantization`` and ``dense_quantization_choice``), which
``edgekd export`` writes to ``export.json`` and prints.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from edgekd.convert import (DEFAULT_MIN_SNR_DB, ConversionReport, _rep_data, check_gate, convert,
                            dense_quantization, evaluate_conversion, gate_failure, load_model, model_input_shape)
from edgekd.errors import TFLMCrashError, invalid_value
from edgekd.model import ConvertedModel, as_shape

__all__ = ["DENSE_CHOICES", "choose_dense_quantization"]

DENSE_CHOICES = ("auto", "per-channel", "per-tensor")
_NAMES = {True: "per-channel", False: "per-tensor"}


def _validation(validation_data: Any, representative_data: Any, shape: tuple[int, ...],
                source: Optional[tuple[int, ...]], n: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(x, y or None) to gate on: ``validation_data`` (x or (x, y)), else the calibration inputs, unlabeled."""
    if validation_data is None:
        return _rep_data(representative_data, source or shape, n), None
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        x, y = validation_data
        return np.asarray(x, dtype=np.float32), (None if y is None else np.asarray(y))
    return np.asarray(validation_data, dtype=np.float32), None


def _measure(keras_model: Any, model: ConvertedModel, x: np.ndarray, y: Optional[np.ndarray],
             gate: dict[str, Any]) -> dict[str, Any]:
    """Arena, flatbuffer size and the conversion gate of one candidate."""
    from edgekd.firmware import measure_arena  # the firmware stage imports convert: loaded on use

    try:
        arena: Optional[int] = measure_arena(model)
        arena_error = None
    except TFLMCrashError as e:
        arena, arena_error = None, str(e)
    report = evaluate_conversion(keras_model, model, model.adapt(x), y, mode="int8", task=gate["task"],
                                 max_accuracy_drop=None, min_snr_db=None)
    failure = gate_failure(report, max_accuracy_drop=gate["max_accuracy_drop"], min_snr_db=gate["min_snr_db"])
    return {"arena_bytes": arena, "tflite_bytes": len(model), "passes_gate": failure is None,
            "gate_failure": failure, "arena_error": arena_error, "report": report}


def _metric(report: ConversionReport) -> tuple[str, str, str]:
    """(name, value, unit) of the gate's metric for ``report``."""
    if report.task == "regression":
        return "SNR", f"{report.snr_db:.1f}", " dB"
    if report.accuracy_drop is not None:
        return "accuracy drop", f"{report.accuracy_drop:.2f}", " pp"
    return "top-1 agreement", f"{100 * report.agreement:.1f}", " %"


def _gate_text(report: ConversionReport, gate: dict[str, Any]) -> str:
    if report.task == "regression":
        limit = gate["min_snr_db"]
        return "no SNR gate" if limit is None else f"the {limit:g} dB gate"
    limit = gate["max_accuracy_drop"]
    return "no accuracy gate" if limit is None else f"the {limit:g} pp gate"


def _reason(per_tensor: bool, pc: dict[str, Any], pt: dict[str, Any], gate: dict[str, Any]) -> str:
    """One line: what was chosen, the two arenas and flatbuffers, and the gate metric of both."""
    name, v_pt, unit = _metric(pt["report"])
    v_pc = _metric(pc["report"])[1]
    a = lambda m: "not measured" if m["arena_bytes"] is None else f"{m['arena_bytes']:,} B"  # noqa: E731
    sizes = (f"arena {a(pt)} per-tensor vs {a(pc)} per-channel, flatbuffer {pt['tflite_bytes']:,} B vs "
             f"{pc['tflite_bytes']:,} B")
    metric = f"{name} {v_pt}{unit} per-tensor vs {v_pc}{unit} per-channel"
    if per_tensor:
        why = "within " + _gate_text(pt["report"], gate) if pt["passes_gate"] else "per-channel fails the gate too"
        return f"per-tensor: {sizes}; {metric}, {why}"
    if not pt["passes_gate"]:
        return f"per-channel: per-tensor fails {_gate_text(pt['report'], gate)} ({metric}); {sizes}"
    if pt["arena_bytes"] is None:
        return f"per-channel: TFLM could not measure the per-tensor model ({pt['arena_error']}); {metric}"
    return f"per-channel: per-tensor is not smaller ({sizes}); {metric}"


def _pick(pc: dict[str, Any], pt: dict[str, Any]) -> bool:
    """Whether per-tensor wins: within the gate, and arena + flatbuffer not larger than per-channel's."""
    if not pt["passes_gate"]:
        return False
    if not pc["passes_gate"]:
        return True
    if pt["arena_bytes"] is None:
        return False
    if pc["arena_bytes"] is None:
        return True
    return pt["arena_bytes"] + pt["tflite_bytes"] <= pc["arena_bytes"] + pc["tflite_bytes"]


def _record(model: ConvertedModel, chosen: str, how: str, reason: str, keras_source: Optional[str],
            measured: Optional[dict[str, Any]] = None) -> ConvertedModel:
    """``model`` with the choice in its provenance (and the Keras file it came from)."""
    prov = dict(model.provenance)
    if keras_source is not None:
        prov["keras_model"] = keras_source
    prov["dense_quantization"] = chosen
    prov["dense_quantization_choice"] = {"chosen": chosen, "how": how, "reason": reason, "measured": measured}
    return model.with_(provenance=prov)


def choose_dense_quantization(
    model: Any,
    representative_data: Any,
    *,
    target: Optional[str] = None,
    validation_data: Any = None,
    max_accuracy_drop: Optional[float] = 1.0,
    task: str = "auto",
    min_snr_db: Optional[float] = DEFAULT_MIN_SNR_DB,
    num_calibration_samples: int = 200,
    float_io: bool = False,
    input_shape: Optional[Sequence[int]] = None,
    labels: Optional[Sequence[str]] = None,
    source_shape: Optional[Sequence[int]] = None,
) -> ConvertedModel:
    """Convert to int8 with the Dense-weight quantization that costs least on ``target`` within the gate.

    Where the target's runtime lacks per-channel FULLY_CONNECTED
    (:func:`edgekd.convert.dense_quantization`), Dense weights are per tensor
    and nothing is measured. Otherwise the model is converted both ways and
    per-tensor is chosen when it passes the conversion gate (that of
    :func:`edgekd.convert.evaluate_conversion`, with the same options) and
    its TFLM arena + flatbuffer is not larger than per-channel's; else
    per-channel. The choice does not refuse a model: when neither passes the
    gate, per-channel is returned and :func:`evaluate_conversion` raises.

    Args:
        model: A ``keras.Model`` or a path accepted by :func:`edgekd.convert.load_model`.
        representative_data: Calibration inputs, as for :func:`edgekd.convert.convert`.
        target: ``"arduino"``, ``"platformio"``, ``"esp-idf"``, or ``None`` for
            every target (whose runtimes include one without per-channel:
            per tensor).
        validation_data: Inputs ``x``, or ``(x, y)`` with integer labels, to
            gate on; by default the calibration inputs, without labels.
        max_accuracy_drop: As :func:`edgekd.convert.evaluate_conversion`.
        task: As :func:`edgekd.convert.evaluate_conversion`.
        min_snr_db: As :func:`edgekd.convert.evaluate_conversion`.
        num_calibration_samples: As :func:`edgekd.convert.convert`.
        float_io: As :func:`edgekd.convert.convert`.
        input_shape: As :func:`edgekd.convert.convert`.
        labels: As :func:`edgekd.convert.convert`.
        source_shape: As :func:`edgekd.convert.convert`.

    Returns:
        The chosen int8 :class:`~edgekd.model.ConvertedModel`. Its provenance
        holds ``dense_quantization`` (``"per-channel"`` / ``"per-tensor"``) and
        ``dense_quantization_choice``: ``chosen``, ``how`` (``"runtime"`` or
        ``"measured"``), a one-line ``reason`` and, when measured, the arena,
        flatbuffer size and gate result of both. A measured model carries its
        TFLM arena (``arena_bytes``), which ``edgekd firmware`` reuses.

    Raises:
        InvalidArgumentError: Bad option values or target.
        DataError: Calibration or validation data of the wrong shape/dtype.
        ConversionError: The model cannot be fully int8-quantized.
    """
    check_gate(max_accuracy_drop=max_accuracy_drop, task=task, min_snr_db=min_snr_db)
    rule = dense_quantization(target)
    options = dict(mode="int8", representative_data=representative_data, float_io=float_io, labels=labels,
                   num_calibration_samples=num_calibration_samples, input_shape=input_shape, source_shape=source_shape)
    keras_source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if keras_source is not None:
        model = load_model(model, input_shape=input_shape)
    if not rule.per_channel:
        return _record(convert(model, per_channel_dense=False, **options), "per-tensor", "runtime", rule.reason,
                       keras_source)
    if not isinstance(num_calibration_samples, int) or num_calibration_samples < 1:
        raise invalid_value("num_calibration_samples", "a positive integer", num_calibration_samples)
    shape = model_input_shape(model, input_shape=input_shape)
    x, y = _validation(validation_data, representative_data, shape, as_shape(source_shape, "source_shape"),
                       num_calibration_samples)
    gate = {"max_accuracy_drop": max_accuracy_drop, "task": task, "min_snr_db": min_snr_db}
    models = {pc: convert(model, per_channel_dense=pc, **options) for pc in (True, False)}
    measured = {pc: _measure(model, m, x, y, gate) for pc, m in models.items()}
    per_tensor = _pick(measured[True], measured[False])
    reason = _reason(per_tensor, measured[True], measured[False], gate)
    table = {_NAMES[pc]: {**{k: v for k, v in m.items() if k != "report"}, "validation": m["report"].to_dict()}
             for pc, m in measured.items()}
    chosen = not per_tensor
    result = models[chosen]
    if measured[chosen]["arena_bytes"] is not None:
        result = result.with_(arena_bytes=measured[chosen]["arena_bytes"])
    return _record(result, _NAMES[chosen], "measured", reason, keras_source, table)
