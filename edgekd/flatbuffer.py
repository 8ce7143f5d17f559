"""Read and verify TFLite flatbuffers without TensorFlow.

Every ``.tflite`` a user hands edgekd goes through :func:`read_tflite` before
any C++ interpreter (LiteRT, TFLM) sees it: a truncated or corrupted file
must give a clear error, not a segfault. Parsing uses the schema bindings the
``tflite-micro`` package ships (pure Python, memory-safe), then checks the
model's internal references (operator codes, tensor and buffer indices,
buffer sizes against shapes, external buffer offsets against the file size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
from typing import Any, Optional

import numpy as np

from edgekd.errors import TFLiteFileError

_FILE_IDENTIFIER = b"TFL3"


def _schema() -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


def _enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_DTYPES: dict[str, Optional[str]] = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT32": "int32",
    "UINT8": "uint8", "INT64": "int64", "STRING": None, "BOOL": "bool", "INT16": "int16",
    "COMPLEX64": "complex64", "INT8": "int8", "UINT64": "uint64", "UINT32": "uint32",
    "UINT16": "uint16", "INT4": None, "BFLOAT16": None, "RESOURCE": None, "VARIANT": None,
}


@dataclasses.dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of the main subgraph."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # TFLite type name, e.g. "INT8"
    buffer: int
    data_bytes: int  # bytes of constant data (0 for activations)
    quantization: Optional[Quantization]
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data_bytes > 0

    @property
    def numpy_dtype(self) -> Optional[np.dtype]:
        name = _DTYPES.get(self.dtype)
        return np.dtype(name) if name else None

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor at its shape (batch included); 0 when unknown."""
        dt = self.numpy_dtype
        if dt is None or any(d < 0 for d in self.shape):
            return 0
        return int(np.prod(self.shape, dtype=np.int64)) * dt.itemsize


@dataclasses.dataclass(frozen=True)
class Operator:
    """One operator of the main subgraph, in execution order."""

    index: int
    op_name: str  # BuiltinOperator name, e.g. "CONV_2D", or "CUSTOM"
    builtin_code: int
    custom_code: Optional[str]
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TFLiteModel:
    """A verified TFLite model: the facts edgekd needs from the flatbuffer."""

    size_bytes: int
    sha256: str
    version: int
    description: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    num_subgraphs: int
    source: str = "<bytes>"

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    @property
    def op_names(self) -> list[str]:
        """Distinct operator names in order of first use (custom ops as ``CUSTOM:<code>``)."""
        seen: dict[str, None] = {}
        for op in self.operators:
            seen.setdefault(op.op_name if op.custom_code is None else f"CUSTOM:{op.custom_code}", None)
        return list(seen)

    @property
    def weight_bytes(self) -> int:
        return sum(t.data_bytes for t in self.tensors)

    @property
    def is_full_integer(self) -> bool:
        """True when every op but QUANTIZE/DEQUANTIZE (at float I/O) computes on integer tensors."""
        floats = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
        for op in self.operators:
            if op.op_name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            if any(self.tensors[t].dtype in floats for t in op.inputs + op.outputs if t >= 0):
                return False
        return True


def _fail(source: str, what: str) -> TFLiteFileError:
    return TFLiteFileError(
        f"{source} is not a valid TFLite model: {what}. Re-export it (edgekd export) or pass an intact .tflite file."
    )


def read_tflite(model: bytes | bytearray | str | os.PathLike) -> TFLiteModel:
    """Parse and verify a TFLite flatbuffer.

    Args:
        model: The model's bytes, or the path of a ``.tflite`` file.

    Returns:
        A :class:`TFLiteModel` describing the main subgraph.

    Raises:
        TFLiteFileError: The file is missing, not a TFLite flatbuffer,
            truncated, or internally inconsistent.
    """
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if not os.path.isfile(source):
            raise TFLiteFileError(f"Model file not found: {source}. Pass the path of an existing .tflite file.")
        with open(source, "rb") as f:
            data = f.read()
    else:
        source, data = "<bytes>", bytes(model)
    if len(data) < 16:
        raise _fail(source, f"only {len(data)} bytes")
    if data[4:8] != _FILE_IDENTIFIER:
        raise _fail(source, f"file identifier is {data[4:8]!r}, expected b'TFL3'")
    (root,) = struct.unpack_from("<I", data, 0)
    if root + 4 > len(data):
        raise _fail(source, "root table lies past the end of the file (truncated?)")
    schema = _schema()
    try:
        m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception:  # the generated reader raises struct.error, IndexError, ValueError...
        raise _fail(source, "the flatbuffer does not parse (truncated or corrupted)") from None
    try:
        return _build(m, data, source, schema)
    except TFLiteFileError:
        raise
    except Exception as e:
        raise _fail(source, f"inconsistent contents ({type(e).__name__}: {e})") from None


def _build(m: Any, data: bytes, source: str, schema: Any) -> TFLiteModel:
    if m.version != 3:
        raise _fail(source, f"schema version {m.version}, expected 3")
    if not m.subgraphs:
        raise _fail(source, "no subgraph")
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    buffers = m.buffers or []
    opcodes = m.operatorCodes or []
    g = m.subgraphs[0]
    tensors_t = g.tensors or []
    n_t = len(tensors_t)

    def buf_bytes(i: int) -> int:
        if i < 0 or i >= len(buffers):
            raise _fail(source, f"tensor refers to buffer {i} of {len(buffers)}")
        b = buffers[i]
        if b.data is not None and len(b.data) > 0:
            return int(len(b.data))
        if getattr(b, "offset", 0) and b.offset > 1:
            if b.offset + b.size > len(data):
                raise _fail(source, f"buffer {i} lies past the end of the file (truncated?)")
            return int(b.size)
        return 0

    tensors = []
    for i, t in enumerate(tensors_t):
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if any(d < -1 for d in shape):
            raise _fail(source, f"tensor {i} has shape {shape}")
        tname = type_names.get(t.type)
        if tname is None:
            raise _fail(source, f"tensor {i} has unknown type {t.type}")
        nbytes = buf_bytes(t.buffer)
        q = t.quantization
        quant = None
        if q is not None and q.scale is not None and len(q.scale) > 0:
            zp = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
            quant = Quantization(
                tuple(float(s) for s in q.scale), tuple(int(z) for z in zp), int(q.quantizedDimension)
            )
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
        tensor = Tensor(i, name, shape, tname, int(t.buffer), nbytes, quant, bool(t.isVariable))
        dt = tensor.numpy_dtype
        if nbytes and dt is not None and all(d >= 0 for d in shape):
            want = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            if want != nbytes:
                raise _fail(source, f"tensor {i} ({name}) holds {nbytes} bytes, its shape needs {want}")
        tensors.append(tensor)

    def check_idx(idx: Any, what: str) -> tuple[int, ...]:
        out = tuple(int(x) for x in (idx if idx is not None else []))
        for x in out:
            if x < -1 or x >= n_t:
                raise _fail(source, f"{what} refers to tensor {x} of {n_t}")
        return out

    operators = []
    for k, op in enumerate(g.operators or []):
        if op.opcodeIndex >= len(opcodes):
            raise _fail(source, f"operator {k} uses opcode {op.opcodeIndex} of {len(opcodes)}")
        oc = opcodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = op_names.get(code, f"BUILTIN_{code}")
        custom = None
        if name == "CUSTOM":
            cc = oc.customCode
            custom = cc.decode("utf-8", "replace") if isinstance(cc, bytes) else str(cc)
        opts = {}
        if op.builtinOptions is not None:
            opts = {k2: v for k2, v in vars(op.builtinOptions).items() if isinstance(v, (int, float, bool))}
        operators.append(
            Operator(k, name, code, custom, check_idx(op.inputs, f"operator {k}"),
                     check_idx(op.outputs, f"operator {k}"), opts)
        )
    desc = m.description.decode("utf-8", "replace") if isinstance(m.description, bytes) else (m.description or "")
    return TFLiteModel(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        version=int(m.version),
        description=desc,
        tensors=tuple(tensors),
        operators=tuple(operators),
        inputs=check_idx(g.inputs, "subgraph inputs"),
        outputs=check_idx(g.outputs, "subgraph outputs"),
        num_subgraphs=len(m.subgraphs),
        source=source,
    )
