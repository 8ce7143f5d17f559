"""One call for the CLI: (prune →) (QAT / quantization-aware distillation →) int8 TFLite.

``edgekd export … --qat --epochs N --prune S`` and ``edgekd distill … --qat``
call :func:`qat_then_convert` and write the returned bytes like any other
converted model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from edgekd.errors import invalid_value
from edgekd.optimize.prune import PruneResult, format_sparsity, gzip_size, prune
from edgekd.optimize.qat import QATResult, convert_qat, format_history, quantize_aware
from edgekd.convert import convert


@dataclasses.dataclass(frozen=True, eq=False)
class OptimizeReport:
    """What :func:`qat_then_convert` did.

    Attributes:
        tflite: The full-int8 ``.tflite`` bytes (static batch 1, builtin int8 ops only).
        qat: The QAT result, or ``None`` when ``qat=False``.
        pruning: The pruning result, or ``None`` without ``prune_sparsity``.
        gzip_bytes: gzip -9 size of ``tflite`` (what pruning shrinks).
    """

    tflite: bytes
    qat: Optional[QATResult]
    pruning: Optional[PruneResult]
    gzip_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "tflite_bytes": len(self.tflite),
            "gzip_bytes": self.gzip_bytes,
            "qat": None if self.qat is None else self.qat.to_dict(),
            "pruning": None if self.pruning is None else self.pruning.to_dict(),
        }


def format_report(report: OptimizeReport) -> str:
    """Render an :class:`OptimizeReport` as plain text."""
    parts = []
    if report.pruning is not None:
        parts.append("pruning:\n" + format_sparsity(report.pruning))
    if report.qat is not None:
        q = report.qat
        who = f" (distilled from {q.teacher}, T={q.temperature:g}, alpha={q.alpha:g})" if q.teacher else ""
        parts.append(f"quantization-aware training{who}:\n" + format_history(report.qat))
    parts.append(f"int8 .tflite: {len(report.tflite)} bytes (gzip -9: {report.gzip_bytes} bytes)")
    return "\n".join(parts)


def qat_then_convert(
    model: Any,
    *,
    data: Any,
    epochs: int = 3,
    qat: bool = True,
    teacher: Any = None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    prune_sparsity: Optional[float] = None,
    prune_epochs: Optional[int] = None,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    representative_data: Any = None,
    float_io: bool = False,
    per_channel_dense: Optional[bool] = None,
    seed: int = 0,
    print_fn: Optional[Callable[[str], None]] = None,
) -> OptimizeReport:
    """Optionally prune, then quantization-aware fine-tune, then convert to full-int8 TFLite.

    With ``prune_sparsity`` the model is magnitude-pruned first
    (:func:`edgekd.optimize.prune`) and QAT uses tfmot's prune-preserving
    scheme, so the zeros survive into the int8 weights. With ``qat=False``
    the (pruned) model is converted by post-training quantization
    (:func:`edgekd.convert.convert`).

    Args:
        model: A trained Keras 3 Sequential/Functional classifier.
        data: Labeled fine-tuning data (Dataset, Split or ``(x, y)``).
        epochs: QAT fine-tuning epochs.
        qat: Run QAT (``--qat``); if False, only prune (``--prune``) then post-training quantize.
        teacher: A Keras teacher for quantization-aware distillation (``edgekd distill … --qat``).
        temperature: Distillation temperature.
        alpha: Weight of the hard label loss.
        prune_sparsity: Target sparsity in [0, 1) (``--prune``); ``None`` skips pruning.
        prune_epochs: Pruning fine-tuning epochs (default: ``epochs``).
        batch_size: Batch size of both fine-tunings.
        learning_rate: Adam learning rate of both fine-tunings.
        representative_data: Calibration inputs (default: 200 training inputs).
        float_io: Keep float32 model inputs/outputs.
        per_channel_dense: As :func:`edgekd.convert.convert` (Dense weights per channel or per tensor).
        seed: Random seed.
        print_fn: Progress lines (e.g. ``print``); silent if ``None``.

    Returns:
        An :class:`OptimizeReport` holding the ``.tflite`` bytes.
    """
    if not isinstance(qat, bool):
        raise invalid_value("qat", "True or False", qat)
    if not qat and prune_sparsity is None:
        raise invalid_value("prune_sparsity", "a sparsity in [0, 1) when qat=False (nothing to do otherwise)",
                            prune_sparsity)
    if teacher is not None and not qat:
        raise invalid_value("teacher", "None when qat=False (distillation happens during QAT)", teacher)
    pruning = None
    if prune_sparsity is not None:
        pruning = prune(model, data=data, epochs=epochs if prune_epochs is None else prune_epochs,
                        target_sparsity=prune_sparsity, batch_size=batch_size, learning_rate=learning_rate,
                        representative_data=representative_data, seed=seed, print_fn=print_fn)
        model = pruning.model
    result = None
    if qat:
        result = quantize_aware(model, data=data, epochs=epochs, teacher=teacher, temperature=temperature,
                                alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
                                preserve_sparsity=pruning is not None, seed=seed, print_fn=print_fn)
        tflite = convert_qat(result, representative_data=representative_data, float_io=float_io,
                             per_channel_dense=per_channel_dense)
    else:
        rep = representative_data
        if rep is None:
            rep = data.train.x if hasattr(data, "train") else (data.x if hasattr(data, "x") else data[0])
        tflite = convert(model, mode="int8", representative_data=rep, float_io=float_io,
                         per_channel_dense=per_channel_dense)
    return OptimizeReport(tflite=tflite, qat=result, pruning=pruning, gzip_bytes=gzip_size(tflite))
