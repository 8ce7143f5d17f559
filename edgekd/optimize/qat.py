"""Quantization-aware training (QAT) and quantization-aware distillation.

:func:`quantize_aware` builds the tf-keras twin of a Keras 3 model
(:mod:`edgekd.optimize.bridge`), wraps it with tfmot's default 8-bit scheme
(fake-quantized per-channel int8 weights and per-tensor int8 activations,
batch norm folded into the preceding convolution), and fine-tunes it. With a
``teacher``, the loss is :func:`edgekd.distill.losses.distillation_terms`
(hard cross-entropy + T²-scaled soft KL), so the student learns the teacher's
soft targets *through* the quantizers. :func:`convert_qat` turns the result
into a full-int8 TFLite model with builtin int8 ops only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np

from edgekd.distill.losses import ends_in_softmax, teacher_logits_model
from edgekd.errors import ConversionError, UnsupportedLayerError, invalid_value
from edgekd.optimize import _data
from edgekd.optimize._compat import import_tf_keras, import_tfmot
from edgekd.convert import convert
from edgekd.distill.losses import distillation_terms, validate_alpha, validate_temperature
from edgekd.flatbuffer import read_tflite
from edgekd.optimize.bridge import to_tf_keras

_CALIBRATION_SAMPLES = 200


@dataclasses.dataclass(frozen=True)
class QATEpoch:
    """Losses of one fine-tuning epoch (means over its batches).

    Attributes:
        epoch: 1-based epoch number.
        loss: The optimized loss.
        hard_loss: Cross-entropy with the labels (T = 1).
        soft_loss: The T²-scaled KL to the teacher's tempered softmax; ``None`` without a teacher.
        val_accuracy: Accuracy of the fake-quantized model on the validation data, if any.
    """

    epoch: int
    loss: float
    hard_loss: float
    soft_loss: Optional[float] = None
    val_accuracy: Optional[float] = None


@dataclasses.dataclass(frozen=True, eq=False)
class QATResult:
    """A quantization-aware fine-tuned model, ready for :func:`convert_qat`.

    Attributes:
        model: The tfmot QAT model (a tf-keras model with fake-quant wrappers).
        history: One :class:`QATEpoch` per epoch.
        teacher: Name of the teacher distilled from, or ``None``.
        temperature: Distillation temperature (meaningful with a teacher).
        alpha: Weight of the hard loss (meaningful with a teacher).
        preserve_sparsity: Whether tfmot's prune-preserving scheme kept zero weights at zero.
        calibration: Up to 200 training inputs, the default representative data of :func:`convert_qat`.
        float_layers: Layers tfmot's 8-bit registry does not quantize during training (quantized
            post-training by the converter instead), e.g. ``Rescaling``.
    """

    model: Any
    history: tuple[QATEpoch, ...]
    teacher: Optional[str]
    temperature: float
    alpha: float
    preserve_sparsity: bool
    calibration: np.ndarray
    float_layers: tuple[str, ...] = ()

    @property
    def soft_losses(self) -> list[Optional[float]]:
        """The soft (distillation) loss per epoch."""
        return [e.soft_loss for e in self.history]

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": [dataclasses.asdict(e) for e in self.history],
            "teacher": self.teacher,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "preserve_sparsity": self.preserve_sparsity,
            "float_layers": list(self.float_layers),
        }


def format_history(result: QATResult) -> str:
    """Render a QAT history as a plain-text table (one line per epoch)."""
    lines = ["epoch  loss     hard     soft     val_acc"]
    for e in result.history:
        soft = "-" if e.soft_loss is None else f"{e.soft_loss:.4f}"
        acc = "-" if e.val_accuracy is None else f"{e.val_accuracy:.4f}"
        lines.append(f"{e.epoch:<6} {e.loss:<8.4f} {e.hard_loss:<8.4f} {soft:<8} {acc}")
    return "\n".join(lines)


def _annotate(model: Any, tfmot: Any, tk: Any) -> tuple[Any, tuple[str, ...]]:
    """Annotate every layer tfmot's 8-bit registry supports; report the others."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # tfmot
        default_8bit_quantize_registry as registry_mod,
    )

    registry = registry_mod.Default8BitQuantizeRegistry()
    skipped: list[str] = []
    # tfmot folds a BatchNormalization into a preceding linear Conv2D/DepthwiseConv2D/Dense
    # (its transforms match annotated pairs); a BN elsewhere has no int8 training config.
    foldable: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, tk.layers.BatchNormalization) and len(layer._inbound_nodes) == 1:
            prev = layer._inbound_nodes[0].inbound_layers
            prev = prev[0] if isinstance(prev, (list, tuple)) and len(prev) == 1 else prev
            if isinstance(prev, (tk.layers.Conv2D, tk.layers.DepthwiseConv2D, tk.layers.Dense)) \
                    and not isinstance(prev, tk.layers.SeparableConv2D) \
                    and prev.get_config().get("activation") == "linear":
                foldable.add(layer.name)

    # The twin is private to this call, so its layers (and weights) are reused as they are.
    def annotate(layer: Any) -> Any:
        if isinstance(layer, tk.layers.InputLayer):
            return layer
        if registry.supports(layer) or layer.name in foldable:
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        skipped.append(f"{layer.name} ({type(layer).__name__})")
        return layer

    annotated = tk.models.clone_model(model, clone_function=annotate)
    return annotated, tuple(skipped)


def _quantize(twin: Any, *, preserve_sparsity: bool) -> tuple[Any, tuple[str, ...]]:
    tfmot = import_tfmot("quantize_aware")
    tk = import_tf_keras()
    annotated, skipped = _annotate(twin, tfmot, tk)
    try:
        with tfmot.quantization.keras.quantize_scope():
            if preserve_sparsity:
                from tensorflow_model_optimization.python.core.api.quantization.keras import collab_opts  # tfmot

                scheme = collab_opts.Default8BitPrunePreserveQuantizeScheme()
                qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
            else:
                qat = tfmot.quantization.keras.quantize_apply(annotated)
    except (RuntimeError, ValueError) as exc:
        raise UnsupportedLayerError(
            f"tfmot cannot quantize this model: {str(exc).splitlines()[0]}. Use layers from "
            "edgekd.optimize.SUPPORTED_LAYERS in Conv/BN/ReLU order"
        ) from None
    return qat, skipped


def _logits_fn(softmax_output: bool) -> Callable[[Any], Any]:
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if softmax_output:
        # log-probabilities differ from the logits by a per-example constant,
        # to which softmax (hence both distillation terms) is invariant.
        return lambda p: tf.math.log(tf.clip_by_value(p, 1e-12, 1.0))
    return lambda z: z


def _teacher_logits(teacher: Any, x: np.ndarray, num_classes: int, batch_size: int) -> np.ndarray:
    if not hasattr(teacher, "predict") or not getattr(teacher, "outputs", None):
        raise invalid_value("teacher", "a built Keras model (or None)", type(teacher).__name__)
    logits_model, _ = teacher_logits_model(teacher)
    out = np.asarray(logits_model.predict(x, batch_size=max(batch_size, 256), verbose=0))
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise invalid_value("teacher", f"a classifier with {num_classes} outputs like the student",
                            f"{teacher.name} with output shape {out.shape[1:]}")
    return out.astype(np.float32)


def quantize_aware(
    model: Any,
    *,
    data: Any,
    epochs: int = 3,
    teacher: Any = None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    validation_data: Any = None,
    preserve_sparsity: bool = False,
    seed: int = 0,
    print_fn: Optional[Callable[[str], None]] = None,
) -> QATResult:
    """Quantization-aware fine-tuning of a Keras 3 model, optionally distilling from a teacher.

    Args:
        model: A trained Keras 3 Sequential/Functional classifier (logits or softmax output).
        data: Labeled fine-tuning data: an :class:`edgekd.datasets.Dataset` (its ``train`` split,
            and its ``val`` split for the per-epoch accuracy), a ``Split``, or ``(x, y)`` arrays.
            With a teacher, labels may be missing (inputs only) or ``-1`` for unlabeled examples,
            which then get the soft loss alone.
        epochs: Fine-tuning epochs (QAT needs few: 2-10).
        teacher: A Keras model; when given, the loss is the distillation loss of
            :func:`edgekd.distill.losses.distillation_terms` (quantization-aware distillation).
        temperature: Distillation temperature T (with a teacher).
        alpha: Weight of the hard label loss in [0, 1] (with a teacher); the soft loss gets ``1 - alpha``.
        batch_size: Batch size.
        learning_rate: Adam learning rate (fine-tuning: lower than for training from scratch).
        validation_data: ``(x, y)`` or a Split for the per-epoch accuracy (overrides a Dataset's ``val``).
        preserve_sparsity: Use tfmot's prune-preserving 8-bit scheme
            (``Default8BitPrunePreserveQuantizeScheme``)
            so the zeros of a pruned model (:func:`edgekd.optimize.prune`) stay zero.
        seed: Seed of the shuffling and of TensorFlow's random ops.
        print_fn: Called with one line per epoch (e.g. ``print``); silent if ``None``.

    Returns:
        A :class:`QATResult`; :func:`convert_qat` turns it into full-int8 TFLite bytes.

    Raises:
        InvalidArgumentError: Bad option values, or ``model``/``teacher`` not usable.
        DataError: ``data`` is empty, unlabeled, or shaped unlike the model's input.
        UnsupportedLayerError: A layer has no tf-keras twin or cannot be quantized.
        MissingExtraError: tensorflow-model-optimization is not installed.
    """
    input_shape, num_classes = _data.model_signature(model)
    epochs = _data.positive_int("epochs", epochs)
    batch_size = _data.positive_int("batch_size", batch_size)
    learning_rate = _data.positive_float("learning_rate", learning_rate)
    temperature = validate_temperature(temperature)
    alpha = validate_alpha(alpha)
    if not isinstance(preserve_sparsity, bool):
        raise invalid_value("preserve_sparsity", "True or False", preserve_sparsity)
    td = _data.training_data(data, input_shape=input_shape, num_classes=num_classes,
                             validation_data=validation_data, allow_unlabeled=teacher is not None)
    import_tfmot("quantize_aware")  # fail on a missing extra before any work

    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    t_logits = _teacher_logits(teacher, td.x, num_classes, batch_size) if teacher is not None else None
    twin = to_tf_keras(model)
    qat, skipped = _quantize(twin, preserve_sparsity=preserve_sparsity)
    tk = import_tf_keras()
    history = _fit(qat, td, t_logits, tk=tk, tf=tf, epochs=epochs, batch_size=batch_size,
                   learning_rate=learning_rate, temperature=temperature, alpha=alpha, seed=seed,
                   to_logits=_logits_fn(ends_in_softmax(model)), print_fn=print_fn)
    rng = np.random.default_rng(seed)
    calib = td.x[rng.permutation(td.x.shape[0])[:_CALIBRATION_SAMPLES]]
    return QATResult(
        model=qat, history=tuple(history), teacher=None if teacher is None else teacher.name,
        temperature=temperature, alpha=alpha, preserve_sparsity=preserve_sparsity, calibration=calib,
        float_layers=skipped,
    )


def _fit(qat: Any, td: _data.TrainData, t_logits: Optional[np.ndarray], *, tk: Any, tf: Any, epochs: int,
         batch_size: int, learning_rate: float, temperature: float, alpha: float, seed: int,
         to_logits: Callable[[Any], Any], print_fn: Optional[Callable[[str], None]]) -> list[QATEpoch]:
    tf.random.set_seed(seed)
    optimizer = tk.optimizers.Adam(learning_rate)
    variables = qat.trainable_variables
    with_teacher = t_logits is not None

    @tf.function(reduce_retracing=True)
    def step(x, y, t):
        with tf.GradientTape() as tape:
            s = to_logits(qat(x, training=True))
            if with_teacher:
                total, hard, soft = distillation_terms(y, s, t, temperature=temperature, alpha=alpha)
            else:
                hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=s))
                total, soft = hard, tf.zeros_like(hard)
            reg = tf.add_n(qat.losses) if qat.losses else tf.zeros_like(total)
            objective = total + reg
        grads = tape.gradient(objective, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return total, hard, soft

    rng = np.random.default_rng(seed)
    n = td.x.shape[0]
    dummy_t = np.zeros((n, 1), np.float32)
    history = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        sums = np.zeros(3)
        batches = 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            t = t_logits[idx] if with_teacher else dummy_t[idx]
            vals = step(tf.constant(td.x[idx]), tf.constant(td.y[idx].astype(np.int32)), tf.constant(t))
            sums += [float(v) for v in vals]
            batches += 1
        loss, hard, soft = (sums / max(batches, 1)).tolist()
        if not math.isfinite(loss):
            raise ConversionError(
                f"QAT diverged at epoch {epoch} (loss={loss}). Lower learning_rate (now {learning_rate:g})"
            )
        val_acc = _accuracy(qat, td.x_val, td.y_val) if td.x_val is not None else None
        rec = QATEpoch(epoch, loss, hard, soft if with_teacher else None, val_acc)
        history.append(rec)
        if print_fn is not None:
            soft_txt = f" soft={soft:.4f}" if with_teacher else ""
            acc_txt = f" val_acc={val_acc:.4f}" if val_acc is not None else ""
            print_fn(f"qat epoch {epoch}/{epochs}: loss={loss:.4f} hard={hard:.4f}{soft_txt}{acc_txt}")
    return history


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    preds = [np.argmax(np.asarray(model(x[i : i + batch_size], training=False)), axis=-1)
             for i in range(0, x.shape[0], batch_size)]
    return float(np.mean(np.concatenate(preds) == y))


def convert_qat(
    result: QATResult,
    *,
    representative_data: Any = None,
    num_calibration_samples: int = 200,
    float_io: bool = False,
    per_channel_dense: Optional[bool] = None,
) -> bytes:
    """Convert a QAT model to a full-int8 TFLite flatbuffer with builtin int8 ops only.

    The activation ranges come from the fake-quant nodes learned during QAT;
    ``representative_data`` only calibrates the layers tfmot left float (see
    :attr:`QATResult.float_layers`) and defaults to the inputs kept in ``result``.

    Args:
        result: The :class:`QATResult` of :func:`quantize_aware`.
        representative_data: Calibration inputs (array or iterable), defaults to ``result.calibration``.
        num_calibration_samples: At most this many calibration examples are used.
        float_io: Keep float32 inputs/outputs (QUANTIZE/DEQUANTIZE at the edges) instead of int8.
        per_channel_dense: As :func:`edgekd.convert.convert` (Dense weights per channel or per tensor).

    Returns:
        The ``.tflite`` bytes (static batch 1), as :func:`edgekd.convert.convert` makes them.

    Raises:
        InvalidArgumentError: ``result`` is not a QATResult.
        ConversionError: An op cannot be converted to a builtin int8 op.
    """
    if not isinstance(result, QATResult):
        raise invalid_value("result", "the QATResult returned by quantize_aware", type(result).__name__)

    rep = result.calibration if representative_data is None else representative_data
    data = convert(result.model, mode="int8", representative_data=rep,
                   num_calibration_samples=num_calibration_samples, float_io=float_io,
                   per_channel_dense=per_channel_dense)
    fb = read_tflite(data)
    custom = sorted({op.custom_code or op.op_name for op in fb.operators if op.custom_code})
    if custom:
        raise ConversionError(f"The QAT model converted with custom ops {custom}; microcontrollers run "
                              "builtin "
                              "ops only. Replace the layers that produce them")
    return data
