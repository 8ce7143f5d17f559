"""Knowledge distillation: train a small student on a teacher's soft targets."""

from edgekd.distill.losses import distillation_terms, ensemble_logits, soft_kl, teacher_logits_model

__all__ = ["distillation_terms", "ensemble_logits", "soft_kl", "teacher_logits_model"]
