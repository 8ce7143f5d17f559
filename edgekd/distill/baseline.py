"""The from-scratch baseline a distilled student must beat, trained the way :func:`~edgekd.distill.distill` trains.

A student distilled with a recipe (a long warm-up + cosine schedule, mixup) compared with a student trained from
scratch at a constant learning rate without augmentation measures the recipe, not the teacher. On clean digits
that whole gain was the schedule's and mixup's: given the same mixup and 600 epochs, the from-scratch student was
level with the distilled one (−0.1 ± 0.4 points over 20 seeds; docs/distill.md). :func:`train_from_scratch` trains
the comparison with the same recipe and augmentation, on the labels alone.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Union

import keras
import tensorflow as tf

from edgekd.distill import augment as augment_mod
from edgekd.distill.api import _check_array, _check_labels, check_schedule
from edgekd.distill.distiller import _validate_model, adapt_inputs, student_logits_model
from edgekd.distill.losses import declared_input_shape
from edgekd.distill.recipes import default_augment, learning_rate_schedule
from edgekd.errors import DataError, invalid_value

__all__ = ["train_from_scratch"]


class _ScratchTrainer(keras.Model):
    """Trains ``logits_model`` on hard (or mixed) labels, each batch augmented as the Distiller's would be."""

    def __init__(self, logits_model, augment, num_classes: int, input_shape, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "scratch_trainer"), **kwargs)
        self.logits_model = logits_model
        self.augment = augment
        self.num_classes = num_classes
        self.student_shape = input_shape
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def build(self, input_shape):  # the student is built already
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, x, training=None):
        return self.logits_model(adapt_inputs(x, self.student_shape), training=training)

    def train_step(self, data):
        x, y = data
        if self.augment is not None:  # at the data's resolution, then resized: the view distill's student gets
            x, y = augment_mod.apply(self.augment, x, y, self.num_classes)
        rows, _ = augment_mod.soft_labels(y, self.num_classes)  # mixed rows pass through
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            loss = tf.nn.compute_average_loss(tf.nn.softmax_cross_entropy_with_logits(rows, logits))
            if self.logits_model.losses:  # the student's regularizers, as the Distiller adds them
                loss = loss + tf.nn.scale_regularization_loss(tf.add_n(self.logits_model.losses))
        variables = self.logits_model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def train_from_scratch(
    student,
    *,
    x,
    y,
    epochs: Optional[int] = None,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    recipe: Optional[str] = None,
    augment: Any = "auto",
    callbacks: Optional[Sequence[Any]] = None,
    shuffle: bool = True,
    seed: Optional[int] = None,
    verbose: Union[int, str] = "auto",
):
    """Train ``student`` on the labels alone, with the schedule and augmentation :func:`distill` would use.

    Call it with the options given to :func:`~edgekd.distill.distill` (less the teacher's) and the two students
    differ only in what they learn from: a gain is then the teacher's, not the recipe's.

    Args:
        student: The Keras model to train (logits, or a final softmax: its pre-softmax logits are trained).
            Trained in place.
        x: Training inputs (NumPy), at the resolution :func:`distill` got them; the student gets them resized to
            its own input shape, after augmentation.
        y: Labels: integer ids or one-hot rows. Unlabeled examples (``-1``, all-zero rows) are left out.
        epochs: Number of epochs (> 0); required without a recipe, else the recipe's.
        batch_size: Batch size.
        learning_rate: Peak learning rate of Adam (constant without a recipe).
        recipe: ``None`` or ``"patient"``: the learning-rate schedule, as in :func:`distill`.
        augment: ``"auto"`` (the recipe's augmentation for ``x``'s input kind; none without a recipe), ``None``,
            a built-in spec, a Keras layer or a callable, as in :func:`distill`. Mixing augmentations mix the
            labels alike.
        callbacks: Keras callbacks.
        shuffle: Shuffle each epoch.
        seed: If given, ``keras.utils.set_random_seed(seed)`` first.
        verbose: Keras ``fit`` verbosity.

    Returns:
        ``student``, trained.

    Raises:
        InvalidArgumentError: An option is out of range, or ``student`` is not a built Keras model.
        DataError: No labeled example, labels that do not match ``x`` or the student, or inputs of another
            shape than the student's that are not resizable images.
    """
    plan, epochs = check_schedule(recipe, epochs, batch_size)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise invalid_value("learning_rate", "a positive number", learning_rate)
    _validate_model(student, "student")
    x = _check_array("x", x)
    shape = declared_input_shape(student)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape) and not (len(shape) == 3 and x.ndim == 4):
        raise DataError(f"`x` has shape {x.shape[1:]} per example but the student takes {tuple(shape)}, and only "
                        "(H, W, C) images can be resized. Pass inputs of the student's shape.")
    num_classes = int(student.outputs[0].shape[-1])
    y = _check_labels("y", _check_array("y", y), len(x), num_classes)
    keep = (y != 0).any(-1) if y.ndim == 2 else y >= 0
    if not keep.any():
        raise DataError("`y` has no labeled example: a from-scratch student needs labels. "
                        "Pass labels (ids 0..classes-1), or compare against the teacher instead.")
    x, y = x[keep], y[keep]
    if isinstance(augment, str) and augment == "auto":
        augment = default_augment(plan, x.shape[1:])
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    layer = augment_mod.resolve(augment)
    logits_model, _ = student_logits_model(student)
    trainer = _ScratchTrainer(logits_model, layer, num_classes, shape)
    lr = learning_rate if plan is None else learning_rate_schedule(
        plan, learning_rate, epochs=epochs, steps_per_epoch=-(-len(x) // batch_size))
    trainer.compile(optimizer=keras.optimizers.Adam(float(lr) if plan is None else lr))
    trainer.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks or []), shuffle=shuffle,
                verbose=verbose)
    return student
