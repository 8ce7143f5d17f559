"""Batch augmentations for consistent-view distillation (``Distiller(augment=...)``).

Beyer et al., *Knowledge distillation: A good teacher is patient and consistent* (2022): the teacher and
the student must see **the same augmented view** of each example ("function matching"), and aggressive
augmentation (mixup) with long schedules keeps improving the student long after supervised training
saturates. The :class:`~edgekd.distill.Distiller` applies one of these layers once per training batch, at
the data's resolution (the teacher's input shape, which :func:`~edgekd.distill.distill` requires), and
feeds the result to the teacher and, resized when its input differs, to the student.

Built-ins (:func:`get` by name, ``"name:key=value,..."``, joined with ``+``):

=============== ===================================================================================
``shift``       :class:`RandomShift` — pad-and-crop translation of images (random crop with padding)
``crop``        :class:`RandomCrop` — random square crop of a fraction of the area, resized back
``flip``        :class:`RandomFlip` — horizontal and/or vertical flips
``time_shift``  :class:`TimeShift` — shift spectrogram/MFCC frames along time (axis 1), zero fill
``specaugment`` :class:`SpecAugment` — SpecAugment-style time and frequency masking
``mixup``       :class:`Mixup` — convex combination of two examples of the batch; labels mixed alike
``cutmix``      :class:`CutMix` — a box of another example pasted in; labels mixed by area
=============== ===================================================================================

``get("shift+mixup:alpha=0.4")`` returns a :class:`Compose`. Mixing layers combine labeled and unlabeled
examples alike; a mixed example is labeled (soft label ``λ·y_i + (1 − λ)·y_j``) only when both of its
sources are, otherwise it gets the soft (teacher) loss alone. Every layer is a ``keras.layers.Layer``
registered as ``edgekd>Name``: ``get_config``/``from_config`` round-trip, and a saved Distiller keeps it.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence, Union

import keras
import tensorflow as tf

from edgekd.errors import InvalidArgumentError, invalid_value

__all__ = ["BatchAugment", "Compose", "CutMix", "Mixup", "RandomCrop", "RandomFlip", "RandomShift", "SpecAugment",
           "TimeShift", "apply", "get", "names", "resolve", "soft_labels"]


def _option_value(text: str) -> Any:
    """``"0.2"`` → 0.2, ``"3"`` → 3, ``"true"`` → True; other text as it is."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _fraction(name: str, value: Any, *, high: float = 1.0, closed: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value
    ok = ok and (value <= high if closed else value < high)
    if not ok:
        interval = f"[0, {high:g}]" if closed else f"[0, {high:g})"
        raise invalid_value(name, f"a number in {interval}", value)
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_value(name, "a non-negative integer", value)
    return int(value)


def _batch(x):
    return tf.shape(x)[0]


def _per_example(v, x):
    """``(batch,)`` → broadcastable against ``x``."""
    return tf.reshape(tf.cast(v, x.dtype), [-1] + [1] * (len(x.shape) - 1))


def _shift_axis(x, max_shift: int, axis: int, seed):
    """Translate each example by a random integer in [-max_shift, max_shift] along ``axis`` (zero fill)."""
    if max_shift <= 0:
        return x
    size = x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]
    offsets = keras.random.randint((_batch(x),), -max_shift, max_shift + 1, dtype="int32", seed=seed)
    pads = [[0, 0]] * len(x.shape)
    pads[axis] = [max_shift, max_shift]
    idx = tf.range(size)[None, :] + max_shift - offsets[:, None]
    return tf.gather(tf.pad(x, pads), idx, axis=axis, batch_dims=1)


def _band_mask(x, axis: int, count: int, max_width: int, seed):
    """1 outside, 0 inside ``count`` random bands (width 0..max_width) along ``axis`` of each example."""
    size = x.shape[axis]
    keep = tf.ones([_batch(x)] + [1] * (len(x.shape) - 1), x.dtype)
    positions = tf.reshape(tf.range(size), [1] * axis + [size] + [1] * (len(x.shape) - axis - 1))
    for _ in range(count):
        width = keras.random.randint((_batch(x),), 0, max_width + 1, dtype="int32", seed=seed)
        start = tf.cast(keras.random.uniform((_batch(x),), seed=seed) * tf.cast(size - width + 1, tf.float32),
                        tf.int32)
        start, width = (tf.reshape(v, [-1] + [1] * (len(x.shape) - 1)) for v in (start, width))
        inside = (positions >= start) & (positions < start + width)
        keep = keep * (1.0 - tf.cast(inside, x.dtype))
    return keep


def soft_labels(y, num_classes: int):
    """Labels of any form as float ``(batch, classes)`` rows and the labeled mask (all-zero row = unlabeled).

    Class ids (``-1`` unlabeled) become one-hot rows; one-hot or soft rows pass through as floats.
    """
    y = tf.convert_to_tensor(y)
    if len(y.shape) == 2 and y.shape[-1] == num_classes and num_classes > 1:
        rows = tf.cast(y, tf.float32)
        return rows, tf.reduce_any(tf.not_equal(rows, 0), axis=-1)
    ids = tf.reshape(tf.cast(y, tf.int32), [-1])
    labeled = ids >= 0
    return tf.one_hot(tf.maximum(ids, 0), num_classes) * tf.cast(labeled, tf.float32)[:, None], labeled


class BatchAugment(keras.layers.Layer):
    """A random augmentation of a whole batch, active only when ``training`` (the Distiller's train_step).

    Subclasses implement ``augment(x)``; label-mixing ones set ``mixes_labels`` and implement
    ``mix(x, y, labeled)``.

    Args:
        seed: Seed of the layer's ``keras.random.SeedGenerator`` (None: from the global seed).
        **kwargs: ``keras.layers.Layer`` arguments (``name``).
    """

    mixes_labels = False

    def __init__(self, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def augment(self, x):  # pragma: no cover - every built-in overrides it
        raise NotImplementedError

    def mix(self, x, y, labeled):
        """``(augmented x, y, labeled)``: labels pass through for augmentations that do not mix examples."""
        return self.augment(x), y, labeled

    def call(self, inputs, training=True):
        if not training:
            return inputs
        return self.mix(inputs, None, None)[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package="edgekd")
class RandomShift(BatchAugment):
    """Translate ``(batch, H, W, C)`` images by whole pixels, up to ``factor`` of each side (zero fill).

    This is the "random crop with padding" of CIFAR training: pad by ``round(factor · side)``, crop back.

    Args:
        factor: Largest shift as a fraction of the height and width, in [0, 1).
        seed: Layer seed.
    """

    def __init__(self, factor: float = 0.125, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self.factor = _fraction("factor", factor)

    def augment(self, x):
        for axis in (1, 2):
            x = _shift_axis(x, int(round(self.factor * x.shape[axis])), axis, self.seed_generator)
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="edgekd")
class RandomCrop(BatchAugment):
    """Crop a random square covering ``min_area``–1 of each image's area and resize it back (bilinear).

    Args:
        min_area: Smallest crop area as a fraction of the image, in (0, 1].
        seed: Layer seed.
    """

    def __init__(self, min_area: float = 0.6, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        if _fraction("min_area", min_area, closed=True) == 0.0:
            raise invalid_value("min_area", "a number in (0, 1]", min_area)
        self.min_area = float(min_area)

    def augment(self, x):
        n = _batch(x)
        u = keras.random.uniform((n, 3), seed=self.seed_generator)
        side = tf.sqrt(self.min_area + (1.0 - self.min_area) * u[:, 0])
        y0, x0 = u[:, 1] * (1.0 - side), u[:, 2] * (1.0 - side)
        boxes = tf.stack([y0, x0, y0 + side, x0 + side], axis=1)
        out = tf.image.crop_and_resize(tf.cast(x, tf.float32), boxes, tf.range(n), (x.shape[1], x.shape[2]))
        return tf.cast(out, x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "min_area": self.min_area}


@keras.saving.register_keras_serializable(package="edgekd")
class RandomFlip(BatchAugment):
    """Flip each ``(batch, H, W, C)`` image with probability 1/2 per enabled direction.

    Args:
        mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
        seed: Layer seed.
    """

    def __init__(self, mode: str = "horizontal", seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise invalid_value("mode", "'horizontal', 'vertical' or 'horizontal_and_vertical'", mode)
        self.mode = mode

    def augment(self, x):
        for axis, on in ((2, "horizontal" in self.mode), (1, "vertical" in self.mode)):
            if on:
                flip = keras.random.uniform((_batch(x),), seed=self.seed_generator) < 0.5
                x = tf.where(tf.reshape(flip, [-1] + [1] * (len(x.shape) - 1)), tf.reverse(x, [axis]), x)
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="edgekd")
class TimeShift(BatchAugment):
    """Shift spectrogram/MFCC inputs ``(batch, time, freq[, C])`` along time by up to ``max_shift`` of the frames.

    Args:
        max_shift: Largest shift as a fraction of the frames, in [0, 1); vacated frames are zero.
        seed: Layer seed.
    """

    def __init__(self, max_shift: float = 0.1, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self.max_shift = _fraction("max_shift", max_shift)

    def augment(self, x):
        return _shift_axis(x, int(round(self.max_shift * x.shape[1])), 1, self.seed_generator)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_shift": self.max_shift}


@keras.saving.register_keras_serializable(package="edgekd")
class SpecAugment(BatchAugment):
    """SpecAugment-style masking (Park et al. 2019) of ``(batch, time, freq[, C])`` inputs: bands set to zero.

    Args:
        time_masks: Time bands per example.
        time_width: Widest time band, as a fraction of the frames.
        freq_masks: Frequency bands per example.
        freq_width: Widest frequency band, as a fraction of the bins.
        seed: Layer seed.
    """

    def __init__(self, time_masks: int = 2, time_width: float = 0.1, freq_masks: int = 2, freq_width: float = 0.1,
                 seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self.time_masks, self.freq_masks = _count("time_masks", time_masks), _count("freq_masks", freq_masks)
        self.time_width = _fraction("time_width", time_width, closed=True)
        self.freq_width = _fraction("freq_width", freq_width, closed=True)

    def augment(self, x):
        keep = _band_mask(x, 1, self.time_masks, int(round(self.time_width * x.shape[1])), self.seed_generator)
        keep = keep * _band_mask(x, 2, self.freq_masks, int(round(self.freq_width * x.shape[2])),
                                 self.seed_generator)
        return x * keep

    def get_config(self) -> dict:
        return {**super().get_config(), "time_masks": self.time_masks, "time_width": self.time_width,
                "freq_masks": self.freq_masks, "freq_width": self.freq_width}


class _MixBase(BatchAugment):
    """Pairs each example with a random other one of the batch; labels mixed with the same weight."""

    mixes_labels = True

    def __init__(self, alpha: float = 1.0, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise invalid_value("alpha", "a positive number (the Beta(alpha, alpha) of the mixing weight)", alpha)
        self.alpha = float(alpha)

    def _pairs(self, x):
        n = _batch(x)
        perm = tf.argsort(keras.random.uniform((n,), seed=self.seed_generator))
        lam = keras.random.beta((n,), self.alpha, self.alpha, seed=self.seed_generator)
        return perm, lam

    def mix(self, x, y, labeled):
        perm, lam = self._pairs(x)
        x, lam = self._mix_inputs(x, tf.gather(x, perm), lam)
        if y is None:
            return x, None, None
        y = tf.cast(y, tf.float32)
        mixed = lam[:, None] * y + (1.0 - lam[:, None]) * tf.gather(y, perm)
        both = tf.logical_and(labeled, tf.gather(labeled, perm))  # one unlabeled source: soft loss only
        return x, mixed * tf.cast(both, mixed.dtype)[:, None], both

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="edgekd")
class Mixup(_MixBase):
    """mixup (Zhang et al. 2018): ``λ·x_i + (1 − λ)·x_j``, λ ~ Beta(alpha, alpha) per example.

    Args:
        alpha: Beta distribution parameter (1: λ uniform; smaller: closer to one of the two).
        seed: Layer seed.
    """

    def _mix_inputs(self, x, other, lam):
        return _per_example(lam, x) * x + (1.0 - _per_example(lam, x)) * other, lam


@keras.saving.register_keras_serializable(package="edgekd")
class CutMix(_MixBase):
    """CutMix (Yun et al. 2019) for ``(batch, H, W, C)`` images: a box of another example pasted in.

    The box covers ``1 − λ`` of the image (λ ~ Beta(alpha, alpha), clipped at the borders); labels are mixed
    by the area actually kept.

    Args:
        alpha: Beta distribution parameter.
        seed: Layer seed.
    """

    def _mix_inputs(self, x, other, lam):
        h, w = x.shape[1], x.shape[2]
        n = _batch(x)
        cut = tf.sqrt(1.0 - lam)
        centre = keras.random.uniform((n, 2), seed=self.seed_generator)
        rows, cols = tf.range(h, dtype=tf.float32)[None, :] + 0.5, tf.range(w, dtype=tf.float32)[None, :] + 0.5
        in_rows = tf.abs(rows - centre[:, :1] * h) < (cut[:, None] * h / 2)
        in_cols = tf.abs(cols - centre[:, 1:] * w) < (cut[:, None] * w / 2)
        box = tf.cast(in_rows[:, :, None] & in_cols[:, None, :], x.dtype)[..., None]
        kept = 1.0 - tf.reduce_mean(tf.cast(box, tf.float32), axis=[1, 2, 3])
        return x * (1.0 - box) + other * box, kept


@keras.saving.register_keras_serializable(package="edgekd")
class Compose(BatchAugment):
    """Several augmentations applied in order (``get("shift+mixup")``).

    Args:
        augments: The layers, in order.
    """

    def __init__(self, augments: Sequence[Any], seed: Optional[int] = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self.augments = [keras.saving.deserialize_keras_object(a) if isinstance(a, dict) else a for a in augments]
        if not self.augments or not all(isinstance(a, BatchAugment) for a in self.augments):
            raise invalid_value("augments", "a non-empty list of edgekd.distill.augment layers", augments)
        self.mixes_labels = any(a.mixes_labels for a in self.augments)

    def mix(self, x, y, labeled):
        for a in self.augments:
            x, y, labeled = a.mix(x, y, labeled)
        return x, y, labeled

    def get_config(self) -> dict:
        return {**super().get_config(), "augments": [keras.saving.serialize_keras_object(a) for a in self.augments]}


_REGISTRY = {"shift": RandomShift, "crop": RandomCrop, "flip": RandomFlip, "time_shift": TimeShift,
             "specaugment": SpecAugment, "mixup": Mixup, "cutmix": CutMix}


def names() -> list[str]:
    """The built-in augmentation names :func:`get` accepts."""
    return sorted(_REGISTRY)


def _one(spec: str, seed: Optional[int]) -> BatchAugment:
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in _REGISTRY:
        raise invalid_value("augment", f"one of {', '.join(names())} (joined with '+', options as "
                            "'name:key=value,...')", spec)
    kwargs: dict[str, Any] = {}
    for part in filter(str.strip, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key.strip().isidentifier():
            raise invalid_value("augment", f"'{name}:key=value,...'; the part {part.strip()!r} is not key=value",
                                spec)
        kwargs[key.strip()] = _option_value(value)
    cls = _REGISTRY[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "seed", "kwargs")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise InvalidArgumentError(f"Invalid option for augmentation {name!r}: {', '.join(unknown)}. Valid options: "
                                   f"{', '.join(valid)} (help(edgekd.distill.augment.{cls.__name__})).")
    return cls(**kwargs, seed=seed)


def get(spec: Union[str, Sequence[str]], *, seed: Optional[int] = None) -> BatchAugment:
    """A built-in augmentation by name: ``"shift"``, ``"mixup:alpha=0.4"``, ``"shift+mixup"`` or a list of names.

    Args:
        spec: Name(s), options after ``:``, several joined with ``+`` (a :class:`Compose`).
        seed: Seed of the layers (each gets its own generator).

    Returns:
        The layer.

    Raises:
        InvalidArgumentError: An unknown name (the message lists the valid ones) or option.
    """
    parts = spec.split("+") if isinstance(spec, str) else list(spec)
    if not parts or not all(isinstance(p, str) and p.strip() for p in parts):
        raise invalid_value("augment", f"a name among {', '.join(names())}, or several joined with '+'", spec)
    layers = [_one(p, None if seed is None else seed + i) for i, p in enumerate(parts)]
    return layers[0] if len(layers) == 1 else Compose(layers)


def resolve(augment: Any) -> Any:
    """``augment=`` of the Distiller: None, a name/list for :func:`get`, a Keras layer/model or a callable."""
    if augment is None or isinstance(augment, keras.layers.Layer):
        return augment
    if isinstance(augment, (str, list, tuple)):
        return get(augment)
    if callable(augment):
        return augment
    raise invalid_value("augment", "None, a built-in name (" + ", ".join(names()) + "), a Keras preprocessing "
                        "layer/model or a callable batch -> batch", type(augment).__name__)


def apply(augment: Any, x, y, num_classes: int):
    """Apply ``augment`` to one training batch: ``(x, y)`` → ``(augmented x, y or mixed soft label rows)``.

    Label-mixing layers get the labels as soft rows (:func:`soft_labels`); other augmentations leave ``y``
    as it is. A Keras layer/model is called with ``training=True``, a plain callable with the batch alone.
    """
    if getattr(augment, "mixes_labels", False):
        if y is None:
            return augment.mix(x, None, None)[0], None
        rows, labeled = soft_labels(y, num_classes)
        x, rows, _ = augment.mix(x, rows, labeled)
        return x, rows
    if isinstance(augment, keras.layers.Layer):
        return augment(x, training=True), y
    return augment(x), y
