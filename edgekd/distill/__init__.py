"""Knowledge distillation: train a small student on a teacher's soft targets.

- :func:`distillation_terms` — the loss, in pure TensorFlow (Keras 3 and tf-keras).
- :func:`teacher_logits_model` — strip a teacher's final softmax.
- :class:`Distiller`, :class:`MultiStudentDistiller` — ``keras.Model`` trainers.
- :func:`distill`, :func:`distill_chain` — one-call training returning :class:`DistillResult`.
"""

from edgekd.distill.losses import distillation_terms, ensemble_logits, soft_kl, teacher_logits_model
from edgekd.distill.distiller import Distiller, MultiStudentDistiller, adapt_inputs
from edgekd.distill.api import DistillResult, distill, distill_chain, results_table

__all__ = [
    "DistillResult",
    "Distiller",
    "MultiStudentDistiller",
    "adapt_inputs",
    "distill",
    "distill_chain",
    "distillation_terms",
    "ensemble_logits",
    "soft_kl",
    "results_table",
    "teacher_logits_model",
]


from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, distill)
