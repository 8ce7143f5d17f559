"""Training recipes for :func:`edgekd.distill.distill`, ``edgekd distill --recipe`` and ``edgekd fit --recipe``.

``"patient"`` follows Beyer et al., *Knowledge distillation: A good teacher is patient and consistent*
(2022): the teacher and the student see the same augmented view of every example (function matching,
``Distiller(augment=...)``), augmentation is aggressive (mixup), and training is long, with a linear
warm-up then a cosine decay of the learning rate to zero. The teacher runs on every batch (its logits
cannot be cached under augmentation) — except on images under 16 pixels a side, which get no augmentation
(measured on 8×8 digits, docs/distill.md: at 150–200 epochs mixup and one-pixel shifts cost every MLP and CNN
student tried 0.7–11 points of validation accuracy, crops gained nothing) and so a cached teacher. Mixup does pay
on 8×8 digits with a 4× longer run (``augment="mixup", epochs=600``: the best configuration in all three settings
of docs/benchmarks.md ``distill_patient_long``), at about 5× the time of the 150-epoch cached default (205 s
against 43 s per student); ask for it explicitly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

from edgekd.errors import invalid_value

__all__ = ["RECIPES", "Recipe", "default_augment", "get_recipe", "input_kind", "learning_rate_schedule"]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A distillation schedule and its augmentation defaults.

    Attributes:
        name: The recipe's name.
        epochs: Epochs when the caller gives none.
        warmup_fraction: Share of the steps spent warming the learning rate up linearly from 0.
        final_lr_fraction: The learning rate at the end of the cosine decay, as a fraction of the peak.
        augment: Default augmentation per input kind (:func:`input_kind`); None: no augmentation.
    """

    name: str
    epochs: int
    warmup_fraction: float
    final_lr_fraction: float
    augment: Mapping[str, Optional[str]]


RECIPES: Mapping[str, Recipe] = {
    "patient": Recipe("patient", epochs=150, warmup_fraction=0.05, final_lr_fraction=0.0,
                      augment={"image": "shift+mixup", "small_image": None,
                               "spectrogram": "time_shift+specaugment+mixup", "other": "mixup"}),
}


def get_recipe(name: Any) -> Optional[Recipe]:
    """The recipe called ``name`` (None for None)."""
    if name is None or isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise invalid_value("recipe", f"None or one of {', '.join(sorted(RECIPES))}", name)
    return RECIPES[name]


def input_kind(shape: Optional[Sequence[Optional[int]]]) -> str:
    """``"image"``, ``"small_image"``, ``"spectrogram"`` or ``"other"`` for a model input shape (no batch dimension).

    ``(time, freq)`` and single-channel ``(H, W, 1)`` at least three times taller than wide (49×10 MFCCs)
    are spectrograms; other ``(H, W, C)`` are images, *small* below 16 pixels a side (a one-pixel shift of an
    8×8 digit is 12% of it: measured, it costs a 1.2k-parameter MLP student 11 points and a 1.5k-parameter CNN 2
    points). Pass ``augment=`` explicitly when this guess is wrong.
    """
    if shape is None:
        return "other"
    if len(shape) == 2:
        return "spectrogram"
    if len(shape) == 3:
        h, w, c = shape
        if c == 1 and h is not None and w is not None and h >= 3 * w:
            return "spectrogram"
        return "small_image" if h is not None and w is not None and min(h, w) < 16 else "image"
    return "other"


def default_augment(recipe: Optional[Recipe], shape: Optional[Sequence[Optional[int]]]) -> Optional[str]:
    """The recipe's augmentation for inputs of ``shape`` (None without a recipe)."""
    if recipe is None:
        return None
    return recipe.augment[input_kind(shape)]


def learning_rate_schedule(recipe: Recipe, learning_rate: float, *, epochs: int, steps_per_epoch: int) -> Any:
    """Linear warm-up from 0 to ``learning_rate`` over ``warmup_fraction`` of the steps, then cosine decay.

    Returns:
        A ``keras.optimizers.schedules.CosineDecay`` over ``epochs · steps_per_epoch`` steps.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use

    total = max(1, int(epochs) * int(steps_per_epoch))
    warmup = min(total - 1, int(math.ceil(recipe.warmup_fraction * total)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=total - warmup, alpha=recipe.final_lr_fraction,
        warmup_target=float(learning_rate), warmup_steps=warmup)
