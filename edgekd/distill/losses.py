"""Distillation losses: pure TensorFlow terms plus softmax-teacher detection.

:func:`distillation_terms` is written with ``tf`` ops only (no Keras), so the
same function serves the Keras 3 :class:`~edgekd.distill.Distiller` and
tf-keras training loops (quantization-aware distillation in
``edgekd.optimize``).

The loss of Hinton et al., "Distilling the Knowledge in a Neural Network"::

    hard  = CE(y, softmax(s))                                   (T = 1)
    soft  = T² · KL(softmax(t / T) ‖ softmax(s / T))
    total = alpha · hard + (1 − alpha) · soft

The T² factor keeps the soft term's gradient magnitude independent of the
temperature (the gradient of the tempered KL scales as 1/T²).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

from edgekd.errors import InvalidArgumentError, UnsupportedLayerError, invalid_value

__all__ = [
    "distillation_terms",
    "ensemble_logits",
    "soft_kl",
    "teacher_logits_model",
    "declared_input_shape",
    "ends_in_softmax",
    "is_one_hot",
    "label_ids",
    "output_node",
    "softmax_kind",
    "validate_alpha",
    "validate_temperature",
]

_REDUCTIONS = ("mean", "none")
_ENSEMBLE_MODES = ("probs", "logits")


def declared_input_shape(model: Any) -> Optional[tuple]:
    """The input shape a single-input model declares (no batch dimension), or ``None`` (several inputs, unbuilt)."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def validate_temperature(temperature: Any) -> float:
    """Return ``temperature`` as a float, or raise if it is not a positive number."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise invalid_value("temperature", "a positive number (typically 2-8)", temperature)
    return float(temperature)


def validate_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float, or raise if it is not a number in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise invalid_value("alpha", "a number in [0, 1] (the weight of the hard-label loss)", alpha)
    return float(alpha)


def is_one_hot(y_true: Any, student_logits: Any) -> bool:
    """Whether labels are one-hot (or soft) rows, ``(batch, classes)``, rather than class ids (static shapes)."""
    num_classes = student_logits.shape[-1]
    y_shape = y_true.shape
    return bool(
        y_shape.rank is not None
        and y_shape.rank == student_logits.shape.rank
        and y_shape[-1] is not None
        and num_classes is not None
        and y_shape[-1] == num_classes
        and num_classes > 1
    )


def label_ids(y_true: Any, student_logits: Any) -> Tuple[Any, Any]:
    """Integer class ids ``(batch,)`` of any label form, and the mask of the labeled examples (pure TensorFlow).

    Class ids (``(batch,)`` or ``(batch, 1)``, integer or integral floats) are read as they are; one-hot or
    soft rows ``(batch, classes)``, of any dtype, by their argmax. Unlabeled examples of a mixed transfer
    set — id ``-1``, or an all-zero row — get id 0 and ``False`` in the mask.

    Args:
        y_true: The labels.
        student_logits: ``(batch, classes)`` logits (their shape tells the label form).

    Returns:
        ``(ids, labeled)``: an int32 ``(batch,)`` tensor and a bool ``(batch,)`` tensor.
    """
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    y = tf.convert_to_tensor(y_true)
    if is_one_hot(y, student_logits):
        return tf.argmax(y, axis=-1, output_type=tf.int32), tf.reduce_any(tf.not_equal(y, 0), axis=-1)
    ids = tf.reshape(tf.cast(y, tf.int32), [-1])
    labeled = ids >= 0  # label -1 marks an unlabeled example of a mixed transfer set
    return tf.maximum(ids, 0), labeled


def _hard_ce(tf, y_true, student_logits):
    """Per-example cross-entropy at T = 1 and the mask of labeled examples."""
    if is_one_hot(y_true, student_logits):
        y = tf.cast(y_true, student_logits.dtype)
        ce = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=student_logits)
        return ce, tf.reduce_any(tf.not_equal(y, 0), axis=-1)  # an all-zero row is unlabeled
    ids, labeled = label_ids(y_true, student_logits)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=student_logits)
    return tf.where(labeled, ce, tf.zeros_like(ce)), labeled


def soft_kl(student_logits, teacher_logits, *, temperature: float):
    """Per-example ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` (pure TensorFlow).

    Computed from log-softmax, so it is exact (no probability clipping) and
    stable at any temperature.

    Args:
        student_logits: ``(batch, classes)`` student logits.
        teacher_logits: ``(batch, classes)`` teacher logits.
        temperature: Softmax temperature T > 0.

    Returns:
        A ``(batch,)`` float tensor.
    """
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    t = float(temperature)
    s = tf.convert_to_tensor(student_logits)
    te = tf.cast(tf.convert_to_tensor(teacher_logits), s.dtype)
    log_ps = tf.nn.log_softmax(s / t, axis=-1)
    log_pt = tf.nn.log_softmax(te / t, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_pt) * (log_pt - log_ps), axis=-1)
    return (t * t) * kl


def distillation_terms(
    y_true,
    student_logits,
    teacher_logits,
    *,
    temperature: float,
    alpha: float,
    sample_weight=None,
    reduction: str = "mean",
):
    """The knowledge-distillation loss and its two terms (pure TensorFlow).

    Works inside any ``tf.GradientTape`` — Keras 3 or tf-keras ``train_step``,
    ``tf.function`` or eager. Gradients flow to ``student_logits`` only if the
    caller wraps the teacher's logits in ``tf.stop_gradient`` (the Distiller
    does; mutual learning does not).

    Args:
        y_true: Labels, or ``None`` for an unlabeled transfer set. Integer class
            ids of shape ``(batch,)``/``(batch, 1)``, or one-hot / soft labels
            of shape ``(batch, classes)`` (any dtype). A label of ``-1`` (or an
            all-zero one-hot row) marks an unlabeled example (mixed transfer
            sets): it gets the soft term alone, at full weight, and a hard loss of 0.
        student_logits: ``(batch, classes)`` pre-softmax student outputs.
        teacher_logits: ``(batch, classes)`` pre-softmax teacher outputs (see
            :func:`teacher_logits_model` for teachers that end in a softmax and
            :func:`ensemble_logits` for ensembles).
        temperature: Softmax temperature T > 0 of the soft term.
        alpha: Weight of the hard (label) loss in [0, 1]; the soft term gets
            ``1 − alpha``. Ignored when ``y_true`` is ``None``.
        sample_weight: Optional ``(batch,)`` per-example weights.
        reduction: ``"mean"`` (default) returns scalars: the (weighted) mean
            over the batch — divide-by-batch, like Keras' default
            ``"sum_over_batch_size"``. ``"none"`` returns ``(batch,)``
            per-example losses, for ``tf.nn.compute_average_loss`` under a
            ``tf.distribute`` strategy.

    Returns:
        ``(total, hard, soft)``. With labels, ``total = alpha·hard +
        (1 − alpha)·soft``. With ``y_true=None``, ``total = soft`` (full weight:
        the transfer set carries soft targets only) and ``hard`` is zeros.
    """
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    temperature = validate_temperature(temperature)
    alpha = validate_alpha(alpha)
    if reduction not in _REDUCTIONS:
        raise invalid_value("reduction", f"one of {_REDUCTIONS}", reduction)
    s = tf.convert_to_tensor(student_logits)
    if not s.dtype.is_floating:
        s = tf.cast(s, tf.float32)
    te = tf.cast(tf.convert_to_tensor(teacher_logits), s.dtype)
    soft = soft_kl(s, te, temperature=temperature)
    if y_true is None:
        hard = tf.zeros_like(soft)
        total = soft
    else:
        hard, labeled = _hard_ce(tf, tf.convert_to_tensor(y_true), s)
        total = tf.where(labeled, alpha * hard + (1.0 - alpha) * soft, soft)
    if sample_weight is not None:
        w = tf.reshape(tf.cast(sample_weight, s.dtype), [-1])
        total, hard, soft = total * w, hard * w, soft * w
    if reduction == "none":
        return total, hard, soft
    if sample_weight is not None:
        denom = tf.cast(tf.size(total), s.dtype)  # divide by batch size, as Keras does
    else:
        denom = tf.cast(tf.shape(total)[0], s.dtype)
    denom = tf.maximum(denom, 1.0)
    return tuple(tf.reduce_sum(v) / denom for v in (total, hard, soft))


def ensemble_logits(teacher_logits: Sequence[Any], *, temperature: float, mode: str = "probs"):
    """Combine the logits of several teachers into one set of teacher logits.

    Args:
        teacher_logits: A list of ``(batch, classes)`` logits, one per teacher.
        temperature: The distillation temperature T.
        mode: ``"probs"`` (default) averages the tempered probabilities
            ``softmax(t_i / T)`` and returns ``T · log(mean_i p_i)``, logits whose
            tempered softmax is exactly that average. ``"logits"`` averages the
            raw logits.

    Returns:
        ``(batch, classes)`` logits usable anywhere a single teacher's are.
    """
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    temperature = validate_temperature(temperature)
    if mode not in _ENSEMBLE_MODES:
        raise invalid_value("ensemble", f"one of {_ENSEMBLE_MODES}", mode)
    logits = [tf.convert_to_tensor(t) for t in teacher_logits]
    if not logits:
        raise invalid_value("teacher", "at least one teacher", teacher_logits)
    if len(logits) == 1:
        return logits[0]
    stacked = tf.stack([tf.cast(t, logits[0].dtype) for t in logits], axis=0)
    if mode == "logits":
        return tf.reduce_mean(stacked, axis=0)
    n = float(len(logits))
    log_mean = tf.reduce_logsumexp(tf.nn.log_softmax(stacked / temperature, axis=-1), axis=0) - tf.math.log(n)
    return temperature * log_mean


# --------------------------------------------------------------------------- softmax detection


def _is_softmax(activation: Any) -> bool:
    if activation is None:
        return False
    if isinstance(activation, str):
        return activation == "softmax"
    name = getattr(activation, "__name__", "")
    if name == "softmax":
        return True
    try:
        import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

        return keras.activations.serialize(activation) == "softmax"
    except Exception:  # noqa: BLE001 - an unserializable custom activation is not a softmax
        return False


def output_node(model: Any, role: str = "Teacher") -> Tuple[Any, Any]:
    """The layer producing a single-output model's output and its call node (``(None, None)`` when unknown)."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        raise InvalidArgumentError(
            f"Cannot inspect the outputs of model {model.name!r}: it is not built. "
            "Build it (call it on data or give it an Input) before distilling from it."
        )
    if len(outputs) != 1:
        raise InvalidArgumentError(
            f"{role} {model.name!r} has {len(outputs)} outputs. Expected a single classification "
            "output; wrap the model so it returns only its class logits."
        )
    history = getattr(outputs[0], "_keras_history", None)
    if history is None:
        return None, None
    layer = history.operation
    nodes = getattr(layer, "_inbound_nodes", [])
    node = nodes[history.node_index] if history.node_index < len(nodes) else None
    return layer, node


def softmax_kind(layer: Any) -> Optional[str]:
    """``"layer"`` (a ``Softmax`` or ``Activation("softmax")``), ``"activation"`` (a layer with
    ``activation="softmax"``) or None: edgekd's one softmax detector."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if isinstance(layer, keras.layers.Softmax) or (
            isinstance(layer, keras.layers.Activation) and _is_softmax(layer.activation)):
        return "layer"
    return "activation" if _is_softmax(getattr(layer, "activation", None)) else None


def ends_in_softmax(model: Any) -> bool:
    """Whether a built Keras 3 model with one output outputs probabilities (a final softmax) rather than logits.

    The same detection :func:`teacher_logits_model` strips (prune and QAT use it to pick their loss).
    """
    layer, _ = output_node(model)
    return layer is not None and softmax_kind(layer) is not None


def teacher_logits_model(model) -> Tuple[Any, str]:
    """Return a model that outputs the teacher's pre-softmax logits.

    Many saved classifiers (a common ``.h5``) end in a softmax. Distilling from
    their output would apply a second softmax, so this strips it, sharing the
    weights (nothing is copied or retrained):

    - a final ``Softmax`` layer or ``Activation("softmax")`` is dropped;
    - a final layer with ``activation="softmax"`` (``Dense``, ``Conv2D`` …) is
      rebuilt with a linear activation and the same weights.

    Args:
        model: A built Keras 3 functional or Sequential model with one output.

    Returns:
        ``(logits_model, detected)``: ``detected`` is a one-line description of
        what was found, ``"logits"`` when the model already outputs logits (it is
        then returned unchanged).
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    layer, node = output_node(model)
    if layer is None or node is None:
        return model, "logits"
    inputs = node.input_tensors
    found = softmax_kind(layer)
    if found == "layer":
        if len(inputs) != 1:
            return model, "logits"
        kind = "Softmax" if isinstance(layer, keras.layers.Softmax) else "Activation('softmax')"
        out = inputs[0]
        detected = f"final {kind} layer {layer.name!r}: distilling from its input"
    elif found == "activation":
        if len(inputs) != 1:
            return model, "logits"
        config = layer.get_config()
        config["activation"] = "linear"
        config["name"] = f"{layer.name}_logits"
        try:
            linear = layer.__class__.from_config(config)
            out = linear(inputs[0])
            linear.set_weights(layer.get_weights())
        except Exception as e:  # noqa: BLE001 - report which layer could not be rebuilt
            raise UnsupportedLayerError(
                f"Teacher layer {layer.name!r} ({layer.__class__.__name__}) ends in a softmax but cannot "
                f"be rebuilt without it ({e}). Save the teacher with a linear final layer."
            ) from None
        detected = (
            f"{layer.__class__.__name__} {layer.name!r} with activation='softmax': "
            "distilling from its pre-softmax logits"
        )
    else:
        return model, "logits"
    logits = keras.Model(model.inputs, out, name=f"{model.name}_logits")
    return logits, detected


def check_num_classes(teachers: Sequence[Any], student: Any, names: Optional[Sequence[str]] = None) -> int:
    """Return the common class count, or raise naming the model that differs."""
    def classes(m):
        outputs = getattr(m, "outputs", None)
        if not outputs or outputs[0].shape[-1] is None:
            return None
        return int(outputs[0].shape[-1])

    student_classes = classes(student)
    for i, t in enumerate(teachers):
        tc = classes(t)
        if tc is not None and student_classes is not None and tc != student_classes:
            label = names[i] if names else f"teacher {i} ({t.name!r})"
            raise InvalidArgumentError(
                f"{label} predicts {tc} classes but the student predicts {student_classes}. "
                "Give the student a final layer with as many units as the teacher has classes."
            )
    return student_classes
