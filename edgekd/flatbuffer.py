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
import math
import os
import struct
from typing import Any, Optional

import numpy as np

from edgekd.errors import TFLiteFileError
from edgekd import _litert_ops as litert_ops
from edgekd._fbverify import VerifyError, verify

FILE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


def schema() -> Any:
    """The generated TFLite schema classes (``ModelT``, ``BuiltinOperator``, …) that tflite_micro ships."""
    from tflite_micro.python.tflite_micro import runtime  # TFLM's native interpreter: loaded on first use

    return runtime.schema_fb


def enum_names(enum_cls: Any) -> dict[int, str]:
    """Value → name of one of :func:`schema`'s enums (``BuiltinOperator``, ``TensorType``)."""
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_DTYPES: dict[str, Optional[str]] = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT32": "int32",
    "UINT8": "uint8", "INT64": "int64", "STRING": None, "BOOL": "bool", "INT16": "int16",
    "COMPLEX64": "complex64", "INT8": "int8", "UINT64": "uint64", "UINT32": "uint32",
    "UINT16": "uint16", "INT4": None, "BFLOAT16": None, "RESOURCE": None, "VARIANT": None,
}


# Zero points a quantized tensor of this type can hold (its integer range).
_ZERO_POINT_RANGE: dict[str, tuple[int, int]] = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767),
                                                 "UINT16": (0, 65535), "INT4": (-8, 7)}

# Bytes per element as LiteRT counts them for constant data (types it does not size are not checked).
_ITEMSIZE: dict[str, int] = {"FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1,
                             "INT16": 2, "COMPLEX64": 8, "INT8": 1, "UINT64": 8, "UINT32": 4, "UINT16": 2,
                             "COMPLEX128": 16, "BFLOAT16": 2}


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


def prefix_model(model: bytes, k: int) -> bytes:
    """The model cut after its first ``k`` operators (its outputs: op ``k-1``'s outputs).

    Used to narrow an interpreter crash down to one op. The model must already
    be verified with :func:`read_tflite`.
    """
    import flatbuffers  # flatbuffers: only when a model is rewritten

    m = schema().ModelT.InitFromPackedBuf(bytearray(model), 0)
    g = m.subgraphs[0]
    g.operators = g.operators[:k]
    g.outputs = [int(i) for i in g.operators[-1].outputs if i >= 0]
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _fail(source: str, what: str) -> TFLiteFileError:
    return TFLiteFileError(
        f"{source} is not a valid TFLite model: {what}. Re-export it (edgekd export) or pass an intact .tflite file."
    )


def read_tflite(model: bytes | bytearray | str | os.PathLike, *, source: Optional[str] = None) -> TFLiteModel:
    """Parse and verify a TFLite flatbuffer.

    Args:
        model: The model's bytes, or the path of a ``.tflite`` file.
        source: For bytes: where they were read from, for messages
            (``"<bytes>"`` when None).

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
        source, data = source or "<bytes>", bytes(model)
    if len(data) < 16:
        raise _fail(source, f"only {len(data)} bytes")
    if data[4:8] != FILE_IDENTIFIER:
        raise _fail(source, f"file identifier is {data[4:8]!r}, expected b'TFL3'")
    (root,) = struct.unpack_from("<I", data, 0)
    if root + 4 > len(data):
        raise _fail(source, "root table lies past the end of the file (truncated?)")
    fb = schema()

    try:  # as strict as the FlatBuffers verifier LiteRT runs: nothing is read outside the buffer or truncated
        verify(data, fb)
    except VerifyError as e:
        raise _fail(source, f"the flatbuffer is truncated or corrupted ({e})") from None
    try:
        m = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception:  # the generated reader raises struct.error, IndexError, ValueError...
        raise _fail(source, "the flatbuffer does not parse (truncated or corrupted)") from None
    try:
        return _build(m, data, source, fb)
    except TFLiteFileError:
        raise
    except Exception as e:
        raise _fail(source, f"inconsistent contents ({type(e).__name__}: {e})") from None


# Builtin options that hold a TensorType (LiteRT refuses an unknown one when it loads the model).
_TYPE_OPTIONS = ("outType", "outputType", "idxOutType", "inDataType", "outDataType", "quantizedBiasType", "keyDtype",
                 "valueDtype")
# Builtin options LiteRT checks against a range when it loads the model ("Unhandled fully-connected weights format").
_RANGE_OPTIONS = {"weightsFormat": (0, 1)}


def _called_subgraphs(op: Any) -> list[int]:
    """Subgraph indices a control-flow op (WHILE, IF, CALL_ONCE, StableHLO regions) names in its options."""
    found = []
    for opts in (op.builtinOptions, getattr(op, "builtinOptions2", None)):
        for key, value in (vars(opts).items() if opts is not None else ()):
            if key.endswith("SubgraphIndex") and isinstance(value, int):
                found.append(int(value))
            elif key.endswith("SubgraphIndices") and value is not None:
                found.extend(int(v) for v in value)
    return found


def _build(m: Any, data: bytes, source: str, schema: Any) -> TFLiteModel:
    """Check what LiteRT's InterpreterBuilder checks (every subgraph), then describe the main one."""
    if m.version != 3:
        raise _fail(source, f"schema version {m.version}, expected 3")
    if not m.subgraphs:
        raise _fail(source, "no subgraph")
    if m.buffers is None:
        raise _fail(source, "no buffers vector")

    op_names = enum_names(schema.BuiltinOperator)
    type_names = enum_names(schema.TensorType)
    buffers = m.buffers
    opcodes = m.operatorCodes or []
    n_sub = len(m.subgraphs)

    def buf_bytes(i: int, t: int) -> Optional[int]:
        """Bytes of constant data of buffer ``i`` (None: no data, an activation)."""
        if i < 0 or i >= len(buffers):
            raise _fail(source, f"tensor {t} refers to buffer {i} of {len(buffers)}")
        if i == 0:  # buffer 0 is the empty sentinel: LiteRT reads no data from it
            return None
        b = buffers[i]
        if b.data is not None:  # present, even empty: LiteRT takes the tensor as constant data of that size
            return int(len(b.data))
        if getattr(b, "offset", 0) and b.offset > 1:
            if b.offset + b.size > len(data):
                raise _fail(source, f"buffer {i} lies past the end of the file (truncated?)")
            return int(b.size)
        return None

    codes = _opcodes(opcodes, op_names, source)

    calls: dict[int, set[int]] = {}
    main: Optional[tuple] = None
    for gi, g in enumerate(m.subgraphs):
        where = f"subgraph {gi}: " if n_sub > 1 else ""
        if g.tensors is None:
            raise _fail(source, f"{where}no tensors vector")
        n_t = len(g.tensors)
        tensors = []
        for i, t in enumerate(g.tensors):
            tensors.append(_tensor(t, i, where, type_names, buf_bytes, source))

        def check_idx(idx: Any, what: str) -> tuple[int, ...]:
            out = tuple(int(x) for x in (idx if idx is not None else []))
            for x in out:
                if x < -1 or x >= n_t:
                    raise _fail(source, f"{where}{what} refers to tensor {x} of {n_t}")
            return out

        operators = []
        for k, op in enumerate(g.operators or []):
            if not 0 <= op.opcodeIndex < len(opcodes):
                raise _fail(source, f"{where}operator {k} uses opcode {op.opcodeIndex} of {len(opcodes)}")
            operators.append(_operator(op, k, codes[op.opcodeIndex], where, n_sub, type_names, check_idx, calls,
                                       source, gi))
        inputs = check_idx(g.inputs, "subgraph inputs")
        outputs = check_idx(g.outputs, "subgraph outputs")
        if gi == 0:
            main = (tuple(tensors), tuple(operators), inputs, outputs)
    _check_no_call_cycle(calls, source)
    for k, sig in enumerate(m.signatureDefs or []):  # LiteRT's ParseSignatureDefs
        if sig.signatureKey is None or sig.inputs is None or sig.outputs is None:
            raise _fail(source, f"signature {k} lacks its key, inputs or outputs")
    if main is None:  # pragma: no cover - there is at least one subgraph
        raise _fail(source, "no subgraph")
    desc = m.description.decode("utf-8", "replace") if isinstance(m.description, bytes) else (m.description or "")
    tensors, operators, inputs, outputs = main
    return TFLiteModel(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        version=int(m.version),
        description=desc,
        tensors=tensors,
        operators=operators,
        inputs=inputs,
        outputs=outputs,
        num_subgraphs=n_sub,
        source=source,
    )


def _opcodes(opcodes: Any, op_names: dict, source: str) -> list[tuple[int, str, Optional[str]]]:
    """(code, name, custom code) of each operator code; refuses what LiteRT's op resolver refuses."""
    codes = []
    for k, oc in enumerate(opcodes):
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = op_names.get(code)
        if name is None:
            raise _fail(source, f"operator code {k} has unknown builtin operator {code}")
        custom = None
        if name == "CUSTOM":
            cc = oc.customCode
            if cc is None:
                raise _fail(source, f"operator code {k} is CUSTOM without a custom code")
            custom = cc.decode("utf-8", "replace") if isinstance(cc, bytes) else str(cc)
        if name != "CUSTOM" and not litert_ops.supported(name, int(oc.version)):
            known = litert_ops.VERSIONS.get(name)
            raise _fail(source, f"operator code {k} is {name} version {oc.version}, which LiteRT does not implement ("
                        + (f"it has versions {known[0]}–{known[1]}" if known else "it has no such builtin op") + ")")
        codes.append((code, name, custom))
    return codes


def _operator(op: Any, k: int, code_name_custom: tuple, where: str, n_sub: int, type_names: dict, check_idx: Any,
              calls: dict[int, set[int]], source: str, gi: int) -> Operator:
    """Operator ``k`` of subgraph ``gi``, checked as LiteRT checks it (options, tensor indices, called subgraphs)."""
    code, name, custom = code_name_custom
    opts = {}
    if op.builtinOptions is not None:
        opts = {k2: v for k2, v in vars(op.builtinOptions).items() if isinstance(v, (int, float, bool))}
    need = litert_ops.NEEDS_OPTIONS.get(name)
    if need and not any(type(o).__name__ == need + "T"
                        for o in (op.builtinOptions, getattr(op, "builtinOptions2", None))):
        raise _fail(source, f"{where}operator {k} ({name}) has no {need}")
    for key, (lo, hi) in _RANGE_OPTIONS.items():
        if key in opts and not lo <= int(opts[key]) <= hi:
            raise _fail(source, f"{where}operator {k} ({name}) has option {key} = {opts[key]} (valid: "
                        f"{lo}–{hi})")
    for key in _TYPE_OPTIONS:
        if key in opts and int(opts[key]) not in type_names:
            raise _fail(source, f"{where}operator {k} ({name}) has option {key} = {opts[key]}, not a "
                        "tensor type")
    for sub in _called_subgraphs(op):
        if not 0 <= sub < n_sub:
            raise _fail(source, f"{where}operator {k} ({name}) calls subgraph {sub} of {n_sub}")
        calls.setdefault(gi, set()).add(sub)
    ins = check_idx(op.inputs, f"operator {k} ({name})")
    outs = check_idx(op.outputs, f"operator {k} ({name})")
    overlap = set(ins) & set(outs) - {-1}
    if overlap:
        raise _fail(source, f"{where}operator {k} ({name}) has tensor {min(overlap)} as input and output")
    return Operator(k, name, code, custom, ins, outs, opts)


def _tensor(t: Any, i: int, where: str, type_names: dict, buf_bytes: Any, source: str) -> Tensor:
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    if any(d < 0 for d in shape):  # -1 belongs in shape_signature; LiteRT refuses it in shape
        raise _fail(source, f"{where}tensor {i} has shape {shape}")
    tname = type_names.get(t.type)
    if tname is None:
        raise _fail(source, f"{where}tensor {i} has unknown type {t.type}")
    count = 1
    for d in shape + (_ITEMSIZE.get(tname, 1),):  # LiteRT: "BytesRequired number of elements overflowed"
        count *= d
        if count >= 1 << 64:
            raise _fail(source, f"{where}tensor {i} has shape {shape}: more bytes than a 64-bit size can hold")
    data_bytes = buf_bytes(int(t.buffer), i)
    nbytes = data_bytes or 0
    if data_bytes is not None and t.isVariable:
        raise _fail(source, f"{where}tensor {i} is a variable tensor with constant data")
    quant = _quantization(t.quantization, shape, f"{where}tensor {i}", source, tname)
    if t.sparsity is not None:
        sp = t.sparsity
        if sp.traversalOrder is None or sp.dimMetadata is None:
            raise _fail(source, f"{where}tensor {i} has invalid sparsity parameters")
        for dm in sp.dimMetadata:
            if dm.format not in (0, 1):
                raise _fail(source, f"{where}tensor {i} has a sparse dimension of unknown type {dm.format}")
    name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
    tensor = Tensor(i, name, shape, tname, int(t.buffer), nbytes, quant, bool(t.isVariable))
    itemsize = _ITEMSIZE.get(tname)
    if data_bytes is not None and itemsize is not None and t.sparsity is None:
        want = math.prod(shape) * itemsize
        if want != nbytes:
            raise _fail(source, f"{where}tensor {i} ({name}) holds {nbytes} bytes, its shape needs {want}")
    return tensor


def _quantization(q: Any, shape: tuple[int, ...], what: str, source: str, dtype: str) -> Optional[Quantization]:
    """LiteRT's ParseQuantization checks: zero points for every scale, a valid quantized dimension."""
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    if q.zeroPoint is None:
        raise _fail(source, f"{what} has scales but no zero points")
    if len(q.zeroPoint) != len(q.scale):
        raise _fail(source, f"{what} has {len(q.zeroPoint)} zero points for {len(q.scale)} scales")
    if not all(math.isfinite(float(v)) for v in q.scale):  # C has no literal for them; no kernel can use them
        raise _fail(source, f"{what} has a non-finite scale ({[float(v) for v in q.scale][:4]})")
    lo, hi = _ZERO_POINT_RANGE.get(dtype, (-(1 << 31), (1 << 31) - 1))  # LiteRT keeps zero points as int32
    bad = [int(z) for z in q.zeroPoint if not lo <= int(z) <= hi]
    if bad:
        raise _fail(source, f"{what} ({dtype}) has zero point {bad[0]}, outside {lo}..{hi}")
    qd = int(q.quantizedDimension)
    if qd < 0 or (shape and qd >= len(shape)):
        raise _fail(source, f"{what} is quantized along dimension {qd} of a {len(shape)}-D shape")
    if len(q.scale) != 1 and shape and len(q.scale) != shape[qd]:
        raise _fail(source, f"{what} has {len(q.scale)} scales for {shape[qd]} channels")
    return Quantization(tuple(float(s) for s in q.scale), tuple(int(z) for z in q.zeroPoint), qd)


def _check_no_call_cycle(calls: dict[int, set[int]], source: str) -> None:
    """Control-flow ops (WHILE, IF, …) must not call back into a subgraph that is running: no recursion."""
    state: dict[int, int] = {}

    def visit(g: int, path: tuple[int, ...]) -> None:
        if state.get(g) == 2:
            return
        if state.get(g) == 1:
            raise _fail(source, f"subgraph {g} calls itself (through {' -> '.join(map(str, path + (g,)))})")
        state[g] = 1
        for nxt in sorted(calls.get(g, ())):
            visit(nxt, path + (g,))
        state[g] = 2

    for g in sorted(calls):
        visit(g, ())
