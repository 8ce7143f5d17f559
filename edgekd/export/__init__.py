"""Export a TFLite model as C arrays (``model_data.h``/``.cc``) and a TFLM op resolver.

Naming follows TFLM's ``generate_cc_arrays.py``: ``g_<name>_data`` and
``g_<name>_data_len``, ``alignas(16) const unsigned char`` so the model lives
in flash and TFLM can read it in place. The header carries the facts the
firmware needs as constants (input/output scale and zero point, shapes,
number of classes) so no sketch needs a magic number. Output is
deterministic: the same model gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import os
import re
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from edgekd._io import atomic_write_bytes, staged_dir
from edgekd.engine import ENGINES, CompiledEngine, compile_model
from edgekd.errors import invalid_value
from edgekd.export.ops import resolver_calls, unsupported_ops
from edgekd.flatbuffer import TFLiteModel
from edgekd.model import ConvertedModel

__all__ = ["CArrays", "ExportResult", "c_arrays", "c_comment_text", "c_float_literal", "c_string_literal",
           "detect_mode", "export_file_names", "export_files", "op_resolver_header", "write_export",
           "validate_c_name", "BYTES_PER_LINE", "TFLM_NAMESPACE", "TFLM_NAMESPACE_OPEN", "TFLM_NAMESPACE_CLOSE"]

BYTES_PER_LINE = 12  # as `xxd -i`
_C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
    "alignas", "alignof", "bool", "class", "constexpr", "delete", "namespace", "new", "private", "public",
    "template", "this", "throw", "true", "false", "try", "typename", "using", "virtual",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Where generated C++ names TFLM's API from. TFLM as Chirale_TensorFlowLite 2.0.0 and
# esp-tflite-micro 1.3.x ship it has its classes (MicroInterpreter, MicroMutableOpResolver,
# InitializeTarget) in namespace tflite and the TfLite* C types (TfLiteTensor, TfLiteStatus,
# kTfLiteOk) global; tflite-micro main has both in tflite::micro (the pinned tflite-micro
# wheel's symbols read tflite::micro::MicroInterpreter, tflite::micro::TfLiteTensor) and may
# keep LiteRT's global C types beside them. Code in a namespace nested in tflite::micro finds
# each unqualified name in tflite::micro first, then tflite, then the global namespace, the
# inner declaration hiding the outer, so it compiles with either layout. The schema's
# tflite::Model and tflite::GetModel are named qualified, and edgekd's own globals with ::.
TFLM_NAMESPACE = "tflite::micro::edgekd"
TFLM_NAMESPACE_OPEN = """\
// TFLM's API is in namespace tflite and the global namespace (the TFLM of
// Chirale_TensorFlowLite 2.0.0 and esp-tflite-micro 1.3.x) or in tflite::micro
// (tflite-micro main). Inside tflite::micro::edgekd an unqualified name is looked
// up in tflite::micro, then tflite, then the global namespace: either layout works.
namespace tflite {
namespace micro {
namespace edgekd {
"""
TFLM_NAMESPACE_CLOSE = """\
}  // namespace edgekd
}  // namespace micro
}  // namespace tflite
"""


def validate_c_name(name: str) -> str:
    """Check that ``name`` makes valid C identifiers (``g_<name>_data``); return it.

    Raises:
        InvalidArgumentError: Not a C identifier, or a C/C++ keyword.
    """
    if not isinstance(name, str) or not _IDENT.match(name) or name in _C_KEYWORDS or keyword.iskeyword(name) \
            or name.startswith("__"):
        raise invalid_value("name", "a C identifier: a letter or _, then letters, digits or _ (e.g. model)", name)
    return name


# 256 entries of b"0x??, " -- the C array body is built with one numpy gather.
_HEX_LUT = np.frombuffer(b"".join(b"0x%02x, " % i for i in range(256)), dtype=np.uint8).reshape(256, 6)


def _hex_body(data: bytes) -> bytes:
    """``xxd -i``-style lines: two spaces, 12 ``0x??,`` per line, newline-terminated."""
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size
    if n == 0:
        return b""
    full = n - n % BYTES_PER_LINE
    parts = []
    if full:
        cells = _HEX_LUT[arr[:full]].reshape(-1, BYTES_PER_LINE * 6)
        lines = np.empty((cells.shape[0], 2 + BYTES_PER_LINE * 6), dtype=np.uint8)
        lines[:, :2] = ord(" ")
        lines[:, 2:] = cells
        lines[:, -1] = ord("\n")  # replaces the last cell's trailing space
        parts.append(lines.tobytes())
    if n > full:
        tail = _HEX_LUT[arr[full:]].reshape(-1).tobytes()
        parts.append(b"  " + tail[:-1] + b"\n")
    return b"".join(parts)


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p)


def detect_mode(model: TFLiteModel) -> str:
    """Name the quantization scheme of a TFLite model (int8, int8-float-io, float16, dynamic, float32)."""
    io = [t.dtype for t in model.input_tensors + model.output_tensors]
    weights = {t.dtype for t in model.tensors if t.is_constant}
    if model.is_full_integer:
        return "int8" if all(d in ("INT8", "INT16") for d in io) else "int8-float-io"
    if "FLOAT16" in weights:
        return "float16"
    if weights & {"INT8"}:
        return "dynamic"
    return "float32"


def c_float_literal(v: float) -> str:
    """A C float literal that parses back to exactly the float32 ``v`` (e.g. ``0.00390625f``)."""
    text = repr(float(np.float32(v)))
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


# Printable ASCII that means the same inside a C/C++ string literal and a comment: everything from space
# to '~' except '"' and '\\' (string syntax), '?' (trigraphs: "??/" is a backslash to C and C++14 and
# earlier), '*' ("*/" ends a block comment) and '`'.
_PLAIN = frozenset(range(0x20, 0x7F)) - set(b'"\\?*`')


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; lone surrogates from undecodable file names (surrogateescape) as their bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def c_string_literal(text: str, *, argument: str = "text") -> str:
    """A C/C++ string literal (quotes included) whose bytes are exactly ``text`` in UTF-8.

    Any text is safe: quotes, backslashes, newlines and other control
    characters, ``??/`` trigraphs and characters outside the Basic Multilingual
    Plane (emoji) all become three-digit octal escapes of their UTF-8 bytes
    (octal, not ``\\x``, which would swallow a following hex digit), so the
    literal is plain ASCII that every C and C++ compiler reads the same way.

    Raises:
        InvalidArgumentError: ``text`` holds NUL, where a C string would end,
            or a lone surrogate (not text), named as ``argument``.
    """
    if "\0" in text:
        raise invalid_value(argument, "text without NUL characters (a C string ends at NUL)", text)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_value(argument, "valid Unicode text (no lone surrogates)", text) from None
    return '"' + "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in data) + '"'


def c_comment_text(text: str) -> str:
    """``text`` made safe for any C/C++ comment and any line of a generated file: one line of plain ASCII.

    Characters outside :data:`_PLAIN` (newlines and other control
    characters, backslashes, ``*``, ``?``, ``"``, non-ASCII) become ``%XX``
    of their UTF-8 bytes, so no file or tensor name can end a comment, splice
    the next line into it, or inject a line of its own.
    """
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in _utf8(str(text)))


_CTYPE = {"INT8": "int8_t", "UINT8": "uint8_t", "INT16": "int16_t", "INT32": "int32_t", "FLOAT32": "float"}


def _source(model: ConvertedModel) -> Optional[str]:
    """Where the model came from, when nobody says: the file it was read from, or the Keras model converted."""
    return model.provenance.get("file") or model.provenance.get("keras_model")


class CArrays(NamedTuple):
    """The generated ``model_data.h`` and ``model_data.cc`` texts."""

    header: str
    source: str


def _qparams(t: Any) -> tuple[float, int]:
    if t.quantization and len(t.quantization.scale) == 1:
        return t.quantization.scale[0], t.quantization.zero_point[0]
    return 1.0, 0


def _dims(t: Any) -> str:
    return ", ".join(str(d) for d in t.shape)


def _size(t: Any) -> int:
    return int(np.prod(t.shape)) if t.shape else 1


def _constants(name: str, pre: str, inp: Any, out: Any, num_classes: int) -> list[str]:
    """The constants of ``model_data.h``: quantization, shapes, sizes, number of classes, I/O types."""
    in_s, in_z = _qparams(inp)
    out_s, out_z = _qparams(out)
    return [
        f"static const float {pre}InputScale = {c_float_literal(in_s)};",
        f"static const int {pre}InputZeroPoint = {in_z};",
        f"static const float {pre}OutputScale = {c_float_literal(out_s)};",
        f"static const int {pre}OutputZeroPoint = {out_z};",
        f"static const int {pre}InputRank = {len(inp.shape)};",
        f"static const int {pre}InputDims[{max(len(inp.shape), 1)}] = {{{_dims(inp) or '1'}}};",
        f"static const int {pre}InputSize = {_size(inp)};  // elements",
        f"static const int {pre}OutputRank = {len(out.shape)};",
        f"static const int {pre}OutputDims[{max(len(out.shape), 1)}] = {{{_dims(out) or '1'}}};",
        f"static const int {pre}OutputSize = {_size(out)};  // elements",
        f"static const int {pre}NumClasses = {num_classes};",
        f"#define {name.upper()}_INPUT_IS_QUANTIZED {1 if inp.dtype in ('INT8', 'UINT8', 'INT16') else 0}",
        f"#define {name.upper()}_OUTPUT_IS_QUANTIZED {1 if out.dtype in ('INT8', 'UINT8', 'INT16') else 0}",
        f"typedef {_CTYPE.get(inp.dtype, 'int8_t')} {name}_input_t;",
        f"typedef {_CTYPE.get(out.dtype, 'int8_t')} {name}_output_t;",
    ]


def c_arrays(
    model: ConvertedModel | bytes | str | os.PathLike,
    *,
    name: str = "model",
    labels: Optional[Sequence[str]] = None,
    source_model: Optional[str] = None,
    mode: Optional[str] = None,
    header_name: str = "model_data.h",
    flatbuffer: bool = True,
) -> CArrays:
    """Render a TFLite model as a C header and source.

    Args:
        model: A :class:`~edgekd.model.ConvertedModel`, or the ``.tflite``
            flatbuffer as bytes or a path (verified first).
        name: Symbol stem: ``g_<name>_data`` / ``g_<name>_data_len``. Constants
            are ``kInputScale`` … for the default ``"model"`` and
            ``k<Name>InputScale`` … otherwise, so two models can share a program.
        labels: Optional class labels, emitted as ``kClassLabels`` (one per
            output class); the model's own when None.
        source_model: Where the model came from, for the header comment
            (when None: the file the model was read from, or the Keras model
            it was converted from).
        mode: Quantization mode for the comment (detected when None).
        header_name: The header's file name, included by the source.
        flatbuffer: Emit the flatbuffer array (``g_<name>_data``). False for the
            compiled engine (its ``<name>_engine.cc`` holds the model as code):
            the header has the constants only, and the source only the class
            labels (empty without labels).

    Returns:
        :class:`CArrays` (header, source).
    """
    validate_c_name(name)
    if not isinstance(header_name, str) or not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$", header_name):
        raise invalid_value("header_name", "a file name of letters, digits, '_', '.', '+' or '-' (e.g. "
                            "model_data.h)", header_name)
    model = ConvertedModel.coerce(model)
    fb = model.parsed
    labels = model.labels if labels is None else labels
    source_model = source_model or _source(model)
    mode = mode or detect_mode(fb)
    if len(fb.inputs) != 1 or len(fb.outputs) != 1:
        raise invalid_value("model", "a single-input, single-output model", f"{len(fb.inputs)} inputs, "
                            f"{len(fb.outputs)} outputs")
    inp, out = fb.input_tensors[0], fb.output_tensors[0]
    num_classes = int(np.prod(out.shape[1:])) if len(out.shape) > 1 else (int(out.shape[0]) if out.shape else 1)
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != num_classes:
            raise invalid_value("labels", f"{num_classes} labels, one per output class", f"{len(labels)} labels")
    pre = "k" if name == "model" else f"k{_camel(name)}"
    guard = f"EDGEKD_{name.upper()}_DATA_H_"
    data_sym, len_sym = f"g_{name}_data", f"g_{name}_data_len"
    in_s, in_z = _qparams(inp)
    out_s, out_z = _qparams(out)
    banner = (
        f"// Generated by edgekd. Do not edit.\n"
        f"// Source model : {c_comment_text(os.path.basename(source_model)) if source_model else '<in memory>'}\n"
        f"// TFLite sha256: {fb.sha256}\n"
        f"// Size         : {fb.size_bytes} bytes\n"
        f"// Mode         : {c_comment_text(mode)}\n"
        f"// Input        : {inp.dtype.lower()} [{_dims(inp)}]"
        + (f" scale={in_s!r} zero_point={in_z}" if inp.quantization else "") + "\n"
        f"// Output       : {out.dtype.lower()} [{_dims(out)}]"
        + (f" scale={out_s!r} zero_point={out_z}" if out.quantization else "") + "\n"
        f"// Ops          : {c_comment_text(', '.join(fb.op_names))}\n"
    )
    consts = _constants(name, pre, inp, out, num_classes)
    label_decl = f"extern const char* const {pre}ClassLabels[{num_classes}];\n" if labels else ""
    if flatbuffer:
        what = (f"// The model flatbuffer, 16-byte aligned, in read-only memory (flash).\n"
                f"extern const unsigned char {data_sym}[];\nextern const unsigned int {len_sym};\n")
    else:
        what = f"// The model's constants; the model itself is code ({name}_engine.h, edgekd's compiled engine).\n"
    header = (
        f"{banner}\n#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n"
        f"#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n{what}{label_decl}\n"
        + "\n".join(consts)
        + f"\n\n#ifdef __cplusplus\n}}  // extern \"C\"\n#endif\n\n#endif  // {guard}\n"
    )
    label_def = ""
    if labels:
        items = ", ".join(c_string_literal(lb, argument="labels") for lb in labels)
        label_def = f"\nconst char* const {pre}ClassLabels[{num_classes}] = {{{items}}};\n"
    if not flatbuffer:
        return CArrays(header, f"{banner}\n#include \"{header_name}\"\n{label_def}" if labels else "")
    body = _hex_body(model.data).decode("ascii")
    source = (
        f"{banner}\n#include \"{header_name}\"\n\n"
        f"#ifdef __has_attribute\n#if __has_attribute(section) && defined(EDGEKD_MODEL_SECTION)\n"
        f"#define EDGEKD_SECTION __attribute__((section(EDGEKD_MODEL_SECTION)))\n#endif\n#endif\n"
        f"#ifndef EDGEKD_SECTION\n#define EDGEKD_SECTION\n#endif\n\n"
        f"alignas(16) EDGEKD_SECTION const unsigned char {data_sym}[] = {{\n{body}}};\n"
        f"const unsigned int {len_sym} = {fb.size_bytes};\n{label_def}"
    )
    return CArrays(header, source)


def op_resolver_header(model: ConvertedModel | TFLiteModel | bytes | str | os.PathLike, *, name: str = "model",
                       runtime: Any = None) -> str:
    """A header that registers exactly the model's ops with a ``MicroMutableOpResolver``.

    Defines ``k<Name>NumOps``, the type ``<Name>OpResolver`` (=
    ``MicroMutableOpResolver<N>`` of TFLM's ``tflite`` or ``tflite::micro``
    namespace, whichever the TFLM it is compiled with has) and
    ``Register<Name>Ops(resolver)``. The one generator of op registrations:
    the firmware projects include this header.

    Args:
        model: The model (a :class:`~edgekd.model.ConvertedModel`, its
            parsed flatbuffer, or the ``.tflite`` as bytes or a path).
        name: Symbol stem (see :func:`c_arrays`).
        runtime: The TFLM distribution the header is for
            (:func:`edgekd.boards.runtime.get`): its ops are checked against it.

    Raises:
        UnsupportedOpError: An op has no TFLM kernel (in ``runtime``, when given).
    """
    validate_c_name(name)
    fb = model if isinstance(model, TFLiteModel) else ConvertedModel.coerce(model).parsed
    calls = resolver_calls(fb, runtime=runtime)
    cam = _camel(name)
    guard = f"EDGEKD_{name.upper()}_OPS_H_"
    lines = "\n".join(f"  if (resolver.{c}() != kTfLiteOk) return kTfLiteError;" for c in calls)
    ns = TFLM_NAMESPACE
    return (
        f"// Generated by edgekd. Do not edit.\n// Op resolver for {c_comment_text(', '.join(fb.op_names))} "
        f"(TFLite sha256 {fb.sha256[:16]}…).\n\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"#include \"tensorflow/lite/micro/micro_mutable_op_resolver.h\"\n\n"
        f"constexpr int k{cam}NumOps = {len(calls)};\n\n"
        f"{TFLM_NAMESPACE_OPEN}\n"
        f"using {cam}OpResolver = MicroMutableOpResolver< ::k{cam}NumOps>;\n\n"
        f"// Registers the {len(calls)} ops the model uses; kTfLiteError if one fails.\n"
        f"inline TfLiteStatus Register{cam}Ops({cam}OpResolver& resolver) {{\n{lines}\n  return kTfLiteOk;\n}}\n\n"
        f"{TFLM_NAMESPACE_CLOSE}\n"
        f"using {ns}::{cam}OpResolver;\nusing {ns}::Register{cam}Ops;\n\n"
        f"#endif  // {guard}\n"
    )


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Paths written by :func:`write_export` and the summary stored in ``export.json``."""

    outdir: str
    files: tuple[str, ...]
    summary: dict[str, Any]
    model: Optional[ConvertedModel] = None  # the model exported (with its parsed flatbuffer)


def summarize(model: ConvertedModel | bytes | str | os.PathLike, *, name: str = "model", mode: Optional[str] = None,
              source_model: Optional[str] = None, report: Any = None,
              labels: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The machine-readable facts of an export (what ``export.json`` holds)."""
    model = ConvertedModel.coerce(model)
    fb = model.parsed
    labels = model.labels if labels is None else labels
    source_model = source_model or _source(model)
    unsupported = unsupported_ops(fb)

    def tinfo(t: Any) -> dict[str, Any]:
        q = t.quantization
        return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype.lower(),
                "scale": q.scale[0] if q and len(q.scale) == 1 else None,
                "zero_point": q.zero_point[0] if q and len(q.zero_point) == 1 else None}

    return {
        "edgekd_version": __import__("edgekd").__version__,
        "source_model": os.path.basename(source_model) if source_model else None,
        "mode": mode or detect_mode(fb),
        "tflite_bytes": fb.size_bytes,
        "sha256": fb.sha256,
        "symbols": {"data": f"g_{name}_data", "length": f"g_{name}_data_len"},
        "inputs": [tinfo(t) for t in fb.input_tensors],
        "outputs": [tinfo(t) for t in fb.output_tensors],
        "ops": fb.op_names,
        "resolver": resolver_calls(fb) if not unsupported else None,
        "tflm_unsupported_ops": unsupported,
        "labels": list(labels) if labels else None,
        "input_shape": list(model.input_shape) if model.input_shape else None,
        "source_shape": list(model.source_shape) if model.source_shape else None,
        "validation": report.to_dict() if report is not None else None,
        **_dense_choice(model),
    }


def _dense_choice(model: ConvertedModel) -> dict[str, Any]:
    """How the model's Dense weights were quantized and why, when its provenance says (:mod:`edgekd.convert.dense`)."""
    choice = model.provenance.get("dense_quantization_choice")
    if not choice:
        return {}
    return {"dense_weights": choice.get("reason"), "dense_quantization": dict(choice)}


def export_files(
    model: ConvertedModel | bytes | str | os.PathLike,
    *,
    name: str = "model",
    labels: Optional[Sequence[str]] = None,
    source_model: Optional[str] = None,
    mode: Optional[str] = None,
    report: Any = None,
    extra: Optional[dict[str, Any]] = None,
    engine: str = "interpreter",
    runtime: Any = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files :func:`write_export` writes (name -> bytes, in order) and the ``export.json`` summary.

    For writers that put an export in a folder along with other files, as one switch (``edgekd fit``).

    Args:
        model: A :class:`~edgekd.model.ConvertedModel`, or the ``.tflite``
            flatbuffer as bytes or a path; parsed once for all the files.
        name: Symbol stem (see :func:`c_arrays`).
        labels: Class labels, one per output class (the model's when None).
        source_model: Where the model came from (its base name is recorded).
        mode: Quantization mode (detected when None).
        report: A conversion report (``to_dict()``) for ``export.json``.
        extra: Entries added to ``export.json``.
        engine: ``"interpreter"`` (the default): the flatbuffer as a C array
            (``model_data.cc``) and the op resolver (``model_ops.h``) for TFLM's
            ``MicroInterpreter``. ``"compiled"``: the model as code,
            ``<name>_engine.h``/``.cc`` from :func:`edgekd.engine.compile_model`
            (``model.tflite`` is kept for reference; ``model_data.h`` holds the
            constants only, ``model_data.cc`` only the class labels, when there
            are labels).
        runtime: The TFLM runtime (:mod:`edgekd.boards.runtime` id) whose kernels
            the compiled engine calls (``chirale-2.0.0`` when None); with the
            interpreter, the runtime ``model_ops.h`` is checked against.

    Raises:
        UnsupportedOpError: An op TFLM (``runtime``), or with ``"compiled"`` the
            compiled engine, does not run; raised before any file is made.
    """
    validate_c_name(name)
    if engine not in ENGINES:
        raise invalid_value("engine", "'interpreter' (TFLM's MicroInterpreter) or 'compiled' (the model as C++ "
                            "calling TFLM's kernels)", engine)
    model = ConvertedModel.coerce(model)
    compiled = None
    if engine == "compiled":  # first: an op the engine lacks is refused before anything is generated
        compiled = compile_model(model, name=name, **({} if runtime is None else {"runtime": runtime}))
    arrays = c_arrays(model, name=name, labels=labels, source_model=source_model, mode=mode,
                      flatbuffer=compiled is None)
    summary = summarize(model, name=name, mode=mode, source_model=source_model, report=report, labels=labels)
    summary["engine"] = engine
    summary["compiled"] = _engine_summary(compiled) if compiled is not None else None
    if compiled is not None:
        summary["symbols"] = {s: f"{name}_{s}" for s in ("init", "input", "output", "invoke", "activation_bytes")}
    summary.update(extra or {})
    files = {"model.tflite": model.data, "model_data.h": arrays.header.encode()}
    if arrays.source:
        files["model_data.cc"] = arrays.source.encode()
    if compiled is not None:
        files.update((f, text.encode()) for f, text in compiled.files.items())
    elif summary["resolver"] is not None:  # a model with ops TFLM lacks (float/dynamic modes): no resolver
        files["model_ops.h"] = op_resolver_header(model, name=name, runtime=runtime).encode()
    files["export.json"] = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
    return files, summary


def _engine_summary(engine: CompiledEngine) -> dict[str, Any]:
    """What ``export.json`` records of a compiled engine: its runtime, kernels, sizes and memory plan."""
    plan = engine.plan
    return {"runtime": engine.runtime, "kernels": engine.kernels, "activation_bytes": engine.activation_bytes,
            "weights_bytes": engine.weights_bytes, "files": sorted(engine.files),
            **({"esp_nn_activation_bytes": {v: p.total_bytes for v, p in engine.esp_nn_plans.items()}}
               if engine.esp_nn_plans is not None else {}),
            "ops": [{"index": k, "op": n} for k, n in engine.ops],
            "plan": {"total_bytes": plan.total_bytes, "alignment": plan.alignment, "buffers": len(plan.buffers),
                     "scratch_bytes": sum(b.size for b in plan.buffers if b.name.startswith("scratch")),
                     "largest_buffer_bytes": max((b.size for b in plan.buffers), default=0)}}


def export_file_names(name: str = "model") -> tuple[str, ...]:
    """Every file an export may write (either engine): a new export replaces them all in its folder."""
    return ("model.tflite", "model_data.h", "model_data.cc", "model_ops.h", f"{name}_engine.h", f"{name}_engine.cc",
            "export.json")


def write_export(outdir: str | os.PathLike, model: ConvertedModel | bytes | str | os.PathLike,
                 **options: Any) -> ExportResult:
    """Write ``model.tflite``, ``model_data.h``, ``model_data.cc``, ``model_ops.h`` and ``export.json``
    (with ``engine="compiled"``: ``model_engine.h``/``.cc`` instead of ``model_ops.h``, see :func:`export_files`).

    The files are built in a temporary sibling folder that then replaces
    ``outdir`` in one step (:func:`edgekd._io.staged_dir`; other files already
    in ``outdir`` are kept): a failure, an interrupt or a killed process leaves
    the previous export or the new one, never a mix.

    Args:
        outdir: The output folder.
        model: A :class:`~edgekd.model.ConvertedModel`, or the ``.tflite``
            flatbuffer as bytes or a path.
        **options: Those of :func:`export_files`: ``name``, ``labels``,
            ``source_model``, ``mode``, ``report``, ``extra`` (entries added to
            ``export.json``, e.g. the QAT/pruning report), ``engine`` and ``runtime``.

    Returns:
        An :class:`ExportResult`.
    """
    model = ConvertedModel.coerce(model)
    files, summary = export_files(model, **options)
    # A file of the other engine's export (or of a float model's) left in the folder would not match the rest.
    with staged_dir(outdir, owned=export_file_names(options.get("name", "model"))) as stage:
        for fname, data in files.items():
            atomic_write_bytes(os.path.join(stage, fname), data)
    out = os.path.abspath(os.fspath(outdir))
    return ExportResult(out, tuple(os.path.join(out, f) for f in files), summary, model)
