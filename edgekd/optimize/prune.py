"""Magnitude pruning with tfmot's polynomial-decay schedule, for Keras 3 models.

:func:`prune` fine-tunes the tf-keras twin of a Keras 3 model while tfmot
zeroes the smallest-magnitude weights of every prunable layer (Conv2D and
Dense kernels, SeparableConv2D pointwise kernels; tfmot does not prune
depthwise kernels), ramping the sparsity from ``initial_sparsity`` to
``target_sparsity``. The pruning wrappers are stripped afterwards and the
weights copied back into a clone of the Keras 3 model.

TFLite Micro has no sparse kernels: a pruned model has the same tensor arena
and the same latency on the board. Pruning shrinks the *compressed* model
(the download / OTA update), which :class:`PruneResult` reports as gzip sizes
of the int8 model before and after.
"""

from __future__ import annotations

import dataclasses
import gzip
from typing import Any, Callable, Optional

import numpy as np

from edgekd.distill.losses import ends_in_softmax
from edgekd.errors import UnsupportedLayerError, invalid_value
from edgekd.optimize import _data
from edgekd.optimize._compat import import_tf_keras, import_tfmot
from edgekd.convert import convert
from edgekd.optimize.bridge import copy_weights_back, to_tf_keras


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """Achieved sparsity of one pruned weight tensor.

    Attributes:
        layer: Layer name.
        weight: Weight name (``kernel``, ``pointwise_kernel``).
        size: Number of weights.
        zeros: Number of weights that are exactly zero.
    """

    layer: str
    weight: str
    size: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class PruneResult:
    """A pruned (and stripped) Keras 3 model with its sparsity and size report.

    Attributes:
        model: Keras 3 model, same architecture as the input, pruned weights.
        target_sparsity: The requested final sparsity.
        layers: Achieved sparsity per pruned weight tensor.
        history: Per-epoch ``(loss, val_accuracy or None)``.
        int8_bytes_before: Size of the int8 TFLite model before pruning (``None`` if not measured).
        int8_bytes_after: Size of the int8 TFLite model after pruning.
        gzip_bytes_before: gzip -9 size of the int8 model before pruning.
        gzip_bytes_after: gzip -9 size of the int8 model after pruning.
    """

    model: Any
    target_sparsity: float
    layers: tuple[LayerSparsity, ...]
    history: tuple[tuple[float, Optional[float]], ...]
    int8_bytes_before: Optional[int] = None
    int8_bytes_after: Optional[int] = None
    gzip_bytes_before: Optional[int] = None
    gzip_bytes_after: Optional[int] = None

    @property
    def sparsity(self) -> float:
        """Sparsity over all pruned weight tensors together."""
        size = sum(s.size for s in self.layers)
        return sum(s.zeros for s in self.layers) / size if size else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "layers": [dict(dataclasses.asdict(s), sparsity=s.sparsity) for s in self.layers],
            "history": [list(h) for h in self.history],
            "int8_bytes_before": self.int8_bytes_before,
            "int8_bytes_after": self.int8_bytes_after,
            "gzip_bytes_before": self.gzip_bytes_before,
            "gzip_bytes_after": self.gzip_bytes_after,
        }


def format_sparsity(result: PruneResult) -> str:
    """Render a :class:`PruneResult` as plain text: one line per pruned tensor, then sizes."""
    lines = [f"{'layer':<24} {'weight':<18} {'size':>8} {'sparsity':>9}"]
    for s in result.layers:
        lines.append(f"{s.layer:<24} {s.weight:<18} {s.size:>8} {s.sparsity:>9.1%}")
    lines.append(f"{'all pruned tensors':<24} {'':<18} {sum(s.size for s in result.layers):>8} "
                 f"{result.sparsity:>9.1%}  (target {result.target_sparsity:.1%})")
    if result.gzip_bytes_before is not None:
        lines.append(f"int8 .tflite: {result.int8_bytes_before} -> {result.int8_bytes_after} bytes; gzip -9: "
                     f"{result.gzip_bytes_before} -> {result.gzip_bytes_after} bytes "
                     "(TFLM runs dense kernels: RAM and latency unchanged)")
    return "\n".join(lines)


def gzip_size(data: bytes) -> int:
    """Size of ``data`` compressed with gzip -9 (deterministic header)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _sparsity(model: Any, pruned_weights: dict[str, list[str]]) -> tuple[LayerSparsity, ...]:
    out = []
    for name, weights in pruned_weights.items():
        layer = model.get_layer(name)
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in weights:
                arr = np.asarray(w)
                out.append(LayerSparsity(name, short, int(arr.size), int(np.sum(arr == 0))))
    return tuple(out)


def prune(
    model: Any,
    *,
    data: Any,
    epochs: int = 4,
    target_sparsity: float = 0.5,
    initial_sparsity: float = 0.0,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    validation_data: Any = None,
    measure_size: bool = True,
    representative_data: Any = None,
    seed: int = 0,
    print_fn: Optional[Callable[[str], None]] = None,
) -> PruneResult:
    """Magnitude-prune a Keras 3 model with tfmot's polynomial-decay schedule.

    The sparsity ramps from ``initial_sparsity`` to ``target_sparsity`` over the
    first 70 % of the fine-tuning steps; the remaining steps recover accuracy
    at the final sparsity.

    Args:
        model: A trained Keras 3 Sequential/Functional classifier.
        data: Labeled fine-tuning data (Dataset, Split or ``(x, y)``), as for
            :func:`edgekd.optimize.quantize_aware`.
        epochs: Fine-tuning epochs.
        target_sparsity: Final fraction of zero weights in each prunable tensor, in [0, 1).
        initial_sparsity: Sparsity at the first step, in [0, target_sparsity].
        batch_size: Batch size.
        learning_rate: Adam learning rate.
        validation_data: ``(x, y)`` or a Split for the per-epoch accuracy.
        measure_size: Convert the model to int8 TFLite before and after pruning and
            report both sizes and their gzip sizes.
        representative_data: Calibration inputs for those conversions (default: 200 training inputs).
        seed: Seed of the shuffling and TensorFlow's random ops.
        print_fn: Called with one line per epoch; silent if ``None``.

    Returns:
        A :class:`PruneResult` whose ``model`` is a Keras 3 model ready for
        :func:`edgekd.convert.convert` or for pruning-preserving QAT
        (``quantize_aware(result.model, ..., preserve_sparsity=True)``).

    Raises:
        InvalidArgumentError: Bad option values.
        DataError: Bad fine-tuning data.
        UnsupportedLayerError: A layer has no tf-keras twin, or no layer is prunable.
        MissingExtraError: tensorflow-model-optimization is not installed.
    """
    input_shape, num_classes = _data.model_signature(model)
    epochs = _data.positive_int("epochs", epochs)
    batch_size = _data.positive_int("batch_size", batch_size)
    learning_rate = _data.positive_float("learning_rate", learning_rate)
    if isinstance(target_sparsity, bool) or not isinstance(target_sparsity, (int, float)) \
            or not 0.0 <= target_sparsity < 1.0:
        raise invalid_value("target_sparsity", "a fraction in [0, 1), e.g. 0.5", target_sparsity)
    if isinstance(initial_sparsity, bool) or not isinstance(initial_sparsity, (int, float)) \
            or not 0.0 <= initial_sparsity <= target_sparsity:
        raise invalid_value("initial_sparsity", f"a fraction in [0, target_sparsity={target_sparsity}]",
                            initial_sparsity)
    td = _data.training_data(data, input_shape=input_shape, num_classes=num_classes,
                             validation_data=validation_data)
    tfmot = import_tfmot("prune")
    tk = import_tf_keras()
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    rng = np.random.default_rng(seed)
    calib = td.x[rng.permutation(td.x.shape[0])[:200]] if representative_data is None else representative_data
    twin = to_tf_keras(model)

    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # tfmot

    steps_per_epoch = -(-td.x.shape[0] // batch_size)
    total = steps_per_epoch * epochs
    frequency = max(1, int(0.7 * total) // 10)
    end_step = max(frequency, (int(0.7 * total) // frequency) * frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=float(initial_sparsity), final_sparsity=float(target_sparsity),
        begin_step=0, end_step=end_step, frequency=frequency,
    )
    pruned_weights: dict[str, list[str]] = {}

    def wrap(layer: Any) -> Any:
        if isinstance(layer, tk.layers.InputLayer) or not prune_registry.PruneRegistry.supports(layer):
            return layer
        weights = prune_registry.PruneRegistry._LAYERS_WEIGHTS_MAP.get(layer.__class__, [])
        if not weights:
            return layer
        pruned_weights[layer.name] = list(weights)
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    wrapped = tk.models.clone_model(twin, clone_function=wrap)
    if not pruned_weights:
        raise UnsupportedLayerError(
            f"Model {model.name!r} has no prunable layer (tfmot prunes Conv2D/Dense kernels and "
            "SeparableConv2D pointwise kernels)"
        )
    from_logits = not ends_in_softmax(model)
    wrapped.compile(optimizer=tk.optimizers.Adam(learning_rate),
                    loss=tk.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                    metrics=["accuracy"])
    tf.random.set_seed(seed)
    tk.utils.set_random_seed(seed)
    val = (td.x_val, td.y_val) if td.x_val is not None else None
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    if print_fn is not None:
        callbacks.append(tk.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: print_fn(
            f"prune epoch {e + 1}/{epochs}: " + " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items()))))
    hist = wrapped.fit(td.x, td.y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0,
                       validation_data=val, callbacks=callbacks)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    layers = _sparsity(stripped, pruned_weights)
    pruned = copy_weights_back(model, stripped)
    history = tuple(
        (float(loss), None if val is None else float(acc))
        for loss, acc in zip(hist.history["loss"], hist.history.get("val_accuracy", [None] * epochs))
    )
    sizes: dict[str, Optional[int]] = {}
    if measure_size:
        before = convert(model, mode="int8", representative_data=calib)
        after = convert(pruned, mode="int8", representative_data=calib)
        sizes = dict(int8_bytes_before=len(before), int8_bytes_after=len(after),
                     gzip_bytes_before=gzip_size(before), gzip_bytes_after=gzip_size(after))
    return PruneResult(model=pruned, target_sparsity=float(target_sparsity), layers=layers, history=history,
                       **sizes)
