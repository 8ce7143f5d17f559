"""One-call distillation: :func:`distill` and :func:`distill_chain`.

These are the stage functions ``edgekd distill`` and ``edgekd fit`` call:
keyword-only options validated first, a :class:`DistillResult` returned, no
disk output.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
from rich.console import Console
from rich.table import Table

from edgekd.errors import DataError, InvalidArgumentError, invalid_value
from edgekd.distill.losses import declared_input_shape, distillation_terms
from edgekd.distill.recipes import default_augment, get_recipe, learning_rate_schedule

__all__ = ["DistillResult", "check_schedule", "check_transfer_data", "distill", "distill_chain",
           "evaluate_logits_model", "results_table"]


@dataclasses.dataclass(frozen=True)
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        student: The trained student (a plain Keras model).
        history: ``History.history`` of the fit: per-epoch ``loss``,
            ``hard_loss``, ``soft_loss``, ``accuracy`` … (and ``val_*``).
        metrics: Evaluation on ``validation_data`` (empty without it):
            ``student_accuracy``, ``teacher_accuracy`` (with labels),
            ``agreement`` (share of examples where the student's top class is
            the teacher's), ``soft_loss``.
        detected: One line per teacher: what output was detected (softmax stripped or logits).
        cached: Whether the teacher logits were cached.
        temperature: The temperature used.
        alpha: The hard-loss weight used.
        recipe: The recipe's name, or None.
        augment: The augmentation applied (its :func:`~edgekd.distill.augment.get` spec, a class name), or None.
        epochs: The epochs asked for.
    """

    student: Any
    history: Mapping[str, Sequence[float]]
    metrics: Mapping[str, float]
    detected: tuple[str, ...]
    cached: bool
    temperature: float
    alpha: float
    recipe: Optional[str] = None
    augment: Optional[str] = None
    epochs: Optional[int] = None


def _check_array(name: str, value, *, allow_none: bool = False) -> Optional[np.ndarray]:
    if value is None:
        if allow_none:
            return None
        raise invalid_value(name, "a NumPy array", None)
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - report the type the user passed
        raise invalid_value(name, "a NumPy array", type(value).__name__) from None
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError(f"`{name}` is empty (shape {arr.shape}). Pass at least one example.")
    return arr


def _check_labels(name: str, y: np.ndarray, n: int, num_classes: Optional[int]) -> np.ndarray:
    if y.shape[0] != n:
        raise DataError(f"`{name}` has {y.shape[0]} labels for {n} inputs. Pass one label per input.")
    if y.ndim == 2 and y.shape[1] > 1:
        if num_classes is not None and y.shape[1] != num_classes:
            raise DataError(f"`{name}` has {y.shape[1]} columns but the models predict {num_classes} classes.")
        return y.astype(np.float32)
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"`{name}` must hold integer class ids (or one-hot rows). Received dtype {y.dtype}.")
    y = y.astype(np.int64)
    if num_classes is not None and (y.max() >= num_classes or y.min() < -1):
        raise DataError(
            f"`{name}` holds class ids in [{y.min()}, {y.max()}] but the models predict {num_classes} classes. "
            "Use ids 0..classes-1 (-1 for unlabeled examples)."
        )
    return y


def check_schedule(recipe: Optional[str], epochs: Optional[int], batch_size: int) -> tuple[Any, int]:
    """``(recipe object or None, epochs)``: the recipe's epochs when none are given; bad values refused."""
    plan = get_recipe(recipe)
    if epochs is None and plan is not None:
        epochs = plan.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise invalid_value("epochs", "a positive integer (required without a recipe)", epochs)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise invalid_value("batch_size", "a positive integer", batch_size)
    return plan, epochs


def check_transfer_data(name: str, x: np.ndarray, teachers: Sequence[Any]) -> None:
    """The transfer data must be shaped like (at least one) teacher's declared input."""
    shapes = [s for s in (declared_input_shape(m) for m in teachers) if s is not None]
    if not shapes:
        return
    got = tuple(x.shape[1:])

    def match(shape) -> bool:
        return len(shape) == len(got) and all(d is None or d == g for d, g in zip(shape, got))

    if not any(match(s) for s in shapes):
        want = " or ".join(str(tuple(s)) for s in dict.fromkeys(shapes))
        raise DataError(
            f"`{name}` has examples of shape {got} but the teacher takes {want}. "
            "Pass data shaped like the teacher's input (students get it resized to theirs)."
        )


def evaluate_logits_model(model, x, y=None, *, batch_size: int = 256, input_shape=None) -> np.ndarray:
    """Logits (or outputs) of ``model`` on ``x``, adapted to its input shape, in batches."""
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    from edgekd.distill.distiller import adapt_inputs  # TensorFlow: the trainers' module, loaded on first use

    shape = input_shape or declared_input_shape(model)
    x = np.asarray(x)
    out = [np.asarray(model(adapt_inputs(tf.constant(x[i:i + batch_size]), shape), training=False))
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0)


def distill(
    teacher,
    student,
    *,
    x,
    y=None,
    epochs: Optional[int] = None,
    batch_size: int = 64,
    temperature: float = 4.0,
    alpha: float = 0.1,
    validation_data=None,
    unlabeled_x=None,
    cache_teacher: Union[bool, str] = "auto",
    ensemble: str = "probs",
    optimizer: Any = None,
    learning_rate: float = 3e-3,
    teacher_trainable: bool = False,
    callbacks: Optional[Sequence[Any]] = None,
    shuffle: bool = True,
    seed: Optional[int] = None,
    verbose: Union[int, str] = "auto",
    recipe: Optional[str] = None,
    augment: Any = "auto",
) -> DistillResult:
    """Distil ``teacher`` (a model or an ensemble list) into ``student``.

    Args:
        teacher: A Keras model or a list of models. A final softmax is detected
            and stripped.
        student: The Keras model to train (outputs logits). Trained in place.
        x: Transfer-set inputs (NumPy), shaped like the teacher's input; the
            student gets them resized to its own input shape.
        y: Optional labels: integer ids (``-1`` for unlabeled) or one-hot rows
            (all zeros for unlabeled).
            Without labels the student learns from soft targets alone.
        epochs: Number of epochs (> 0); required without a recipe, else the recipe's
            (``"patient"``: 150).
        batch_size: Batch size.
        temperature: Softmax temperature T.
        alpha: Weight of the hard-label loss (``1 − alpha`` goes to the soft loss).
        validation_data: ``(x_val, y_val)`` or ``x_val``, evaluated each epoch
            and at the end into :attr:`DistillResult.metrics`.
        unlabeled_x: Extra unlabeled transfer inputs, appended to ``x`` with
            label ``-1`` (an all-zero row for one-hot ``y``).
        cache_teacher: ``True``, ``False`` or ``"auto"`` (cache unless the
            teacher is trained): compute the teacher logits once.
        ensemble: ``"probs"`` or ``"logits"`` (ensembles only).
        optimizer: A Keras optimizer (default: Adam(learning_rate)).
        learning_rate: Learning rate of the default optimizer.
        teacher_trainable: Mutual learning (see :class:`~edgekd.distill.Distiller`).
        callbacks: Keras callbacks.
        shuffle: Shuffle each epoch.
        seed: If given, ``keras.utils.set_random_seed(seed)`` first.
        verbose: Keras ``fit`` verbosity.
        recipe: ``None`` (constant learning rate) or ``"patient"`` (Beyer et al.
            2022): linear warm-up over 5% of the steps, then cosine decay to 0,
            augmentation by input kind when ``augment="auto"`` (images:
            ``"shift+mixup"``, none below 16 pixels a side; spectrograms:
            ``"time_shift+specaugment+mixup"``; other inputs: ``"mixup"``) and so no teacher cache
            (small images: cached; see :mod:`edgekd.distill.recipes`).
        augment: ``"auto"`` (the recipe's; none without a recipe), ``None``, a
            built-in spec (``"shift+mixup:alpha=0.4"``), a Keras preprocessing
            layer/model or a callable: the view both teacher and student see
            (``Distiller(augment=...)``).

    Returns:
        A :class:`DistillResult`.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    from edgekd.distill.distiller import Distiller  # imports TensorFlow: loaded on first use

    plan, epochs = check_schedule(recipe, epochs, batch_size)
    if cache_teacher not in (True, False, "auto"):
        raise invalid_value("cache_teacher", "True, False or 'auto'", cache_teacher)
    teachers = teacher if isinstance(teacher, (list, tuple)) else [teacher]
    x = _check_array("x", x)
    check_transfer_data("x", x, teachers)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    if isinstance(augment, str) and augment == "auto":
        augment = default_augment(plan, x.shape[1:])
    cache = (not teacher_trainable and augment is None) if cache_teacher == "auto" else bool(cache_teacher)
    distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha, ensemble=ensemble,
                          teacher_trainable=teacher_trainable, cache_teacher=cache, augment=augment)
    num_classes = int(student.outputs[0].shape[-1]) if getattr(student, "outputs", None) else None
    y = _check_array("y", y, allow_none=True)
    if y is not None:
        y = _check_labels("y", y, len(x), num_classes)
    unlabeled_x = _check_array("unlabeled_x", unlabeled_x, allow_none=True)
    if unlabeled_x is not None:
        if unlabeled_x.shape[1:] != x.shape[1:]:
            raise DataError(
                f"`unlabeled_x` has shape {unlabeled_x.shape[1:]} per example but `x` has {x.shape[1:]}. "
                "Pass transfer data of one shape."
            )
        if y is not None:  # unlabeled: id -1, or an all-zero one-hot row
            y = np.concatenate([y, np.zeros((len(unlabeled_x),) + y.shape[1:], y.dtype) if y.ndim == 2
                                else -np.ones(len(unlabeled_x), np.int64)])
        x = np.concatenate([x, unlabeled_x.astype(x.dtype)])
    val = None
    if validation_data is not None:
        if isinstance(validation_data, (list, tuple)):
            if len(validation_data) not in (1, 2):
                raise invalid_value("validation_data", "(x_val, y_val) or x_val", type(validation_data).__name__)
            vx, vy = validation_data[0], (validation_data[1] if len(validation_data) == 2 else None)
        else:
            vx, vy = validation_data, None
        vx = _check_array("validation_data[0]", vx)
        check_transfer_data("validation_data", vx, teachers)
        vy = _check_array("validation_data[1]", vy, allow_none=True)
        if vy is not None:
            vy = _check_labels("validation_data[1]", vy, len(vx), num_classes)
        val = (vx, vy) if vy is not None else (vx,)
    if optimizer is None:
        lr = learning_rate if plan is None else learning_rate_schedule(
            plan, learning_rate, epochs=epochs, steps_per_epoch=-(-len(x) // batch_size))
        optimizer = keras.optimizers.Adam(lr)
    distiller.compile(optimizer=optimizer, metrics=["accuracy"] if y is not None else None)
    history = distiller.fit(x, y, batch_size=batch_size, epochs=epochs, validation_data=val,
                            callbacks=list(callbacks or []), shuffle=shuffle, verbose=verbose)
    metrics: dict[str, float] = {}
    if val is not None:
        metrics = _evaluate(distiller, val[0], val[1] if len(val) > 1 else None, batch_size=max(batch_size, 256))
    return DistillResult(
        student=student,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        metrics=metrics,
        detected=distiller.detected,
        cached=cache,
        temperature=distiller.temperature,
        alpha=distiller.alpha,
        recipe=None if plan is None else plan.name,
        augment=_augment_name(augment, distiller.augment),
        epochs=epochs,
    )


def _augment_name(spec: Any, layer: Any) -> Optional[str]:
    if layer is None:
        return None
    return spec if isinstance(spec, str) else type(layer).__name__


def _evaluate(distiller, x, y, *, batch_size: int) -> dict[str, float]:
    s = evaluate_logits_model(distiller.student, x, batch_size=batch_size)
    t = distiller.teacher_logits(x, batch_size=batch_size)
    _, _, soft = distillation_terms(None, s, t, temperature=distiller.temperature, alpha=distiller.alpha)
    out = {"agreement": float(np.mean(s.argmax(-1) == t.argmax(-1))), "soft_loss": float(soft)}
    if y is not None:
        labels = y.argmax(-1) if y.ndim == 2 else y
        mask = (y != 0).any(-1) if y.ndim == 2 else labels >= 0
        if mask.any():
            out["student_accuracy"] = float(np.mean(s.argmax(-1)[mask] == labels[mask]))
            out["teacher_accuracy"] = float(np.mean(t.argmax(-1)[mask] == labels[mask]))
    return out


def distill_chain(teacher, models: Sequence[Any], **kwargs: Any) -> list[DistillResult]:
    """Distil step by step through teacher assistants (Mirzadeh et al., 2020).

    ``teacher → models[0] → models[1] → … → models[-1]``: each model is
    distilled from the previous one (the first from ``teacher``) with
    :func:`distill` and the same keyword options.

    Args:
        teacher: The initial teacher (a model or an ensemble list).
        models: Assistants, largest first, ending with the student.
        **kwargs: Keyword options of :func:`distill` (``x``, ``epochs`` …).

    Returns:
        One :class:`DistillResult` per step; the last one holds the student.
    """
    models = list(models)
    if not models:
        raise invalid_value("models", "a non-empty list [assistant, …, student]", models)
    if kwargs.get("teacher_trainable"):
        raise InvalidArgumentError("distill_chain trains each step from a fixed teacher; drop teacher_trainable.")
    results, current = [], teacher
    for model in models:
        result = distill(current, model, **kwargs)
        results.append(result)
        current = result.student
    return results


def results_table(rows: Sequence[tuple[str, Mapping[str, Any]]], *, print_fn: Optional[Callable] = None,
                  title: str = "Distillation") -> Any:
    """Render ``(name, {"accuracy": …, "params": …})`` rows as a rich table.

    Args:
        rows: One row per model.
        print_fn: If given, called with the rendered text; otherwise the table
            is printed to the console.
        title: Table title.

    Returns:
        The ``rich.table.Table``.
    """
    table = Table(title=title)
    for col in ("model", "params", "val accuracy", "test accuracy", "agreement"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def fmt(v, pct=True):
        if v is None:
            return "—"
        return f"{100 * v:.2f}%" if pct else f"{v:,}"

    for name, m in rows:
        table.add_row(name, fmt(m.get("params"), pct=False), fmt(m.get("val_accuracy")),
                      fmt(m.get("test_accuracy")), fmt(m.get("agreement")))
    if print_fn is not None:
        console = Console(width=100, file=io.StringIO())
        console.print(table)
        print_fn(console.file.getvalue().rstrip("\n"))
    else:
        Console().print(table)
    return table
