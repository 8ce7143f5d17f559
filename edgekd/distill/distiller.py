"""Keras models that distil a teacher (or an ensemble) into one or more students.

:class:`Distiller` and :class:`MultiStudentDistiller` are ``keras.Model``
subclasses with their own ``train_step``/``test_step`` (TensorFlow backend,
``tf.GradientTape``): ``compile()``, ``fit()``, ``evaluate()``, callbacks,
NumPy and ``tf.data`` inputs and ``tf.distribute`` strategies work as usual.

Differences from ``keras.distillation.Distiller``: teachers that end in a
softmax are detected and distilled from their logits; the transfer set may be
unlabeled (or partly labeled, label ``-1``); ensembles of teachers of
different architectures; students with a lower resolution or fewer channels
than the teacher; a teacher-logit cache; mutual learning; several students
per teacher forward pass; losses reduced over the global batch.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from edgekd.distill.losses import (
    check_num_classes,
    declared_input_shape,
    distillation_terms,
    ensemble_logits,
    label_ids,
    output_node,
    softmax_kind,
    teacher_logits_model,
    validate_alpha,
    validate_temperature,
)
from edgekd.distill import augment as _augment
from edgekd.errors import DataError, InvalidArgumentError, invalid_value

__all__ = ["Distiller", "MultiStudentDistiller", "adapt_inputs", "declared_input_shape", "student_logits_model"]

_CACHE_KEYS = frozenset({"inputs", "teacher_logits"})


def adapt_inputs(x, target_shape: Optional[Sequence[Optional[int]]]):
    """Resize/convert a batch of images to a model's declared input shape.

    One dataset feeds a teacher and a student that take different inputs:
    height/width are resized (bilinear, antialiased when downscaling) and
    channels converted (RGB → grayscale by luminance, N → 1 by mean, N → M < N
    by keeping the first M, 1 → M by tiling). Inputs that already match, and
    non-image inputs, pass through unchanged.

    Args:
        x: A ``(batch, H, W, C)`` tensor.
        target_shape: The model's input shape without the batch dimension.

    Returns:
        The adapted tensor.
    """
    if target_shape is None or len(target_shape) != 3 or len(x.shape) != 4:
        return x
    h, w, c = target_shape
    xc = x.shape[-1]
    if c is not None and xc is not None and c != xc:
        x = tf.cast(x, tf.float32)
        if c == 1 and xc == 3:
            x = tf.image.rgb_to_grayscale(x)
        elif c == 1:
            x = tf.reduce_mean(x, axis=-1, keepdims=True)
        elif c < xc:
            x = x[..., :c]
        elif xc == 1:
            x = tf.tile(x, [1, 1, 1, c])
        else:
            raise DataError(
                f"Cannot convert {xc}-channel inputs to the {c} channels a model expects. "
                "Feed data with at least as many channels as the model takes."
            )
    xh, xw = x.shape[1], x.shape[2]
    if h is not None and w is not None and (xh != h or xw != w):
        down = xh is not None and xw is not None and (h < xh or w < xw)
        x = tf.image.resize(tf.cast(x, tf.float32), (h, w), method="bilinear", antialias=down)
    return x


class _PreSoftmax(keras.layers.Layer):
    """The output of a layer built with ``activation="softmax"``, before the softmax, from the same variables.

    Each call runs the layer's own ``call`` on a shallow copy of it whose ``activation`` is linear: the copy
    holds the very kernel/bias variables of the layer, so training through this view trains the layer.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_logits", **kwargs)
        self.wrapped = layer

    def call(self, inputs):
        linear = object.__new__(type(self.wrapped))
        linear.__dict__.update(self.wrapped.__dict__)
        object.__setattr__(linear, "activation", keras.activations.linear)
        return linear.call(inputs)


def student_logits_model(model) -> tuple:
    """A view of a student that outputs its pre-softmax logits, sharing (and training) all its weights.

    A final ``Softmax``/``Activation("softmax")`` layer is skipped; a final layer with
    ``activation="softmax"`` runs with a linear activation on the same variables. Unlike
    :func:`~edgekd.distill.teacher_logits_model`, nothing is copied, so training the view trains ``model``.

    Args:
        model: A built Keras 3 functional or Sequential model with one output.

    Returns:
        ``(logits_model, detected)``: ``model`` itself and ``"logits"`` when it has no final softmax.
    """
    layer, node = output_node(model, role="Student")
    kind = None if layer is None or node is None else softmax_kind(layer)
    if kind is None:
        return model, "logits"
    inputs = node.input_tensors
    if len(inputs) != 1:
        raise InvalidArgumentError(
            f"Student {model.name!r} ends in a softmax ({layer.name!r}) whose input cannot be isolated. "
            "Give the student a linear final layer (distillation trains its logits)."
        )
    if kind == "layer":
        out = inputs[0]
        detected = f"final softmax layer {layer.name!r}: training its input (the logits)"
    else:
        out = _PreSoftmax(layer)(inputs[0])
        detected = f"{type(layer).__name__} {layer.name!r} with activation='softmax': training its pre-softmax logits"
    return keras.Model(model.inputs, out, name=f"{model.name}_logits"), detected


def _resolve_augment(augment, cache_teacher: bool):
    """``augment=`` of a distiller, resolved; refused with ``cache_teacher=True``."""
    layer = _augment.resolve(augment)
    if layer is not None and cache_teacher:
        raise InvalidArgumentError(
            "cache_teacher=True cannot be combined with augment=: the teacher must see each augmented view "
            "(a cached logit belongs to the un-augmented example, and a mixed example's target is not the mix "
            "of the cached ones). Pass cache_teacher=False: the teacher then runs on every batch (see "
            "docs/distill.md for the measured cost), or drop augment.")
    return layer


def _refuse_cached_views(cached) -> None:
    if cached is not None:
        raise InvalidArgumentError("Cached teacher logits cannot be used with augment= (the teacher must "
                                   "see each augmented view). Pass the inputs alone.")


def _augment_config(augment):
    """A Keras layer/model is saved with the distiller; a plain callable is not (pass it again on load)."""
    return keras.saving.serialize_keras_object(augment) if isinstance(augment, keras.layers.Layer) else None


def _as_list(models) -> list:
    if isinstance(models, (list, tuple)):
        return list(models)
    return [models]


def _validate_model(model, name: str):
    if not isinstance(model, keras.Model):
        raise invalid_value(name, "a keras.Model (Keras 3)", type(model).__name__)
    if not model.built:
        raise InvalidArgumentError(
            f"Model {model.name!r} passed as `{name}` is not built. Give it an `Input` "
            "(functional/Sequential) or call it on a batch before distilling."
        )


def _validate_io(teachers, students):
    shapes = [declared_input_shape(m) for m in list(teachers) + list(students)]
    known = [s for s in shapes if s is not None]
    if len({s for s in known}) > 1 and not all(len(s) == 3 for s in known):
        raise InvalidArgumentError(
            f"Teacher and student input shapes {sorted(set(known))} differ and are not images. "
            "Only (H, W, C) image inputs can be resized; give the models the same input shape."
        )


class _BaseDistiller(keras.Model):
    """Teacher handling shared by the distillers: softmax detection, ensembles, cache."""

    def _init_teachers(self, teacher, *, temperature, ensemble, detect_softmax):
        teachers = _as_list(teacher)
        if not teachers:
            raise invalid_value("teacher", "a keras.Model or a non-empty list of models", teacher)
        for i, t in enumerate(teachers):
            _validate_model(t, "teacher" if len(teachers) == 1 else f"teacher[{i}]")
        if ensemble not in ("probs", "logits"):
            raise invalid_value("ensemble", "'probs' (average tempered probabilities) or 'logits'", ensemble)
        self.temperature = validate_temperature(temperature)
        self.ensemble = ensemble
        self.detect_softmax = bool(detect_softmax)
        self._teacher_sources = teachers
        logits_models, detected = [], []
        for t in teachers:
            if self.detect_softmax:
                lm, d = teacher_logits_model(t)
            else:
                lm, d = t, "logits (detection off)"
            logits_models.append(lm)
            detected.append(d)
        self.teachers = logits_models
        self.detected = tuple(detected)
        self._teacher_shapes = [declared_input_shape(t) for t in self.teachers]

    @property
    def teacher(self):
        """The (first) teacher as passed in."""
        return self._teacher_sources[0]

    def _teacher_forward(self, x, training=False):
        per = [t(adapt_inputs(x, shape), training=training)
               for t, shape in zip(self.teachers, self._teacher_shapes)]
        return per, ensemble_logits(per, temperature=self.temperature, mode=self.ensemble)

    @staticmethod
    def _split_cached(x):
        if isinstance(x, dict) and set(x) == _CACHE_KEYS:
            return x["inputs"], x["teacher_logits"]
        return x, None

    def teacher_logits(self, x, *, batch_size: int = 256) -> np.ndarray:
        """The (ensembled) teacher logits of ``x``, computed in batches in inference mode.

        Args:
            x: A NumPy array of inputs.
            batch_size: Batch size of the teacher forward passes.

        Returns:
            A float32 ``(N, classes)`` array — what ``cache_teacher=True`` reuses every epoch.
        """
        if not hasattr(self, "_teacher_predict_fn"):
            self._teacher_predict_fn = tf.function(
                lambda b: self._teacher_forward(b, training=False)[1], reduce_retracing=True)
        x = np.asarray(x)
        out = [np.asarray(self._teacher_predict_fn(tf.constant(x[i:i + batch_size])))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out, axis=0).astype(np.float32)

    def _cache(self, x, batch_size):
        if x is None or self._split_cached(x)[1] is not None:
            return x
        if isinstance(x, tf.data.Dataset) or not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
            raise invalid_value(
                "cache_teacher", "False for tf.data/generator inputs (pass NumPy arrays to cache the teacher)",
                True)
        x = np.asarray(x)
        return {"inputs": x, "teacher_logits": self.teacher_logits(x, batch_size=max(int(batch_size or 32), 256))}

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, **kwargs):
        """``keras.Model.fit``; with ``cache_teacher=True`` the teacher runs once, before epoch 1."""
        if getattr(self, "cache_teacher", False):
            x = self._cache(x, batch_size)
            if validation_data is not None and not isinstance(validation_data, tf.data.Dataset):
                vd = tuple(validation_data)
                validation_data = (self._cache(vd[0], batch_size),) + vd[1:]
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                           validation_split=validation_split, validation_data=validation_data, **kwargs)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _results(self, skip) -> dict:
        logs = {}
        for m in self.metrics:
            if skip(m):
                continue
            result = m.result()
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[m.name] = result
        return logs

    def get_metrics_result(self):
        """Keras' epoch-end results, less the compiled metrics when no batch had labels (``fit(x)``)."""
        compiled = getattr(self, "_compile_metrics", None)
        return self._results(lambda m: m is compiled and not m.built)

    # ------------------------------------------------------------------ what summary() counts and lists
    def _student_models(self) -> list:
        return []

    @property
    def layers(self) -> list:
        """The teachers as passed in and the student(s), once each (not the logits views derived from them)."""
        out: list = []
        for m in list(getattr(self, "_teacher_sources", [])) + self._student_models():
            if all(m is not o for o in out):
                out.append(m)
        return out

    def _frozen_ids(self) -> set:
        """Ids of the teachers' variables, which the distiller never updates (none when ``teacher_trainable``)."""
        if getattr(self, "teacher_trainable", False):
            return set()
        own = {id(v) for m in self._student_models() for v in m.weights}
        models = list(getattr(self, "_teacher_sources", [])) + list(getattr(self, "teachers", []))
        return {id(v) for t in models for v in t.weights if id(v) not in own}

    @property
    def trainable_weights(self) -> list:
        """Keras' list without the frozen teachers' variables (the teacher models themselves are left as they are)."""
        frozen = self._frozen_ids()
        return [v for v in super().trainable_weights if id(v) not in frozen]

    @property
    def non_trainable_weights(self) -> list:
        """Keras' list plus the frozen teachers' trainable variables."""
        frozen = self._frozen_ids()
        return super().non_trainable_weights + [v for v in super().trainable_weights if id(v) in frozen]

    def compile_from_config(self, config):
        """Re-compile after ``keras.saving.load_model`` (optimizer and metrics; the loss is built in)."""
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        config.pop("loss_weights", None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self._optimized_variables())

    def _base_config(self) -> dict:
        teachers = [keras.saving.serialize_keras_object(t) for t in self._teacher_sources]
        return {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": teachers if len(teachers) > 1 else teachers[0],
            "temperature": self.temperature,
            "ensemble": self.ensemble,
            "detect_softmax": self.detect_softmax,
            "cache_teacher": self.cache_teacher,
        }

    @staticmethod
    def _deserialize_teacher(config):
        t = config.pop("teacher")
        if isinstance(t, list):
            return [keras.saving.deserialize_keras_object(c) for c in t]
        return keras.saving.deserialize_keras_object(t)


@keras.saving.register_keras_serializable(package="edgekd")
class Distiller(_BaseDistiller):
    """Distil a teacher (or an ensemble of teachers) into a student.

    Loss per example (see :func:`edgekd.distill.distillation_terms`)::

        alpha · CE(y, s) + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))

    reduced over the global batch (``tf.nn.compute_average_loss``), so it is
    the same under ``tf.distribute.MirroredStrategy`` as on one device.
    Unlabeled batches (``fit(x)``), or examples labeled ``-1``, get the soft
    term alone. Only the student's weights change, unless
    ``teacher_trainable=True``.

    Args:
        student: The Keras model to train. A final softmax is detected and
            skipped: its pre-softmax logits are trained (see ``detected_student``).
        teacher: A Keras model, or a list of models (an ensemble; architectures
            and input shapes may differ). A final softmax is detected and
            stripped (see ``detected``).
        temperature: Softmax temperature T of the soft targets.
        alpha: Weight of the hard-label loss; ``1 − alpha`` goes to the soft loss.
        ensemble: ``"probs"`` averages the teachers' tempered probabilities,
            ``"logits"`` their logits.
        teacher_trainable: Mutual (online) learning: also train the teacher(s)
            on ``teacher_alpha · CE(y, t) + (1 − teacher_alpha) · T² ·
            KL(softmax(s/T) ‖ softmax(t/T))`` with a second optimizer.
        teacher_alpha: Weight of the teacher's own hard loss in mutual learning.
        cache_teacher: Compute the teacher logits once per ``fit`` (NumPy inputs
            without random augmentation) and reuse them every epoch. Refused
            with ``augment`` (a cached logit belongs to the un-augmented example).
        augment: Consistent-view augmentation (function matching, Beyer et al.
            2022): a built-in name (``"shift+mixup"``, see
            :mod:`edgekd.distill.augment`), a Keras preprocessing layer/model or
            a callable ``batch -> batch``, applied once per training batch at the
            data's resolution (feed the teacher's input shape, as :func:`distill`
            requires; for teachers of several resolutions, the largest); each model
            gets that augmented batch resized to its own input. Label-mixing built-ins (mixup,
            CutMix) mix the hard labels alike; examples mixed with an unlabeled
            one get the soft loss alone. Not applied in ``evaluate``/``predict``.
        feature_distillation: Optional list of ``keras.distillation.FeatureDistillation``
            objects naming a teacher and a student layer whose outputs are also
            matched (their shapes must agree). Single-teacher only.
        feature_weight: Weight of the feature losses.
        detect_softmax: Distil from the pre-softmax logits of teachers and
            student that end in a softmax (default True).
        name: Model name.

    Labels (``fit(x, y)``) are class ids or one-hot rows; ``-1`` (or an
    all-zero row) marks an unlabeled example. Compiled metrics see the
    labeled examples only: their class ids against the student's logits.
    The teachers count as non-trainable in ``summary()`` unless
    ``teacher_trainable`` (the teacher models' own flags are left as they are).

    Attributes:
        student: The student (a plain Keras model: save it with ``student.save``).
        teachers: The teachers' logits models.
        detected: One line per teacher describing the detected output.
        detected_student: The same for the student.
    """

    def __init__(self, student, teacher, *, temperature: float = 4.0, alpha: float = 0.1,
                 ensemble: str = "probs", teacher_trainable: bool = False, teacher_alpha: float = 0.5,
                 cache_teacher: bool = False, feature_distillation: Optional[Sequence[Any]] = None,
                 feature_weight: float = 1.0, detect_softmax: bool = True, augment: Any = None,
                 name: str = "distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        _validate_model(student, "student")
        self.alpha = validate_alpha(alpha)
        self.teacher_alpha = validate_alpha(teacher_alpha)
        self.teacher_trainable = bool(teacher_trainable)
        self.cache_teacher = bool(cache_teacher)
        if self.teacher_trainable and self.cache_teacher:
            raise invalid_value("cache_teacher", "False when teacher_trainable=True (the teacher changes)", True)
        self.augment = _resolve_augment(augment, self.cache_teacher)
        self._init_teachers(teacher, temperature=temperature, ensemble=ensemble, detect_softmax=detect_softmax)
        _validate_io(self.teachers, [student])
        check_num_classes(self.teachers, student)
        self.student = student
        if self.detect_softmax:
            self._student_logits, self.detected_student = student_logits_model(student)
        else:
            self._student_logits, self.detected_student = student, "logits (detection off)"
        self._student_shape = declared_input_shape(student)
        self._num_classes = int(student.outputs[0].shape[-1])
        self._init_features(feature_distillation, feature_weight)
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if self._features else None
        self.teacher_loss_tracker = keras.metrics.Mean(name="teacher_loss") if self.teacher_trainable else None
        self.teacher_optimizer = None
        self.built = True

    # ------------------------------------------------------------------ features
    def _init_features(self, feature_distillation, feature_weight):
        from keras.distillation import FeatureDistillation  # Keras pulls TensorFlow

        self._features = list(feature_distillation or [])
        self.feature_weight = float(feature_weight)
        self._student_extractor = None
        self._teacher_extractor = None
        if not self._features:
            return
        for fd in self._features:
            if not isinstance(fd, FeatureDistillation):
                raise invalid_value("feature_distillation", "a list of keras.distillation.FeatureDistillation",
                                    type(fd).__name__)
        if len(self.teachers) != 1 or self.teacher_trainable:
            raise invalid_value("feature_distillation", "a single, frozen teacher", "an ensemble/trainable teacher")
        teacher, student = self.teachers[0], self._student_logits
        for fd in self._features:
            try:
                fd.validate_model_compatibility(teacher, student)
            except ValueError as e:
                raise InvalidArgumentError(f"{e}. Name layers that exist in the teacher and student.") from None

        def feats(model, names):
            return [model.get_layer(n).output if n else model.outputs[0] for n in names]

        self._student_extractor = keras.Model(
            student.inputs, [student.outputs[0]] + feats(student, [f.student_layer_name for f in self._features]))
        self._teacher_extractor = keras.Model(
            teacher.inputs, [teacher.outputs[0]] + feats(teacher, [f.teacher_layer_name for f in self._features]))
        self._check_feature_shapes()

    def _check_feature_shapes(self):
        """The matched outputs must have one shape (the feature losses compare them element by element)."""
        pairs = zip(self._features, self._teacher_extractor.outputs[1:], self._student_extractor.outputs[1:])
        for fd, t_out, s_out in pairs:
            t_shape, s_shape = tuple(t_out.shape[1:]), tuple(s_out.shape[1:])
            if len(t_shape) != len(s_shape) or any(
                    a is not None and b is not None and a != b for a, b in zip(t_shape, s_shape)):
                raise invalid_value(
                    "feature_distillation",
                    f"a teacher and a student layer whose outputs have one shape; teacher layer "
                    f"{fd.teacher_layer_name or 'output'!r} outputs {t_shape} but student layer "
                    f"{fd.student_layer_name or 'output'!r} outputs {s_shape} (pick layers of equal shape, or "
                    "give the student a layer as wide as the teacher's)",
                    [(f.teacher_layer_name, f.student_layer_name) for f in self._features])

    # ------------------------------------------------------------------ keras API
    def compile(self, optimizer="adam", metrics=None, *, teacher_optimizer=None, **kwargs):
        """Configure training.

        Args:
            optimizer: The student's optimizer.
            metrics: Metrics of the student's predictions against the labels
                (e.g. ``["accuracy"]``); reported next to loss, hard_loss, soft_loss.
            teacher_optimizer: Optimizer of the teacher when ``teacher_trainable``
                (default: a fresh copy of ``optimizer``'s config).
            **kwargs: Passed to ``keras.Model.compile`` (not ``loss``: the loss
                is the distillation loss).
        """
        if kwargs.get("loss") is not None:
            raise invalid_value("loss", "None (the Distiller's loss is the distillation loss; set alpha and "
                                "temperature instead)", kwargs["loss"])
        kwargs.pop("loss", None)
        optimizer = keras.optimizers.get(optimizer)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        outputs = getattr(self._student_logits, "outputs", None)
        if self._compile_metrics is not None and outputs:
            # Built now, not in the first step with labels: that step may come after an unlabeled one was
            # traced (fit(x), then evaluate(x, y)), and a traced step cannot create the metrics' variables.
            self._compile_metrics.build(keras.KerasTensor((None,), "int32"),
                                        keras.KerasTensor((None,) + tuple(outputs[0].shape[1:])))
        if self.teacher_trainable:
            if teacher_optimizer is None:
                teacher_optimizer = optimizer.__class__.from_config(optimizer.get_config())
            self.teacher_optimizer = keras.optimizers.get(teacher_optimizer)

    def call(self, inputs, training=None):
        """The student's logits (inputs are adapted to the student's input shape)."""
        x, _ = self._split_cached(inputs)
        return self._student_logits(adapt_inputs(x, self._student_shape), training=training)

    def _forward(self, x, cached, training):
        xs = adapt_inputs(x, self._student_shape)
        s_feats = t_feats = None
        if self._features:
            s_out = self._student_extractor(xs, training=training)
            s_logits, s_feats = s_out[0], s_out[1:]
            t_out = self._teacher_extractor(adapt_inputs(x, self._teacher_shapes[0]), training=False)
            t_per, t_logits, t_feats = [t_out[0]], t_out[0], [tf.stop_gradient(f) for f in t_out[1:]]
        else:
            s_logits = self._student_logits(xs, training=training)
            if cached is not None:
                t_per, t_logits = None, tf.cast(cached, s_logits.dtype)
            else:
                t_per, t_logits = self._teacher_forward(x, training=training and self.teacher_trainable)
        return s_logits, t_per, t_logits, s_feats, t_feats

    def _loss_terms(self, y, sw, s_logits, t_per, t_logits, s_feats, t_feats):
        target = t_logits if self.teacher_trainable else tf.stop_gradient(t_logits)
        total, hard, soft = distillation_terms(
            y, s_logits, target, temperature=self.temperature, alpha=self.alpha,
            sample_weight=sw, reduction="none")
        loss = tf.nn.compute_average_loss(total)
        feat_loss = None
        if self._features:
            feat_loss = tf.add_n([fd.compute_loss(t, s) for fd, t, s in zip(self._features, t_feats, s_feats)])
            loss = loss + self.feature_weight * feat_loss / tf.cast(
                tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)
        if self.student.losses:
            loss = loss + tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        teacher_loss = None
        if self.teacher_trainable:
            s_target = tf.stop_gradient(s_logits)
            per_teacher = [distillation_terms(y, t, s_target, temperature=self.temperature,
                                              alpha=self.teacher_alpha, sample_weight=sw, reduction="none")[0]
                           for t in t_per]
            teacher_loss = tf.add_n(per_teacher)
            reg = [r for t in self.teachers for r in t.losses]
            if reg:  # spread over the local batch; compute_average_loss then gives reg / replicas
                batch = tf.cast(tf.shape(teacher_loss)[0], teacher_loss.dtype)
                teacher_loss = teacher_loss + tf.add_n(reg) / batch
        return loss, total, hard, soft, feat_loss, teacher_loss

    def _update_metrics(self, y, sw, s_logits, total, hard, soft, feat_loss, teacher_loss):
        self._loss_tracker.update_state(total)
        self.soft_loss_tracker.update_state(soft)
        if y is not None:
            ids, labeled = label_ids(y, s_logits)
            self.hard_loss_tracker.update_state(hard, sample_weight=tf.cast(labeled, hard.dtype))
            if self._compile_metrics is not None:  # labeled examples only, their class ids against the logits
                w = None if sw is None else tf.boolean_mask(tf.reshape(tf.cast(sw, s_logits.dtype), [-1]), labeled)
                self._compile_metrics.update_state(tf.boolean_mask(ids, labeled), tf.boolean_mask(s_logits, labeled), w)
        if feat_loss is not None:
            self.feature_loss_tracker.update_state(feat_loss)
        if teacher_loss is not None:
            self.teacher_loss_tracker.update_state(teacher_loss)
        return self._results(lambda m: y is None and (m is self.hard_loss_tracker or m is self._compile_metrics))

    def _optimized_variables(self):
        return self.student.trainable_variables

    def _student_models(self) -> list:
        return [self.student] if hasattr(self, "student") else []

    def train_step(self, data):
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = self._split_cached(x)
        if self.augment is not None:
            _refuse_cached_views(cached)
            x, y = _augment.apply(self.augment, x, y, self._num_classes)  # one view for teacher and student
        with tf.GradientTape(persistent=self.teacher_trainable) as tape:
            s_logits, t_per, t_logits, s_feats, t_feats = self._forward(x, cached, training=True)
            loss, total, hard, soft, feat_loss, teacher_loss = self._loss_terms(
                y, sw, s_logits, t_per, t_logits, s_feats, t_feats)
            if teacher_loss is not None:
                scaled_teacher_loss = tf.nn.compute_average_loss(teacher_loss)
        svars = self._optimized_variables()
        grads = tape.gradient(loss, svars)
        self.optimizer.apply_gradients(zip(grads, svars))
        if teacher_loss is not None:
            tvars = [v for t in self.teachers for v in t.trainable_variables]
            tgrads = tape.gradient(scaled_teacher_loss, tvars)
            self.teacher_optimizer.apply_gradients(zip(tgrads, tvars))
            del tape
        return self._update_metrics(y, sw, s_logits, total, hard, soft, feat_loss, teacher_loss)

    def test_step(self, data):
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = self._split_cached(x)
        s_logits, t_per, t_logits, s_feats, t_feats = self._forward(x, cached, training=False)
        _, total, hard, soft, feat_loss, teacher_loss = self._loss_terms(
            y, sw, s_logits, t_per, t_logits, s_feats, t_feats)
        return self._update_metrics(y, sw, s_logits, total, hard, soft, feat_loss, teacher_loss)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        config = self._base_config()
        config.update({
            "student": keras.saving.serialize_keras_object(self.student),
            "alpha": self.alpha,
            "teacher_trainable": self.teacher_trainable,
            "teacher_alpha": self.teacher_alpha,
            "feature_distillation": [fd.get_config() for fd in self._features] or None,
            "feature_weight": self.feature_weight,
            "augment": _augment_config(self.augment),
        })
        return config

    @classmethod
    def from_config(cls, config):
        from keras.distillation import FeatureDistillation  # Keras pulls TensorFlow

        config = copy.deepcopy(dict(config))  # Keras' deserializer consumes nested dicts
        teacher = cls._deserialize_teacher(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        features = config.pop("feature_distillation", None)
        if features:
            config["feature_distillation"] = [FeatureDistillation.from_config(c) for c in features]
        if isinstance(config.get("augment"), dict):
            config["augment"] = keras.saving.deserialize_keras_object(config["augment"])
        return cls(student, teacher, **config)


@keras.saving.register_keras_serializable(package="edgekd")
class MultiStudentDistiller(_BaseDistiller):
    """Train several students on one teacher (or ensemble) forward pass per batch.

    Each student gets the :class:`Distiller` loss; their sum is minimised with
    one optimizer (the students share no weights, so each student's update is
    the one it would get alone with the same optimizer settings). Metrics per
    student: ``<name>_loss``, ``<name>_hard_loss``, ``<name>_soft_loss`` and,
    with labels, ``<name>_accuracy``.

    Args:
        teacher: A Keras model or a list of models (ensemble).
        students: The students (distinct names; their inputs may differ from
            the teacher's, see :func:`adapt_inputs`).
        temperature: Softmax temperature T.
        alpha: Weight of the hard-label loss.
        ensemble: ``"probs"`` or ``"logits"`` (see :class:`Distiller`).
        cache_teacher: Reuse the teacher logits every epoch (NumPy inputs).
            Refused with ``augment``.
        detect_softmax: Distil from the pre-softmax logits of softmax teachers
            and students (``detected``, ``detected_students``).
        augment: Consistent-view augmentation, as in :class:`Distiller`: one
            augmented view per training batch, seen by the teacher and by every
            student (each resized to its input); mixing built-ins mix the hard
            labels alike. Not applied in ``evaluate``/``predict``.
        name: Model name.
    """

    def __init__(self, teacher, students: Sequence[Any], *, temperature: float = 4.0, alpha: float = 0.1,
                 ensemble: str = "probs", cache_teacher: bool = False, detect_softmax: bool = True,
                 augment: Any = None, name: str = "multi_student_distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        students = _as_list(students)
        if not students:
            raise invalid_value("students", "a non-empty list of keras.Model", students)
        for i, s in enumerate(students):
            _validate_model(s, f"students[{i}]")
        names = [s.name for s in students]
        if len(set(names)) != len(names):
            raise invalid_value("students", "models with distinct names", names)
        self.alpha = validate_alpha(alpha)
        self.cache_teacher = bool(cache_teacher)
        self.augment = _resolve_augment(augment, self.cache_teacher)
        self._init_teachers(teacher, temperature=temperature, ensemble=ensemble, detect_softmax=detect_softmax)
        _validate_io(self.teachers, students)
        for s in students:
            check_num_classes(self.teachers, s)
        self.students = students
        self._num_classes = int(students[0].outputs[0].shape[-1])  # every student's, checked above
        views = [student_logits_model(s) if self.detect_softmax else (s, "logits (detection off)") for s in students]
        self._student_logits = [v[0] for v in views]
        self.detected_students = tuple(v[1] for v in views)
        self._student_shapes = [declared_input_shape(s) for s in students]
        self._trackers = {
            n: {k: keras.metrics.Mean(name=f"{n}_{k}") for k in ("loss", "hard_loss", "soft_loss", "accuracy")}
            for n in names
        }
        self._tracker_list = [m for d in self._trackers.values() for m in d.values()]
        self.built = True

    def compile(self, optimizer="adam", **kwargs):
        """Configure training (one optimizer for all students; no ``loss``/``metrics``)."""
        for key in ("loss", "metrics"):
            if kwargs.get(key) is not None:
                raise invalid_value(key, "None (MultiStudentDistiller reports per-student losses and accuracy)",
                                    kwargs[key])
            kwargs.pop(key, None)
        super().compile(optimizer=keras.optimizers.get(optimizer), **kwargs)

    def call(self, inputs, training=None):
        """A list with each student's logits."""
        x, _ = self._split_cached(inputs)
        return [s(adapt_inputs(x, shape), training=training)
                for s, shape in zip(self._student_logits, self._student_shapes)]

    def _step(self, data, training):
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = self._split_cached(x)
        if training and self.augment is not None:
            _refuse_cached_views(cached)
            x, y = _augment.apply(self.augment, x, y, self._num_classes)
        if cached is None:
            _, t_logits = self._teacher_forward(x, training=False)
        else:
            t_logits = cached
        t_logits = tf.stop_gradient(t_logits)
        outs = self(x, training=training)
        losses, per = [], []
        for s, s_logits in zip(self.students, outs):
            total, hard, soft = distillation_terms(
                y, s_logits, tf.cast(t_logits, s_logits.dtype), temperature=self.temperature, alpha=self.alpha,
                sample_weight=sw, reduction="none")
            loss = tf.nn.compute_average_loss(total)
            if s.losses:
                loss = loss + tf.nn.scale_regularization_loss(tf.add_n(s.losses))
            losses.append(loss)
            per.append((s.name, s_logits, total, hard, soft))
        return tf.add_n(losses), per, y

    def _metrics_logs(self, per, y):
        totals = tf.add_n([p[2] for p in per])
        self._loss_tracker.update_state(totals)
        logs = {"loss": self._loss_tracker.result()}
        for name, s_logits, total, hard, soft in per:
            tr = self._trackers[name]
            tr["loss"].update_state(total)
            tr["soft_loss"].update_state(soft)
            logs[tr["loss"].name] = tr["loss"].result()
            logs[tr["soft_loss"].name] = tr["soft_loss"].result()
            if y is not None:
                labels, labeled = label_ids(y, s_logits)
                mask = tf.cast(labeled, tf.float32)
                correct = tf.cast(tf.equal(tf.argmax(s_logits, axis=-1, output_type=tf.int32), labels), tf.float32)
                tr["hard_loss"].update_state(hard, sample_weight=mask)
                tr["accuracy"].update_state(correct, sample_weight=mask)
                logs[tr["hard_loss"].name] = tr["hard_loss"].result()
                logs[tr["accuracy"].name] = tr["accuracy"].result()
        return logs

    def _optimized_variables(self):
        return [v for s in self.students for v in s.trainable_variables]

    def _student_models(self) -> list:
        return list(getattr(self, "students", []))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, per, y = self._step(data, training=True)
        variables = self._optimized_variables()
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._metrics_logs(per, y)

    def test_step(self, data):
        _, per, y = self._step(data, training=False)
        return self._metrics_logs(per, y)

    def get_config(self) -> dict:
        config = self._base_config()
        config.update({
            "students": [keras.saving.serialize_keras_object(s) for s in self.students],
            "alpha": self.alpha,
            "augment": _augment_config(self.augment),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(dict(config))  # Keras' deserializer consumes nested dicts
        teacher = cls._deserialize_teacher(config)
        students = [keras.saving.deserialize_keras_object(c) for c in config.pop("students")]
        if isinstance(config.get("augment"), dict):
            config["augment"] = keras.saving.deserialize_keras_object(config["augment"])
        return cls(teacher, students, **config)
