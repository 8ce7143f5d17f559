"""The model's main subgraph as the compiled engine needs it: constants as numpy arrays.

:func:`read_graph` starts from :func:`edgekd.flatbuffer.read_tflite` (which has
verified every index and size) and adds what code generation needs beyond it:
the contents of constant tensors, per-tensor quantization with float32 scales
kept exact, and the operators' options.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from edgekd import flatbuffer

# TFLite tensor type -> (numpy dtype, C type).
DTYPES: dict[str, tuple[str, str]] = {
    "INT8": ("int8", "int8_t"), "UINT8": ("uint8", "uint8_t"), "INT16": ("int16", "int16_t"),
    "INT32": ("int32", "int32_t"), "INT64": ("int64", "int64_t"), "FLOAT32": ("float32", "float"),
    "BOOL": ("bool", "bool"),
}


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of the graph.

    Attributes:
        index: Its index in the subgraph.
        name: Its name in the flatbuffer.
        shape: Its shape (``()`` for a scalar).
        dtype: TFLite type name (``"INT8"``).
        scale: Quantization scales as stored (float32 values, exactly); ``()`` when not quantized.
        zero_point: Zero points, one per scale.
        quantized_dimension: The channel axis of per-channel scales.
        data: Constant contents (``None`` for activations), shaped and typed.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    data: Optional[np.ndarray] = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_const(self) -> bool:
        """Whether the tensor holds constant data (flash), not an activation (RAM)."""
        return self.data is not None

    @property
    def ctype(self) -> str:
        """Its C element type (``int8_t``)."""
        return DTYPES.get(self.dtype, ("", "uint8_t"))[1]

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return np.dtype(DTYPES[self.dtype][0]).itemsize if self.dtype in DTYPES else 1

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of its data."""
        return self.size * self.itemsize

    @property
    def per_channel(self) -> bool:
        """Whether it has more than one scale."""
        return len(self.scale) > 1


@dataclasses.dataclass(frozen=True)
class Op:
    """One operator.

    Attributes:
        index: Its position in the flatbuffer's execution order.
        name: Builtin op name (``"CONV_2D"``; ``"CUSTOM"`` for custom ops).
        inputs: Tensor indices (``-1``: an omitted optional input).
        outputs: Tensor indices.
        options: Builtin options, schema field names (``strideW``, ``fusedActivationFunction``).
        custom_code: The custom op's code, for ``CUSTOM``.
    """

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]
    custom_code: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Graph:
    """The main subgraph.

    Attributes:
        tensors: Every tensor, by index.
        ops: Operators in the flatbuffer's order (a valid execution order).
        inputs: Model input tensor indices.
        outputs: Model output tensor indices.
        sha256: The flatbuffer's digest.
    """

    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    sha256: str = ""

    def tensor(self, index: int) -> Tensor:
        """Tensor ``index``."""
        return self.tensors[index]

    def const(self, index: int) -> np.ndarray:
        """The data of constant tensor ``index``."""
        data = self.tensors[index].data
        if data is None:
            raise ValueError(f"tensor {index} ({self.tensors[index].name}) is not a constant")
        return data

    def activations(self) -> list[int]:
        """Indices of the tensors that live in RAM: model inputs and op outputs (not constants)."""
        used = set(self.inputs) | {t for op in self.ops for t in (*op.inputs, *op.outputs)}
        return sorted(i for i in used if i >= 0 and not self.tensors[i].is_const)


def read_graph(model: Any) -> Graph:
    """The main subgraph of a ``.tflite`` model, with constant data.

    Args:
        model: A :class:`edgekd.ConvertedModel` or the flatbuffer's bytes.

    Returns:
        The :class:`Graph`.

    Raises:
        TFLiteFileError: The bytes are not a valid TFLite model.
    """
    data = bytes(model)
    parsed = model.parsed if hasattr(model, "parsed") else flatbuffer.read_tflite(data)
    fb = flatbuffer.schema()
    m = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    raw = m.subgraphs[0].tensors
    tensors = []
    for t in parsed.tensors:
        const = _buffer(m, data, int(raw[t.index].buffer))
        q = t.quantization
        arr = None
        if const is not None and t.dtype in DTYPES:
            arr = np.frombuffer(const, dtype=DTYPES[t.dtype][0]).reshape(t.shape).copy()
            arr.setflags(write=False)
        elif const is not None:
            arr = np.frombuffer(const, np.uint8).copy()
        tensors.append(Tensor(t.index, t.name, tuple(t.shape), t.dtype,
                              tuple(q.scale) if q else (), tuple(q.zero_point) if q else (),
                              q.quantized_dimension if q else 0, arr))
    ops = tuple(Op(o.index, o.op_name, tuple(o.inputs), tuple(o.outputs), dict(o.options), o.custom_code)
                for o in parsed.operators)
    return Graph(tuple(tensors), ops, tuple(parsed.inputs), tuple(parsed.outputs), parsed.sha256)


def _buffer(m: Any, data: bytes, i: int) -> Optional[bytes]:
    if i <= 0 or i >= len(m.buffers):
        return None
    b = m.buffers[i]
    if b.data is not None:
        return bytes(np.asarray(b.data, np.uint8))
    if getattr(b, "offset", 0) and b.offset > 1:
        return data[b.offset:b.offset + b.size]
    return None
