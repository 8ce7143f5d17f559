"""Knowledge distillation: train a small student on a teacher's soft targets.

- :func:`distillation_terms` — the loss, in pure TensorFlow (Keras 3 and tf-keras).
- :func:`teacher_logits_model` — strip a teacher's final softmax (:func:`ends_in_softmax` detects it);
  :func:`student_logits_model` — the same for a student, sharing (and so training) its weights.
- :class:`Distiller`, :class:`MultiStudentDistiller` — ``keras.Model`` trainers.
- :func:`distill`, :func:`distill_chain` — one-call training returning :class:`DistillResult`.
- :func:`train_from_scratch` — the baseline: the student on the labels alone, same recipe and augmentation.
"""

from typing import Any

from edgekd._callable import make_callable
from edgekd.distill.api import DistillResult, distill, distill_chain, results_table
from edgekd.distill.losses import distillation_terms, ends_in_softmax, ensemble_logits, soft_kl, teacher_logits_model

# Defined in distiller.py, whose keras.Model subclasses import TensorFlow: loaded on first use, so that
# `import edgekd.distill` (and `edgekd --help`) stays free of TensorFlow as the other stages are.
_FROM_DISTILLER = ("Distiller", "MultiStudentDistiller", "adapt_inputs", "student_logits_model")
_FROM_BASELINE = ("train_from_scratch",)

__all__ = [
    "DistillResult",
    "Distiller",
    "MultiStudentDistiller",
    "adapt_inputs",
    "distill",
    "distill_chain",
    "distillation_terms",
    "ends_in_softmax",
    "ensemble_logits",
    "soft_kl",
    "results_table",
    "student_logits_model",
    "teacher_logits_model",
    "train_from_scratch",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_DISTILLER:
        from edgekd.distill import distiller  # TensorFlow (see _FROM_DISTILLER)

        return getattr(distiller, name)
    if name in _FROM_BASELINE:
        from edgekd.distill import baseline  # TensorFlow, as above

        return baseline.train_from_scratch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_DISTILLER) | set(_FROM_BASELINE))


make_callable(__name__, distill)
