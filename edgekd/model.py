"""The deployable model: one object from ``convert`` to ``export``, ``check``, ``emulate`` and ``firmware``.

A :class:`ConvertedModel` holds the ``.tflite`` flatbuffer together with what
the stages after conversion need and would otherwise re-derive: the parsed
flatbuffer (parsed once, cached), the input/output quantization, the model's
input shape and the shape of the data it was made for (a lower-resolution
student's inputs are resized with :meth:`ConvertedModel.adapt`), class labels,
where it came from, and facts measured on the way (the TFLM arena, an
emulation). Stages call :meth:`ConvertedModel.coerce` on their model argument,
so bytes and ``.tflite`` paths keep working, and return it enriched with
:meth:`ConvertedModel.with_`.

The object *is* its bytes (a :class:`bytes` subclass): ``bytes(model)``,
``model.data``, ``len(model)``, ``f.write(model)`` and ``model == other_bytes``
work as they did when ``convert`` returned bytes. Equality and hashing are
those of the bytes: two objects with the same flatbuffer are the same model.

:func:`quantize` / :func:`dequantize` are edgekd's one quantizer: TFLite's
rounding (half away from zero), bit-exact with the generated firmware helpers
(``model_io::quantize_input``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from edgekd import flatbuffer
from edgekd.datasets import resize
from edgekd.errors import DataError, TFLiteFileError, invalid_value

__all__ = ["ConvertedModel", "as_shape", "dequantize", "quantize"]


def quantize(x: Any, scale: float, zero_point: int, dtype: Any = np.int8) -> np.ndarray:
    """Affine-quantize real values exactly as TFLite's reference QUANTIZE kernel does.

    ``q = clamp(round(x / scale) + zero_point)`` with the division in float32
    and rounding half away from zero (``std::round``/``lroundf``), not NumPy's
    half-to-even; NaN maps to the zero point. The generated firmware helpers
    (``model_io``) are tested bit for bit against this function.
    """
    info = np.iinfo(dtype)
    x32 = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scaled = (x32 / np.float32(scale)).astype(np.float32)
    nan = np.isnan(scaled)
    span = float(info.max - info.min + 1)
    s64 = np.clip(np.where(nan, 0.0, scaled.astype(np.float64)), -2 * span, 2 * span)
    rounded = np.where(s64 >= 0, np.floor(s64 + 0.5), np.ceil(s64 - 0.5))  # exact for float32 inputs
    q = np.where(nan, zero_point, rounded + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: Any, scale: float, zero_point: int) -> np.ndarray:
    """``real = scale * (q - zero_point)`` in float32, as TFLite's DEQUANTIZE kernel."""
    diff = np.asarray(q, dtype=np.int64) - np.int64(zero_point)  # int64: no overflow for any stored values
    with np.errstate(all="ignore"):
        return (diff.astype(np.float32) * np.float32(scale)).astype(np.float32)


def as_shape(value: Any, argument: str) -> Optional[tuple[int, ...]]:
    """``value`` as a per-example shape (a tuple of positive ints), or None.

    Raises:
        InvalidArgumentError: Not a sequence of positive integers (named as ``argument``).
    """
    if value is None:
        return None
    try:
        shape = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        shape = None
    if shape is None or any(d < 1 for d in shape):
        raise invalid_value(argument, "a shape of positive integers without the batch, e.g. (8, 8, 1)", value)
    return shape


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ConvertedModel(bytes):
    """A ``.tflite`` flatbuffer with the facts the deployment stages need.

    Attributes:
        data: The flatbuffer (plain ``bytes``).
        name: A name for the model (the Keras model's, or the file's stem).
        labels: Class names, one per output, when known.
        input_shape: The model's input shape without the batch (from the
            flatbuffer when not given).
        source_shape: The per-example shape of the data the model was made
            for, when it differs from ``input_shape`` (e.g. ``(8, 8, 1)`` for a
            6x6 student of an 8x8 teacher); ``None``: the same.
        provenance: Where it came from: Keras source, conversion options, the
            Dense weight quantization, the edgekd version, or the file read.
        arena_bytes: TFLM tensor-arena bytes, once measured (``edgekd check``).
        emulation: An :class:`edgekd.emulate.Emulation` of it, once run.
    """

    data: bytes
    name: str = "model"
    labels: Optional[tuple[str, ...]] = None
    input_shape: Optional[tuple[int, ...]] = None
    source_shape: Optional[tuple[int, ...]] = None
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    arena_bytes: Optional[int] = None
    emulation: Any = None

    def __new__(cls, data: Any = b"", *args: Any, **kwargs: Any) -> "ConvertedModel":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise invalid_value("data", "the .tflite flatbuffer as bytes", type(data).__name__)
        return super().__new__(cls, data)

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("data", bytes.__bytes__(self) if type(self.data) is not bytes else self.data)
        if not isinstance(self.name, str) or not self.name:
            raise invalid_value("name", "a non-empty string", self.name)
        if self.labels is not None:
            set_("labels", tuple(str(lb) for lb in self.labels))
        set_("provenance", dict(self.provenance or {}))
        shape = as_shape(self.input_shape, "input_shape")
        if shape is None:  # from the flatbuffer: parsed (and verified) now, and cached
            fb = self.parsed
            shape = tuple(int(d) for d in fb.input_tensors[0].shape[1:]) if fb.inputs else None
        set_("input_shape", shape)
        source = as_shape(self.source_shape, "source_shape")
        set_("source_shape", None if source == self.input_shape else source)
        if self.arena_bytes is not None and (isinstance(self.arena_bytes, bool) or int(self.arena_bytes) <= 0):
            raise invalid_value("arena_bytes", "a positive number of bytes or None", self.arena_bytes)

    def __bytes__(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("labels", "source_shape", "arena_bytes")
                        if getattr(self, k) is not None)
        return f"ConvertedModel(name={self.name!r}, {len(self)} bytes, input_shape={self.input_shape!r}{extra})"

    def __reduce__(self) -> Any:
        return (_rebuild, (self.data, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                       if f.name != "data"}))

    @functools.cached_property
    def parsed(self) -> flatbuffer.TFLiteModel:
        """The verified flatbuffer (:func:`edgekd.flatbuffer.read_tflite`), parsed on first use, then cached.

        Raises:
            TFLiteFileError: The bytes are not a valid TFLite model.
        """
        return flatbuffer.read_tflite(self.data, source=self.provenance.get("file"))

    @property
    def input_quant(self) -> tuple[float, int]:
        """(scale, zero point) of input 0; ``(1.0, 0)`` for a float or per-channel input."""
        return _quant(self.parsed.input_tensors)

    @property
    def output_quant(self) -> tuple[float, int]:
        """(scale, zero point) of output 0; ``(1.0, 0)`` for a float or per-channel output."""
        return _quant(self.parsed.output_tensors)

    def quantize(self, x: Any) -> np.ndarray:
        """Real inputs to the input tensor's integer type (TFLite's rounding; float inputs pass as float32)."""
        t = self._io_tensor(self.parsed.input_tensors, "input")
        if t.numpy_dtype is None or t.numpy_dtype.kind not in "iu":
            return np.asarray(x, dtype=np.float32)
        scale, zero_point = self.input_quant
        return quantize(x, scale, zero_point, t.numpy_dtype)

    def dequantize(self, q: Any) -> np.ndarray:
        """Raw outputs to real values (float32), as TFLite's DEQUANTIZE; float outputs pass as float32."""
        t = self._io_tensor(self.parsed.output_tensors, "output")
        if t.numpy_dtype is None or t.numpy_dtype.kind not in "iu":
            return np.asarray(q, dtype=np.float32)
        scale, zero_point = self.output_quant
        return dequantize(q, scale, zero_point)

    def adapt(self, x: Any) -> np.ndarray:
        """Resize a float batch ``(N, *source_shape)`` to the model's ``(N, *input_shape)``.

        A batch already of the model's shape passes unchanged; so does every
        batch when ``source_shape`` is None.

        Raises:
            DataError: The batch has neither the source nor the model's shape.
        """
        x = np.asarray(x)
        want = self.input_shape
        if want is None or tuple(x.shape[1:]) == want:
            return x
        if self.source_shape is None or tuple(x.shape[1:]) != self.source_shape:
            expected = f"(N, {', '.join(map(str, want))})" + (
                f" or (N, {', '.join(map(str, self.source_shape))}) (resized for the model)" if self.source_shape
                else "")
            raise DataError(f"Inputs have shape {tuple(x.shape)}; the model takes {expected}. Pass inputs of "
                            "the model's input shape, or resize them to it.")
        return np.asarray(resize(x, want), dtype=np.float32)

    def with_(self, **changes: Any) -> "ConvertedModel":
        """A copy with ``changes`` (:func:`dataclasses.replace`); the parsed flatbuffer is kept when the bytes are."""
        new = dataclasses.replace(self, **changes)
        if "data" not in changes and "parsed" in self.__dict__:
            new.__dict__["parsed"] = self.__dict__["parsed"]
        return new

    @classmethod
    def coerce(cls, obj: Any, *, argument: str = "model") -> "ConvertedModel":
        """The :class:`ConvertedModel` for a stage's model argument.

        Args:
            obj: A :class:`ConvertedModel` (returned as is), the flatbuffer as
                bytes, or the path of a ``.tflite`` file.
            argument: The argument's name, for messages.

        Raises:
            TFLiteFileError: The file is missing, or the bytes are not a valid
                TFLite model.
            InvalidArgumentError: ``obj`` is none of these.
        """
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return cls(bytes(obj))
        elif isinstance(obj, (str, os.PathLike)):
            path = os.fspath(obj)
            if not os.path.isfile(path):
                raise TFLiteFileError(f"Model file not found: {path}. Pass the path of an existing .tflite file "
                                      f"as `{argument}` (e.g. written by edgekd export).")
            with open(path, "rb") as f:
                data = f.read()
            stem = os.path.splitext(os.path.basename(path))[0]
            return cls(data, name=stem or "model", provenance={"file": path})
        raise invalid_value(argument, "a ConvertedModel, the .tflite flatbuffer as bytes, or its path",
                            type(obj).__name__)

    @staticmethod
    def _io_tensor(tensors: Sequence[flatbuffer.Tensor], role: str) -> flatbuffer.Tensor:
        if not tensors:
            raise DataError(f"The model has no {role} tensor. Pass a model with one input and one output.")
        return tensors[0]


def _quant(tensors: Sequence[flatbuffer.Tensor]) -> tuple[float, int]:
    q = tensors[0].quantization if tensors else None
    if q is None or len(q.scale) != 1:
        return 1.0, 0
    return float(q.scale[0]), int(q.zero_point[0])


def _rebuild(data: bytes, fields: dict[str, Any]) -> ConvertedModel:
    return ConvertedModel(data, **fields)
