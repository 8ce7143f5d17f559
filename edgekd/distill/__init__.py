"""Knowledge distillation: train a small student on a teacher's soft targets.

- :func:`distillation_terms` — the loss, in pure TensorFlow (Keras 3 and tf-keras).
- :func:`teacher_logits_model` — strip a teacher's final softmax.
- :class:`Distiller`, :class:`MultiStudentDistiller` — ``keras.Model`` trainers.
- :func:`distill`, :func:`distill_chain` — one-call training returning :class:`DistillResult`.
"""

from edgekd.distill.losses import distillation_terms, ensemble_logits, soft_kl, teacher_logits_model
from edgekd.distill.distiller import Distiller, MultiStudentDistiller, adapt_inputs

__all__ = [
    "Distiller",
    "MultiStudentDistiller",
    "adapt_inputs",
    "distillation_terms",
    "ensemble_logits",
    "soft_kl",
    "teacher_logits_model",
]
