"""Convert a Keras model to TFLite: full-integer int8 for microcontrollers.

``convert`` builds the model's serving function with a *static batch of 1*
(Keras 3's default dynamic batch makes the converter emit SHAPE /
STRIDED_SLICE / PACK arithmetic in front of every RESHAPE) and allows
builtin ops only — never SELECT_TF_OPS, which no microcontroller runs.
``evaluate_conversion`` then checks the result with LiteRT on validation
data: top-1 agreement, max abs error, and accuracy before/after, with a gate
on the accuracy drop — or, for outputs that are values rather than class
scores (an autoencoder, a regressor), on the SNR against the float outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import warnings
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from edgekd import _tmp
from edgekd._io import quiet_native_output
from edgekd.datasets import Split, resize, validate
from edgekd.convert.loading import load_model, model_input_shape
from edgekd.errors import AccuracyDropError, ConversionError, DataError, ResizeNeededError, invalid_value
from edgekd.model import ConvertedModel, as_shape
from edgekd.boards import runtime as runtimes
from edgekd.convert.runtime import predict
from edgekd.flatbuffer import read_tflite

MODES = ("int8", "float16", "dynamic", "float32")

__all__ = [
    "DEFAULT_MIN_SNR_DB", "DENSE_CHOICES", "MODES", "TASKS", "ConversionReport", "ConvertedModel", "DenseQuantization",
    "check_gate", "choose_dense_quantization", "convert", "dense_quantization", "evaluate_conversion", "gate_failure",
    "load_model", "model_input_shape", "output_task",
]


# edgekd results that hold a model: what to pass to convert instead
_RESULT_HINTS = {
    "QATResult": "convert it with edgekd.optimize.convert_qat(result, representative_data=...)",
    "PruneResult": "pass its .model",
    "DistillResult": "pass its .student",
    "FitResult": "use its .best_tflite (already converted)",
}


def _require_model(model: Any) -> None:
    """Refuse, naming the type and what to do, anything that is not a Keras model."""
    if hasattr(model, "layers") and hasattr(model, "predict"):
        return
    name = type(model).__name__
    hint = _RESULT_HINTS.get(name)
    if hint is not None:
        raise invalid_value("model", f"a keras.Model, not a {name}: {hint}", name)
    raise invalid_value("model", "a keras.Model or the path of a .keras/.h5 file or SavedModel directory", name)


def _rep_data(representative_data: Any, input_shape: tuple[int, ...], n: int) -> np.ndarray:
    if representative_data is None:
        raise invalid_value(
            "representative_data", "calibration inputs (an array or iterable of arrays) for mode='int8'", None
        )
    if not isinstance(representative_data, np.ndarray):
        try:
            batches = [np.asarray(b[0] if isinstance(b, (tuple, list)) else b) for b in representative_data]
        except TypeError:
            raise invalid_value("representative_data", "an array or an iterable of arrays",
                                type(representative_data).__name__) from None
        batches = [b if b.shape[1:] == input_shape else b[None] for b in batches if b.size]
        representative_data = np.concatenate(batches) if batches else np.zeros((0, *input_shape))
    x = np.asarray(representative_data)
    if x.size and x.dtype.kind != "f":
        raise DataError(
            f"Representative data has dtype {x.dtype}; the model takes float inputs. "
            "Pass float32 data scaled as during training (e.g. x / 255.0)."
        )
    try:
        x = validate(Split(x, name="Representative data"), input_shape=input_shape).x
    except ResizeNeededError as e:  # convert resizes data of the shape the model is made for
        raise e.with_opt_in(f"pass source_shape={e.got} (convert resizes it, as edgekd.datasets.resize)") from None
    if not np.all(np.isfinite(x)):
        raise DataError("Representative data contains NaN or Inf. Clean the calibration data.")
    return x[:n].astype(np.float32)


_OP_PATTERNS = (
    re.compile(r"Quantization not yet supported for op: '?([\w.]+)'?"),
    re.compile(r"'(tf\.\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"failed to legalize operation '([\w.]+)'"),
    re.compile(r"op '([\w.]+)'.*(?:not supported|unsupported)", re.I),
    re.compile(r"Unsupported op(?:eration)?:? '?([\w.]+)'?", re.I),
)


def _conversion_error(e: Exception, mode: str) -> ConversionError:
    msg = str(e)
    for pat in _OP_PATTERNS:
        m = pat.search(msg)
        if m:
            op = m.group(1)
            if mode == "int8":
                return ConversionError(
                    f"Op {op} cannot be fully int8-quantized with builtin TFLite ops. Replace the layer that "
                    f"produces {op} with an int8-capable one, or convert with `mode` float32 or float16 (not for MCUs)."
                )
            return ConversionError(f"Op {op} is not a builtin TFLite op. Replace the layer that produces it.")
    first = next((ln.strip() for ln in msg.splitlines() if "error" in ln.lower()), msg.strip().splitlines()[0]
                 if msg.strip() else type(e).__name__)
    return ConversionError(f"TFLite conversion failed: {first[:300]}. Check that every layer has a builtin "
                           "TFLite op (no custom or TF-only ops).")


def _converter(model: Any, input_shape: tuple[int, ...]) -> Any:
    """A TFLiteConverter for ``model`` with a static batch of 1."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if isinstance(model, keras.Model):
        inp = keras.Input(shape=input_shape, batch_size=1, name="input")
        static = keras.Model(inp, model(inp), name=model.name)
        return tf.lite.TFLiteConverter.from_keras_model(static)
    # a tf-keras model (legacy .h5 fallback): trace a batch-1 function
    spec = tf.TensorSpec((1, *input_shape), tf.float32, name="input")

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x):
        return model(x, training=False)

    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # "consider providing trackable_obj": that path keeps variables
    try:
        return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    finally:
        absl_logger.setLevel(level)


@dataclasses.dataclass(frozen=True)
class DenseQuantization:
    """How Dense weights are quantized for a firmware target, and why.

    Attributes:
        per_channel: Per output channel (``True``) or per tensor (``False``).
        reason: One line saying which runtime decided it.
    """

    per_channel: bool
    reason: str


def dense_quantization(target: Optional[str] = None) -> DenseQuantization:
    """Dense-weight quantization the firmware ``target`` computes correctly.

    Args:
        target: ``"arduino"``, ``"platformio"``, ``"esp-idf"``, or ``None`` for
            a model that every target computes correctly.
    """
    chosen = [runtimes.for_target(target)] if target is not None else runtimes.all_runtimes()
    lacking = [r for r in chosen if not r.per_channel_fully_connected]
    if lacking:
        why = ", ".join(r.label for r in lacking)
        return DenseQuantization(False, f"per-tensor: {why} lacks per-channel FULLY_CONNECTED"
                                        + ("" if target else " (portable to every target; --target esp-idf "
                                                             "allows per-channel)"))
    return DenseQuantization(True, f"per-channel: {', '.join(r.label for r in chosen)} computes it")


def convert(
    model: Any,
    *,
    mode: str = "int8",
    representative_data: Any = None,
    num_calibration_samples: int = 200,
    float_io: bool = False,
    input_shape: Optional[Sequence[int]] = None,
    per_channel_dense: Optional[bool] = None,
    labels: Optional[Sequence[str]] = None,
    source_shape: Optional[Sequence[int]] = None,
) -> ConvertedModel:
    """Convert a Keras model (or a model file) to a TFLite flatbuffer.

    Args:
        model: A ``keras.Model``, or a path accepted by :func:`load_model`.
        mode: ``"int8"`` (full integer, builtin int8 ops only — the MCU mode),
            ``"float16"``, ``"dynamic"`` (int8 weights, float activations) or
            ``"float32"``.
        representative_data: Calibration inputs for ``int8``: an array of shape
            ``(N, *input_shape)`` or an iterable of such arrays / ``(x, y)``
            tuples. Use a few hundred training examples.
        num_calibration_samples: At most this many examples are used.
        float_io: For ``int8``, keep float32 model inputs/outputs (QUANTIZE /
            DEQUANTIZE ops at the edges) instead of int8.
        input_shape: Per-example input shape, required when the model's is
            unknown (``None`` dimensions).
        per_channel_dense: For ``int8``, quantize Dense (FULLY_CONNECTED)
            weights per output channel (``True``, TF's default) or per tensor
            (``False``), which runtimes without per-channel FULLY_CONNECTED need
            (Chirale_TensorFLowLite 2.0.0, the Arduino/PlatformIO runtime:
            :mod:`edgekd.boards.runtime`). ``None`` (default) picks what every
            firmware target computes correctly (:func:`dense_quantization`);
            convolutions stay per channel either way. For one target,
            :func:`choose_dense_quantization` converts both ways and keeps
            per tensor where it is cheaper within the accuracy gate.
        labels: Class names, one per output, carried by the result.
        source_shape: The per-example shape of the data the model is meant
            for when it differs from the model's (a lower-resolution student
            of a teacher): ``representative_data`` of that shape is resized to
            the model's input shape, and the result's :meth:`ConvertedModel.adapt`
            resizes such data for the later stages.

    Returns:
        A :class:`edgekd.model.ConvertedModel`: the ``.tflite`` flatbuffer
        (static batch of 1; ``bytes(result)`` or ``result.data``), its name,
        labels, input and source shapes and provenance (Keras source,
        options, Dense weight quantization, edgekd version).

    Raises:
        InvalidArgumentError: Bad option values.
        DataError: Representative data is empty or of the wrong shape/dtype.
        ConversionError: An op cannot be converted / fully int8-quantized.
    """
    if mode not in MODES:
        raise invalid_value("mode", f"one of {', '.join(MODES)}", mode)
    if not isinstance(num_calibration_samples, int) or num_calibration_samples < 1:
        raise invalid_value("num_calibration_samples", "a positive integer", num_calibration_samples)
    if float_io and mode != "int8":
        raise invalid_value("float_io", "True only with mode='int8'", float_io)
    if per_channel_dense is None:
        per_channel_dense = dense_quantization().per_channel
    if not isinstance(per_channel_dense, bool):
        raise invalid_value("per_channel_dense", "True, False or None", per_channel_dense)
    keras_source = None
    if isinstance(model, (str, os.PathLike)):
        keras_source = os.fspath(model)
        model = load_model(model, input_shape=input_shape)
    _require_model(model)
    shape = model_input_shape(model, input_shape=input_shape)
    source = as_shape(source_shape, "source_shape")
    rep = None
    if mode == "int8":
        rep = _rep_data(representative_data, source or shape, num_calibration_samples)
        if source is not None and source != shape:  # data of the teacher's resolution: resized, as said
            rep = np.asarray(resize(rep, shape), dtype=np.float32)

    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            converter = _converter(model, shape)
    except Exception as e:  # tracing the model failed
        raise ConversionError(f"Cannot trace the model with input shape {shape}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                              "Pass the right `input_shape`.") from None
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def gen() -> Iterable[list[np.ndarray]]:
            _tmp.checkpoint("convert:calibrate")  # TensorFlow's temporary SavedModel exists now
            for i in range(rep.shape[0]):
                yield [rep[i : i + 1]]

        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # TF's own switch (TFLiteConverterBase); convolutions keep per-channel scales.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
        if not float_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        # TensorFlow saves the model to a temporary SavedModel: in edgekd's per-process folder, swept if killed.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), quiet_native_output(), \
                _tmp.python_tempdir():
            warnings.simplefilter("ignore")
            data = converter.convert()
    except Exception as e:
        raise _conversion_error(e, mode) from None
    result = ConvertedModel(
        bytes(data), name=str(getattr(model, "name", "") or "model"), labels=labels, input_shape=shape,
        source_shape=source, provenance={
            "keras_model": keras_source or str(getattr(model, "name", "") or type(model).__name__),
            "options": {"mode": mode, "float_io": bool(float_io), "num_calibration_samples": num_calibration_samples,
                        "calibration_examples": None if rep is None else int(rep.shape[0])},
            "dense_quantization": None if mode != "int8" else ("per-channel" if per_channel_dense else "per-tensor"),
            "edgekd_version": __import__("edgekd").__version__,
        })
    if mode == "int8":
        fb = result.parsed  # parsed once here; export, check and firmware reuse it
        if not fb.is_full_integer:
            bad = next(op.op_name for op in fb.operators
                       if op.op_name not in ("QUANTIZE", "DEQUANTIZE")
                       and any(fb.tensors[t].dtype.startswith("FLOAT") for t in op.inputs + op.outputs if t >= 0))
            raise ConversionError(
                f"Op {bad} stayed float after int8 quantization. Replace the layer that produces {bad} with an "
                "int8-capable one."
            )
    return result


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """How a converted model compares with the float model on validation data."""

    mode: str
    num_examples: int
    agreement: float  # share of examples with the same top-1 class, in [0, 1]
    max_abs_error: float  # max |float output - dequantized TFLite output|
    float_accuracy: Optional[float] = None
    tflite_accuracy: Optional[float] = None
    task: str = "classification"  # or "regression": outputs are values, not class scores (see output_task)
    snr_db: Optional[float] = None  # 10·log10(Σ float² / Σ (float - TFLite)²); inf when identical
    relative_rms_error: Optional[float] = None  # RMS(float - TFLite) / RMS(float)
    max_error_steps: Optional[float] = None  # max |float - TFLite| in output quantization steps (int outputs)

    @property
    def accuracy_drop(self) -> Optional[float]:
        """Float minus TFLite accuracy, in percentage points (None without labels)."""
        if self.float_accuracy is None or self.tflite_accuracy is None:
            return None
        return 100.0 * (self.float_accuracy - self.tflite_accuracy)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["accuracy_drop_pp"] = self.accuracy_drop
        if d["snr_db"] is not None and not np.isfinite(d["snr_db"]):  # JSON has no inf
            d["snr_db"] = None if np.isnan(d["snr_db"]) else (999.0 if d["snr_db"] > 0 else -999.0)
        return d


TASKS = ("auto", "classification", "regression")
DEFAULT_MIN_SNR_DB = 30.0  # relative RMS error ≤ 3.2 %; well-calibrated int8 autoencoders measured 39 and 46 dB


def output_task(reference: np.ndarray, *, input_shape: Optional[Sequence[int]] = None,
                labels: Optional[np.ndarray] = None) -> str:
    """Whether a model's outputs are class scores (``"classification"``) or values (``"regression"``).

    Top-1 agreement means nothing for values (an autoencoder's 640 reconstructed
    samples agree "100 %" while off by many quantization steps), so the
    conversion gate needs to know. From the float model's outputs on the
    validation inputs:

    * labels given: classification when they are integer class indices within
      the outputs (``0 <= y < K``), regression otherwise;
    * a single output value per example: regression (a value, or one sigmoid
      that is thresholded: there is no top-1 to agree on);
    * outputs with more than one dimension per example (an image, a sequence):
      regression;
    * outputs shaped like the inputs (an autoencoder): regression;
    * otherwise (one vector of K > 1 scores): classification.

    Args:
        reference: Float model outputs ``(N, ...)``.
        input_shape: The model's input shape without the batch.
        labels: The validation labels, if any.
    """
    n = reference.shape[0]
    k = int(np.prod(reference.shape[1:])) if reference.ndim > 1 else 1
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        whole = y.dtype.kind in "iub" or (y.dtype.kind == "f" and bool(np.all(np.isfinite(y)))
                                          and bool(np.all(y == np.round(y))))
        if whole and k > 1 and y.shape[0] == n and y.size and y.min() >= 0 and y.max() < k:
            return "classification"
        return "regression"
    if k <= 1 or reference.ndim > 2:
        return "regression"
    if input_shape is not None and tuple(int(d) for d in input_shape) == tuple(reference.shape[1:]):
        return "regression"
    return "classification"


def _error_metrics(ref: np.ndarray, got: np.ndarray, tflite_model: bytes) -> tuple[float, float, Optional[float]]:
    """(SNR dB, relative RMS error, max error in output quantization steps) of ``got`` against ``ref``."""
    with np.errstate(all="ignore"):
        err = ref.astype(np.float64) - got.astype(np.float64)
        signal, noise = float(np.sum(ref.astype(np.float64) ** 2)), float(np.sum(err ** 2))
        if not np.isfinite(noise):
            snr, rel = float("-inf"), float("inf")
        elif noise == 0:
            snr, rel = float("inf"), 0.0
        else:
            snr = 10 * np.log10(signal / noise) if signal > 0 else float("-inf")
            rel = float(np.sqrt(noise / signal)) if signal > 0 else float("inf")
    steps = None
    out = read_tflite(tflite_model).output_tensors[0]
    if out.quantization is not None and out.dtype in ("INT8", "UINT8", "INT16") and out.quantization.scale[0] > 0:
        with np.errstate(all="ignore"):
            steps = float(np.max(np.abs(err))) / out.quantization.scale[0]
    return float(snr), rel, steps


def check_gate(*, max_accuracy_drop: Optional[float], task: str = "auto",
               min_snr_db: Optional[float] = DEFAULT_MIN_SNR_DB) -> None:
    """Validate the gate options of :func:`evaluate_conversion` (raise InvalidArgumentError)."""
    if max_accuracy_drop is not None and max_accuracy_drop < 0:
        raise invalid_value("max_accuracy_drop", "a non-negative number of percentage points", max_accuracy_drop)
    if task not in TASKS:
        raise invalid_value("task", "one of " + ", ".join(TASKS), task)
    if min_snr_db is not None and (isinstance(min_snr_db, bool) or not isinstance(min_snr_db, (int, float))
                                   or not np.isfinite(min_snr_db)):
        raise invalid_value("min_snr_db", "a finite number of decibels (or None)", min_snr_db)


def gate_failure(report: ConversionReport, *, max_accuracy_drop: Optional[float] = 1.0,
                 min_snr_db: Optional[float] = DEFAULT_MIN_SNR_DB) -> Optional[str]:
    """Why ``report`` fails the conversion gate of :func:`evaluate_conversion`, or None when it passes.

    Regression outputs are gated on ``min_snr_db``; classifiers on the
    accuracy drop (with labels) or the top-1 disagreement (without), in
    percentage points, against ``max_accuracy_drop``. ``None`` disables a gate.
    """
    mode = report.mode
    if report.task == "regression":
        snr, rel, steps = report.snr_db, report.relative_rms_error, report.max_error_steps
        if min_snr_db is not None and not snr >= min_snr_db:
            return (f"The {mode} model's outputs are values, not class scores, so the gate compares them with the "
                    f"float model's: SNR {snr:.1f} dB (relative RMS error {100 * rel:.2f}%"
                    + (f", max error {steps:.0f} output quantization steps" if steps is not None else "")
                    + f"), below the required {min_snr_db:g} dB. Use more/better calibration data, quantization-aware "
                    "training (`qat`), or lower `min_snr_db`.")
        return None
    if max_accuracy_drop is None:
        return None
    drop = report.accuracy_drop
    if drop is not None and drop > max_accuracy_drop:
        fa, ta = report.float_accuracy, report.tflite_accuracy
        return (f"The {mode} model loses {drop:.2f} percentage points of accuracy ({100 * fa:.2f}% → {100 * ta:.2f}%), "
                f"more than the allowed {max_accuracy_drop:g}. Use more/better calibration data, quantization-aware "
                "training (`qat`), or raise `max_accuracy_drop`.")
    if drop is None and 100.0 * (1 - report.agreement) > max_accuracy_drop:
        return (f"The {mode} model disagrees with the float model on {100 * (1 - report.agreement):.2f}% of examples "
                f"(no labels, so the gate uses top-1 agreement), more than the allowed {max_accuracy_drop:g}. "
                "Use more/better calibration data or raise `max_accuracy_drop`.")
    return None


def evaluate_conversion(
    model: Any,
    tflite_model: bytes,
    x: np.ndarray,
    y: Optional[np.ndarray] = None,
    *,
    mode: str = "int8",
    max_accuracy_drop: Optional[float] = 1.0,
    batch_size: int = 256,
    task: str = "auto",
    min_snr_db: Optional[float] = DEFAULT_MIN_SNR_DB,
) -> ConversionReport:
    """Compare a converted model with its float source on validation data, using LiteRT.

    Args:
        model: The float Keras model.
        tflite_model: The converted flatbuffer.
        x: Validation inputs ``(N, *input_shape)``.
        y: Optional integer labels; enables the accuracy figures.
        mode: The conversion mode (for the report).
        max_accuracy_drop: Gate for classifiers, in percentage points: raise
            when the TFLite accuracy is lower than the float accuracy by more
            than this. Without labels the gate applies to top-1 disagreement
            instead. ``None`` disables it.
        batch_size: Batch size of the float model's predictions.
        task: ``"classification"``, ``"regression"`` or ``"auto"`` (decided
            from the outputs by :func:`output_task`). Regression outputs are
            gated on their error against the float model, not on top-1.
        min_snr_db: Gate for regression outputs: raise when the signal-to-noise
            ratio of the TFLite outputs against the float outputs,
            ``10·log10(Σ float² / Σ (float − TFLite)²)``, is below this
            (default 30 dB: a relative RMS error above 3.2 %). ``None`` disables it.

    Returns:
        A :class:`ConversionReport`.

    Raises:
        AccuracyDropError: The gate failed; the message says by how much.
    """
    check_gate(max_accuracy_drop=max_accuracy_drop, task=task, min_snr_db=min_snr_db)
    x = np.asarray(x, dtype=np.float32)
    if x.shape[0] == 0:
        raise DataError("Validation data is empty. Pass at least one example.")
    _tmp.checkpoint("convert:validate")
    ref = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    got = predict(tflite_model, x)
    ref2, got2 = ref.reshape(len(x), -1), got.reshape(len(x), -1)
    agreement = float(np.mean(ref2.argmax(1) == got2.argmax(1)))
    with np.errstate(all="ignore"):
        err = float(np.max(np.abs(ref2 - got2)))
    kind = task if task != "auto" else output_task(ref, input_shape=x.shape[1:], labels=y)
    fa = ta = None
    if y is not None and kind == "classification":
        y = np.asarray(y).reshape(-1)
        fa = float(np.mean(ref2.argmax(1) == y))
        ta = float(np.mean(got2.argmax(1) == y))
    snr, rel, steps = _error_metrics(ref2, got2, tflite_model)
    report = ConversionReport(mode, int(len(x)), agreement, err, fa, ta, kind, snr, rel, steps)
    failure = gate_failure(report, max_accuracy_drop=max_accuracy_drop, min_snr_db=min_snr_db)
    if failure is not None:
        raise AccuracyDropError(failure)
    return report


from edgekd.convert.dense import DENSE_CHOICES, choose_dense_quantization  # noqa: E402  (it uses convert)
from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, convert)
