"""Render a firmware project (Arduino sketch, ESP-IDF app, PlatformIO project) for a model.

:func:`render` computes the whole project in memory — a :class:`Project`
whose ``files`` maps relative paths to texts — and :func:`write_project`
writes it atomically. The templates are real files under
``firmware_templates/<target>/`` whose folders mirror the output tree
(``__sketch__`` in a path becomes the project name); ``_shared/`` holds the
pieces every target includes. Jinja2 renders them with ``StrictUndefined``,
so a missing value is an error rather than an empty string, and every
rendered file is checked for leftover template syntax.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import posixpath
import re
import types
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import jinja2

from edgekd import __version__
from edgekd._io import atomic_write_text, staged_dir
from edgekd.boards import runtime as runtimes
from edgekd.errors import DataError, InstallationError, InvalidArgumentError, TFLMCrashError, invalid_value
from edgekd.export import (
    TFLM_NAMESPACE, TFLM_NAMESPACE_CLOSE, TFLM_NAMESPACE_OPEN, c_comment_text, c_float_literal, c_string_literal,
    export_files,
)
from edgekd.boards import Board
from edgekd.engine import esp_nn
from edgekd.firmware.targets import (
    CHIRALE_INDEX_NAME, CHIRALE_LIBRARY, CHIRALE_VERSION, ESP_IDF_MIN_VERSION, ESP_TFLITE_MICRO_VERSION,
    board_for_target, platformio_envs,
)
from edgekd.flatbuffer import TFLiteModel
from edgekd.export.ops import resolver_calls
from edgekd.model import ConvertedModel
from edgekd.model import dequantize as model_dequantize
from edgekd.model import quantize as model_quantize
from edgekd.check.tflm import default_max_arena, run_tflm
from edgekd.engine import ENGINES
from edgekd.convert.runtime import predict
from edgekd.firmware.flash import flash_plan

MARKER = "edgekd-project.json"
DEFAULT_ARENA_MARGIN = 0.25
MIN_ARENA_MARGIN_BYTES = 1024
DEFAULT_NUM_SAMPLES = 5
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_LEFTOVERS = ("{{", "}}", "{%", "%}", "{#", "#}", "__sketch__")
_VALUES_PER_LINE = 16


@dataclasses.dataclass(frozen=True)
class Arena:
    """The tensor arena the firmware reserves.

    Attributes:
        size: ``kTensorArenaSize`` in bytes (multiple of 16).
        measured: Arena bytes TFLM needs for the model (edgekd check's bisection on the host).
        margin: Fractional margin added on top of ``measured``.
        source: Where ``measured`` came from.
        allocation: ``"static"`` (a 16-byte aligned array) or ``"heap"`` (allocated at start-up, for
            arenas over what a static array may take on the board: ``Board.static_arena_max_bytes``).
        static_max: That static limit in bytes, or None.
    """

    size: int
    measured: int
    margin: float
    source: str
    allocation: str = "static"
    static_max: Optional[int] = None

    @property
    def margin_text(self) -> str:
        """The margin as written in the generated comments."""
        return f"{self.margin:.0%} (at least {MIN_ARENA_MARGIN_BYTES} B)"


@dataclasses.dataclass(frozen=True)
class Project:
    """A rendered firmware project, not yet on disk.

    Attributes:
        target: ``"arduino"``, ``"esp-idf"`` or ``"platformio"``.
        board: The board it was rendered for.
        name: Project (sketch) name.
        files: Relative path -> file text, in a stable order.
        ops: The ``MicroMutableOpResolver`` methods registered, one per op.
        arena: The tensor arena reserved.
        host_predictions: Class the host LiteRT interpreter predicted per embedded sample.
        true_labels: True class per sample (-1 when unknown).
        inputs: The embedded int8 inputs, shape ``(N, *input_shape)``.
        expected_outputs: The int8 outputs TFLM's Python interpreter computed for
            them, shape ``(N, outputs)``; the firmware compares its own with these.
        runtime: Id of the TFLM runtime the project links (:mod:`edgekd.boards.runtime`).
        engine: ``"interpreter"`` (TFLM's ``MicroInterpreter`` reads the flatbuffer) or ``"compiled"`` (the
            model as code, ``model_engine.cc``, calling the runtime's kernels; ``arena`` is then its static
            activation buffer). ``ops`` names the model's ops as resolver methods either way.
    """

    target: str
    board: Board
    name: str
    files: Mapping[str, str]
    ops: tuple[str, ...]
    arena: Arena
    host_predictions: tuple[int, ...]
    true_labels: tuple[int, ...]
    inputs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int8), repr=False)
    expected_outputs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int8), repr=False)
    runtime: str = ""
    engine: str = "interpreter"

    def flash_commands(self, outdir: str, *, port: Optional[str] = None) -> list[tuple[str, ...]]:
        """The commands ``edgekd flash`` runs for this project once written to ``outdir``."""
        return list(flash_plan(outdir, port=port or "PORT", project=self.marker, dry_run=True).commands)

    @property
    def marker(self) -> dict[str, Any]:
        """The content of ``edgekd-project.json`` (how ``edgekd flash`` recognises the project)."""
        return json.loads(self.files[MARKER])

    def summary(self) -> str:
        """A few lines describing the project (what the CLI prints)."""
        if self.engine == "compiled":
            memory = f"compiled engine (model_engine), static activation buffer {self.arena.size} B"
        else:
            memory = (f"kTensorArenaSize={self.arena.size} B (measured {self.arena.measured} B by "
                      f"{self.arena.source} + {self.arena.margin_text})")
        return (
            f"{self.target} project '{self.name}' for {self.board.id} ({self.board.name}): "
            f"{len(self.files)} files, {len(self.ops)} ops "
            f"({', '.join(o[3:] for o in self.ops)}), {memory}, "
            f"{len(self.host_predictions)} embedded samples"
        )


# ---------------------------------------------------------------- quantization (Python reference)

def quantize(x: Any, scale: float, zero_point: int) -> np.ndarray:
    """Quantize real values to int8 exactly as the generated ``model_io::quantize_input`` does.

    edgekd's one quantizer, :func:`edgekd.model.quantize` (float32
    division, round half away from zero, NaN → zero point), at int8.
    """
    return model_quantize(x, scale, zero_point, np.int8)


def dequantize(q: Any, scale: float, zero_point: int) -> np.ndarray:
    """Dequantize int8 values exactly as the generated ``model_io::dequantize_output`` does (float32)."""
    return model_dequantize(q, scale, zero_point)


# ---------------------------------------------------------------- arena measurement

def measure_arena(model: ConvertedModel | bytes | str | os.PathLike) -> int:
    """Arena bytes TFLM needs for ``model``: ``edgekd check``'s measurement.

    :func:`edgekd.check.tflm.run_tflm` bisects, in a child process, the
    smallest arena with which TFLM's interpreter (host build) allocates and
    invokes the model. The host is 64-bit with reference kernels, so this is
    somewhat more than a 32-bit microcontroller needs for the same
    structures, while optimized kernels (CMSIS-NN, ESP-NN) may ask for scratch
    buffers it does not; the firmware adds a margin on top.

    Raises:
        TFLMCrashError: TFLM could not allocate or run the model.
    """
    measured, _ = _run_tflm(ConvertedModel.coerce(model), None)
    return int(measured)


def _run_tflm(model: ConvertedModel, inputs: Optional[np.ndarray], *,
              bisect: bool = True) -> tuple[Optional[int], Optional[np.ndarray]]:
    """(arena bytes, or None without ``bisect``; int8 outputs of ``inputs`` or None) from TFLM in a child process."""
    fb = model.parsed
    activations = sum(t.nbytes for t in fb.tensors if not t.is_constant)
    meas, outputs, failure = run_tflm(model.data, max_arena=default_max_arena(len(model), activations),
                                      num_ops=len(fb.operators), inputs=inputs, bisect=bisect)
    failure = meas.failure or failure
    if (bisect and meas.arena_bytes is None) or (inputs is not None and (outputs is None or failure)):
        why = failure.message if failure else "no arena size found"
        raise TFLMCrashError(f"TFLM could not run the model ({why}). Check it with `edgekd check`, "
                             "or pass the arena size yourself (`arena_size`).")
    return (int(meas.arena_bytes) if bisect else None), outputs


def _arena(model: ConvertedModel, q: np.ndarray, arena_size: Optional[int], margin: float,
           profile: Board) -> tuple[Arena, np.ndarray]:
    """The arena the firmware reserves, and the int8 outputs TFLM's interpreter computes for ``q``.

    The arena measured is ``arena_size`` when given, else the model's
    ``arena_bytes`` (measured by ``edgekd check``), else TFLM bisects it now:
    an arena already known is not measured again.
    """
    if arena_size is not None:
        known, source = int(arena_size), "the caller (arena_size)"
    else:
        known, source = model.arena_bytes, "edgekd check (TFLM, host)"
    measured, expected = _run_tflm(model, q, bisect=known is None)
    measured = known if known is not None else int(measured)
    extra = max(math.ceil(measured * margin), MIN_ARENA_MARGIN_BYTES)
    size = (measured + extra + 15) // 16 * 16
    arena = _arena_for_board(Arena(size=size, measured=measured, margin=margin, source=source), profile)
    return arena, np.asarray(expected).astype(np.int8).reshape(q.shape[0], -1)


def _board_activation_bytes(compiled: dict[str, Any], profile: Board, target: str) -> int:
    """The activation buffer the board's build allocates: an ESP-IDF build of an esp-tflite-micro engine compiles
    its ESP-NN variant for the chip (larger on an ESP32-S3), the other builds the one export.json names."""
    variants = compiled.get("esp_nn_activation_bytes")
    if target == "esp-idf" and variants:
        return int(variants[esp_nn.variant_for(profile.idf_target)])
    return int(compiled["activation_bytes"])


def _engine_arena(activation_bytes: int, profile: Board) -> Arena:
    """The compiled engine's static activation buffer as the project's :class:`Arena` (sized by the offline
    plan: no measurement, no margin); InvalidArgumentError when the board cannot hold it as a static array."""
    if profile.arena_allocation(activation_bytes) != "static":
        raise InvalidArgumentError(
            f"The compiled engine's {activation_bytes:,}-byte activation buffer is a static array, over the "
            f"{profile.static_arena_max_bytes:,} B a static array may take on {profile.id}: use `--engine "
            "interpreter` (its arena may come from the heap) or shrink the model (edgekd shrink / edgekd fit).")
    return Arena(size=activation_bytes, measured=activation_bytes, margin=0.0,
                 source="the compiled engine's offline memory plan", static_max=profile.static_arena_max_bytes)


def _arena_for_board(arena: Arena, profile: Board) -> Arena:
    """Static or heap arena, by the board profile's limits; InvalidArgumentError when neither holds it."""
    allocation = profile.arena_allocation(arena.size)
    if allocation is None:
        raise InvalidArgumentError(
            f"The {arena.size:,}-byte tensor arena fits {profile.id} neither as a static array (at most "
            f"{profile.static_arena_max_bytes:,} B) nor as one heap block (about {profile.heap_arena_max_bytes:,} B): "
            "shrink the model (edgekd shrink / edgekd fit) or pick a board with more RAM (edgekd boards).")
    return dataclasses.replace(arena, allocation=allocation, static_max=profile.static_arena_max_bytes)


# ---------------------------------------------------------------- helpers

_REINSTALL = "Reinstall edgekd (pip install --force-reinstall edgekd)."


def templates_root() -> Path:
    """The folder holding the firmware templates (installed package data or the source tree)."""
    here = Path(__file__).resolve().parent
    for cand in (Path(__file__).parent / "templates", here.parent.parent / "firmware_templates"):
        if (cand / "_shared").is_dir():
            return cand
    raise InstallationError(f"The firmware templates are missing from this edgekd installation. {_REINSTALL}")


def _file_name(model: ConvertedModel) -> str:
    """The model's file name as the project names it (it appears in C strings and comments)."""
    path = model.provenance.get("file")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", os.path.basename(path) if path else "model.tflite")


_MAX_IO_BYTES = 16 * 1024 * 1024  # as edgekd.check.core.PROBE_LIMIT_BYTES: no board has more RAM


def _io_tensors(fb: TFLiteModel) -> tuple[Any, Any]:
    if len(fb.inputs) != 1 or len(fb.outputs) != 1:
        raise InvalidArgumentError(
            f"The model has {len(fb.inputs)} inputs and {len(fb.outputs)} outputs; the firmware supports "
            "one input and one output. Export a single-input, single-output model."
        )
    inp, out = fb.input_tensors[0], fb.output_tensors[0]
    for role, t in (("input", inp), ("output", out)):
        q = t.quantization
        if t.dtype != "INT8" or q is None or len(q.scale) != 1:
            raise InvalidArgumentError(
                f"The model's {role} tensor is {t.dtype.lower()}; the firmware needs int8 input and output "
                "(per-tensor quantized). Convert with full-integer quantization: "
                "`edgekd export MODEL --mode int8` (not --float-io)."
            )
        if t.nbytes > _MAX_IO_BYTES:  # a malformed shape: the samples alone would not fit in this process
            raise InvalidArgumentError(
                f"The model's {role} tensor has shape {t.shape} ({t.nbytes:,} bytes), more than a "
                f"microcontroller holds (edgekd renders firmware for at most {_MAX_IO_BYTES:,} B): the model "
                "file is corrupted or not meant for a microcontroller; re-export it (edgekd export).")
    return inp, out


def _samples(samples: Any, model: ConvertedModel, num_samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(x float32 (N, *shape), labels int (N,), description) from the ``samples`` argument.

    Samples of the model's ``source_shape`` (a lower-resolution student's
    data) are resized with the model's adapter (:meth:`ConvertedModel.adapt`).
    """
    input_shape, source_shape = model.input_shape or (), model.source_shape
    if samples is None:
        x = np.zeros((1, *input_shape), dtype=np.float32)
        return x, np.array([-1]), "no validation data given: one all-zeros input"
    y = None
    if hasattr(samples, "x") and hasattr(samples, "y"):  # edgekd.datasets.Split
        x, y = samples.x, samples.y
    elif isinstance(samples, tuple) and len(samples) == 2:
        x, y = samples
    else:
        x = samples
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DataError(
            f"Sample inputs have dtype {x.dtype}; pass float inputs scaled as for the model (the firmware "
            "quantizes them with the model's input scale and zero point)."
        )
    if tuple(x.shape) in (input_shape, source_shape):
        x = x[None]
    resized = source_shape is not None and tuple(x.shape[1:]) == source_shape and x.shape[0] > 0
    if resized:
        x = model.adapt(x[:num_samples])
    if tuple(x.shape[1:]) != tuple(input_shape) or x.shape[0] == 0:
        also = f" or (N, {', '.join(map(str, source_shape))}) to resize" if source_shape else ""
        raise DataError(
            f"Sample inputs have shape {tuple(x.shape)}; the model takes (N, {', '.join(map(str, input_shape))})"
            f"{also}. Pass validation inputs of the model's input shape."
        )
    x = x[:num_samples].astype(np.float32)
    if y is None:
        labels = np.full((x.shape[0],), -1)
    else:
        y = np.asarray(y)
        if y.ndim > 1:
            y = y.argmax(axis=-1)
        labels = y[: x.shape[0]].astype(np.int64)
        if labels.shape[0] != x.shape[0]:
            raise DataError(f"Got {labels.shape[0]} labels for {x.shape[0]} sample inputs; pass one label each.")
    how = f", resized from {source_shape} to {input_shape}" if resized else ""
    return x, labels, f"the first {x.shape[0]} validation inputs{how}"


def _host_predictions(model: ConvertedModel, q: np.ndarray, given: Optional[Sequence[int]]) -> tuple[np.ndarray, str]:
    """(class per sample, who computed it): LiteRT on the host unless the caller gave them."""
    if given is not None:
        host = np.asarray(given).reshape(-1)
        if host.shape[0] < q.shape[0] or host.dtype.kind not in "iu":
            raise invalid_value("host_predictions", f"{q.shape[0]} integer class indices, one per sample",
                                list(host[:8]))
        return host[: q.shape[0]], "given by the caller"

    # Dequantized inputs re-quantize to exactly q inside predict (|q - zp| <= 255),
    # so LiteRT sees the same int8 bytes as the board.
    y = predict(model, dequantize(q, *model.input_quant))
    return np.asarray(y).reshape(len(q), -1).argmax(axis=-1), "LiteRT on the host, same int8 input"


def _rows(q: np.ndarray) -> list[list[str]]:
    out = []
    for row in q.reshape(q.shape[0], -1):
        vals = [f"{int(v)}," for v in row]
        out.append([" ".join(vals[i:i + _VALUES_PER_LINE]) for i in range(0, len(vals), _VALUES_PER_LINE)])
    return out


def _banner(path: str, text: str, board: Board, target: str, version: str) -> str:
    line = (f"Generated by edgekd {version} (`edgekd firmware`, target {target}, board {board.id}). "
            "Do not edit: re-render instead.")
    base = os.path.basename(path)
    if base.endswith((".h", ".cc", ".cpp", ".ino", ".c")):
        if text.startswith("// Generated by edgekd"):
            return text
        return f"// {line}\n{text}"
    if base.endswith(".md"):
        return f"<!-- {line} -->\n{text}"
    if base.endswith(".ini"):
        return f"; {line}\n{text}"
    if base == "CMakeLists.txt" or base.endswith((".yml", ".yaml", ".txt", ".defaults", ".cmake")):
        return f"# {line}\n{text}"
    raise InstallationError(f"The firmware template for {path} has no banner rule (a template added without one). "
                            f"{_REINSTALL}")


class _Code(str):
    """Text edgekd generated as code (C arrays, namespace lines, an escaped literal): rendered verbatim."""


def _escape(value: Any) -> str:
    """What every ``{{ … }}`` renders: generated code as is, anything else as one line of safe text.

    A file or tensor name, a label or any other value that reaches a template
    goes through :func:`edgekd.export.c_comment_text` unless it is
    :class:`_Code`: no value can end a comment or a string, splice or inject a
    line, in any target's C/C++, CMake, ini or Markdown file. A value meant to
    be a C string uses the ``c_string`` filter (an exact, escaped literal).
    """
    return value if isinstance(value, _Code) else c_comment_text(str(value))


def _environment(root: Path, finalize: Any = _escape) -> Any:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        finalize=finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["c_string"] = lambda v: _Code(c_string_literal(str(v)))
    return env


def _check_options(name: Any, num_samples: Any, arena_margin: Any, arena_size: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid_value("name", "a project name of letters, digits and '_' starting with a letter", name)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= 64:
        raise invalid_value("num_samples", "an integer from 1 to 64", num_samples)
    if (isinstance(arena_margin, bool) or not isinstance(arena_margin, (int, float))
            or not 0 <= arena_margin <= 4 or arena_margin != arena_margin):
        raise invalid_value("arena_margin", "a fraction from 0 to 4 (0.25 adds 25%)", arena_margin)
    if arena_size is not None and (isinstance(arena_size, bool) or not isinstance(arena_size, (int, np.integer))
                                   or arena_size <= 0):
        raise invalid_value("arena_size", "a positive number of bytes (or None to measure it)", arena_size)


def _check_engine(engine: Any, arena_size: Any) -> None:
    if engine not in ENGINES:
        raise invalid_value("engine", "'interpreter' (TFLM's MicroInterpreter) or 'compiled' (the model as C++ "
                            "calling TFLM's kernels)", engine)
    if engine == "compiled" and arena_size is not None:
        raise invalid_value("arena_size", "None with the compiled engine (its activation buffer is planned offline; "
                            "there is no tensor arena)", arena_size)


def _engine_context(compiled: Optional[dict[str, Any]], runtime: Any) -> Optional[dict[str, Any]]:
    """What the templates say of the compiled engine (None: the interpreter)."""
    if compiled is None:
        return None
    return {"runtime": runtime.id, "runtime_label": runtime.label, "kernels": compiled["kernels"],
            "activation_bytes": compiled["activation_bytes"], "weights_bytes": compiled["weights_bytes"]}


def _labels(labels: Optional[Sequence[str]], out: Any) -> Optional[list[str]]:
    if labels is None:
        return None
    labels = [str(lb) for lb in labels]
    num_outputs = int(np.prod(out.shape)) if out.shape else 1
    if len(labels) != num_outputs:
        raise invalid_value("labels", f"{num_outputs} class names, one per model output", f"{len(labels)} names")
    return labels


# What the templates use of model_data.h (edgekd export's naming; kClassLabels only with labels; g_model_data,
# first, not with the compiled engine).
_MODEL_DATA_SYMBOLS = ("g_model_data", "kInputScale", "kInputZeroPoint", "kOutputScale", "kOutputZeroPoint",
                       "kInputSize", "kOutputSize")


def _exported_files(exported: Mapping[str, bytes], labels: Optional[list[str]],
                    files: Mapping[str, str]) -> dict[str, str]:
    """The C/C++ files ``edgekd export`` writes (``exported``: :func:`edgekd.export.export_files`), beside the
    templates' model_io: ``model_data.h``/``.cc`` and ``model_ops.h``, or with the compiled engine
    ``model_data.h`` (and ``.cc`` with labels) and ``model_engine.h``/``.cc``; ``.cc`` takes the target's
    extension (``.cpp`` for Arduino and PlatformIO).

    The firmware includes the export's files rather than generating its own:
    one generator of the C arrays, of the op registrations and of the engine.
    """
    header = exported["model_data.h"].decode()
    compiled = "model_engine.cc" in exported
    for sym in _MODEL_DATA_SYMBOLS[compiled:] + (("kClassLabels",) if labels else ()):
        if sym not in header:  # the export's naming changed: the templates must follow
            raise InstallationError(f"edgekd.export.c_arrays no longer defines {sym}, which the firmware templates "
                                    f"use. {_REINSTALL}")
    io_source = next(p for p in files if posixpath.basename(p).startswith("model_io.") and not p.endswith(".h"))
    folder, ext = posixpath.dirname(io_source), posixpath.splitext(io_source)[1]  # e.g. "src", ".cpp"
    at = (folder + "/") if folder else ""
    out = {}
    for fname in ("model_data.h", "model_data.cc", "model_ops.h", "model_engine.h", "model_engine.cc"):
        if fname in exported:
            out[at + (fname[:-3] + ext if fname.endswith(".cc") else fname)] = exported[fname].decode()
    return out


def _device_input(model: ConvertedModel) -> str:
    """What the device must feed the model (one line for the README and model_io.h): its input shape, and for a
    lower-resolution student the resize from the data it was made for."""
    dims = "x".join(str(d) for d in model.input_shape or ())
    text = f"{dims} float values per inference (the model's input), scaled as in training"
    if model.source_shape is not None:
        text += (f"; the model was made for {'x'.join(map(str, model.source_shape))} data resized to {dims}: resize "
                 "each frame the same way (bilinear, antialiased when shrinking, as edgekd.datasets.resize) first")
    return text + ", then quantized with model_io::quantize_input"


def _context(model: ConvertedModel, *, target: str, board: Board, name: str, ops: Sequence[str], arena: Arena,
             labels: Optional[list[str]], file_name: str, samples: dict[str, Any], version: str,
             engine: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The values the templates render (``engine``: the compiled engine's export summary, None for the
    interpreter)."""
    fb = model.parsed
    inp, out = fb.input_tensors[0], fb.output_tensors[0]
    (in_scale, in_zp), (out_scale, out_zp) = model.input_quant, model.output_quant
    shape_text = lambda t: "[" + ", ".join(str(d) for d in t.shape) + "]"  # noqa: E731
    pio_envs = platformio_envs()
    if board.id not in {b.id for b in pio_envs}:
        pio_envs.append(board)
    return {
        "version": version, "target": target, "board": board, "sketch": name, "pio_envs": pio_envs,
        "model": {"file": file_name, "size_bytes": fb.size_bytes, "sha256": fb.sha256, "symbol": "g_model_data"},
        "ops": list(ops), "arena": arena, "labels": labels, "samples": samples,
        "tflm_namespace": TFLM_NAMESPACE, "tflm_open": _Code(TFLM_NAMESPACE_OPEN),
        "tflm_close": _Code(TFLM_NAMESPACE_CLOSE),
        # The compiled engine's app (a variant of the interpreter's) is in namespace edgekd: it uses no TFLM API.
        "engine": engine, "app_template": "_shared/app_compiled.cc.j2" if engine else "_shared/app.cc.j2",
        "app_namespace": "edgekd" if engine else TFLM_NAMESPACE,
        "io": {
            "input_name": inp.name, "input_shape_text": shape_text(inp), "input_size": int(np.prod(inp.shape)),
            "input_scale": c_float_literal(in_scale), "input_zero_point": in_zp,
            "output_name": out.name, "output_shape_text": shape_text(out),
            "output_size": int(np.prod(out.shape)) if out.shape else 1,
            "output_scale": c_float_literal(out_scale), "output_zero_point": out_zp,
            "device_input": _device_input(model),
        },
        "versions": {"chirale_library": CHIRALE_LIBRARY, "chirale_index_name": CHIRALE_INDEX_NAME,
                     "chirale": CHIRALE_VERSION,
                     "esp_tflite": ESP_TFLITE_MICRO_VERSION, "idf_min": ESP_IDF_MIN_VERSION},
    }


def _render_templates(context: dict[str, Any]) -> dict[str, str]:
    """Every template of the context's target rendered (relative output path -> text, banner added)."""
    target, name, board = context["target"], context["sketch"], context["board"]
    root = templates_root()
    env = _environment(root)
    bare = _environment(root, finalize=lambda value: "")  # the templates' own text, without the values
    files: dict[str, str] = {}
    target_dir = root / target
    for path in sorted(target_dir.rglob("*.j2")):
        rel_template = path.relative_to(root).as_posix()
        rel_out = path.relative_to(target_dir).as_posix()[: -len(".j2")].replace("__sketch__", name)
        text = env.get_template(rel_template).render(context)
        left = [tok for tok in _LEFTOVERS if tok in bare.get_template(rel_template).render(context)]
        if left:
            raise InstallationError(f"The firmware template {rel_template} left {left} in {rel_out}. {_REINSTALL}")
        files[rel_out] = _banner(rel_out, text, board, target, context["version"])
    return files


def _marker(context: dict[str, Any], runtime_id: str) -> str:
    """``edgekd-project.json``: what ``edgekd flash`` reads."""
    board, arena, model = context["board"], context["arena"], context["model"]
    marker = {
        "generated_by": f"edgekd {context['version']} (`edgekd firmware`); `edgekd flash` reads this file",
        "target": context["target"],
        "board": board.id,
        "name": context["sketch"],
        "fqbn": board.fqbn,
        "idf_target": board.idf_target,
        "platformio_env": board.platformio_env,
        "sketch_dir": context["sketch"] if context["target"] == "arduino" else None,
        "model": {"file": model["file"], "sha256": model["sha256"], "size_bytes": model["size_bytes"]},
        "ops": context["ops"],
        "runtime": runtime_id,
        "engine": "compiled" if context["engine"] else "interpreter",
        "arena": {"size": arena.size, "measured": arena.measured, "margin": arena.margin, "source": arena.source,
                  "allocation": arena.allocation},
    }
    return json.dumps(marker, indent=2) + "\n"


# ---------------------------------------------------------------- render / write

def render(
    model_tflite: ConvertedModel | bytes | str | os.PathLike,
    *,
    board: str | os.PathLike | Board,
    target: str = "arduino",
    samples: Any = None,
    host_predictions: Optional[Sequence[int]] = None,
    arena_size: Optional[int] = None,
    arena_margin: float = DEFAULT_ARENA_MARGIN,
    labels: Optional[Sequence[str]] = None,
    name: str = "edgekd_model",
    num_samples: int = DEFAULT_NUM_SAMPLES,
    engine: str = "interpreter",
) -> Project:
    """Render a firmware project that runs a full-int8 TFLite model with TFLM.

    Nothing is written: the result is a :class:`Project` (see :func:`write_project`). Every argument is
    validated and every op checked against TFLM before anything is rendered. The project includes the
    files ``edgekd export`` writes (``model_data.h``/``.cc``, ``model_ops.h``).

    Args:
        model_tflite: A :class:`~edgekd.model.ConvertedModel` (its parsed flatbuffer, labels, input adapter
            and measured arena are used), or the ``.tflite`` as bytes or a path; int8 input and output.
        board: Board id or alias (``"nano33ble"``, ``"esp32s3"``; see :func:`edgekd.firmware.list_boards`), a
            board profile ``.toml`` path, or an :class:`edgekd.boards.Board` whose ``[firmware]`` facts say
            how each toolchain builds for it.
        target: ``"arduino"`` (arduino-cli / IDE sketch, Chirale_TensorFlowLite),
            ``"esp-idf"`` (ESP-IDF app, esp-tflite-micro) or ``"platformio"``.
        samples: Validation inputs to embed — a float array ``(N, *input_shape)`` (or ``(N, *source_shape)``,
            resized with the model's adapter), an ``(x, y)`` tuple or an :class:`edgekd.datasets.Split`; the
            first ``num_samples`` are quantized and embedded. ``None`` embeds one all-zeros input.
        host_predictions: Host-predicted class per embedded sample; computed with
            LiteRT (:func:`edgekd.convert.runtime.predict`) when ``None``.
        arena_size: Arena bytes TFLM needs; when ``None``, the model's ``arena_bytes`` (measured by
            ``edgekd check``), else measured now with the TFLM interpreter (bisection).
        arena_margin: Fraction added to the arena (at least 1024 bytes), rounded up to 16 bytes.
        labels: Class names, one per output (the model's when ``None``); printed with the predicted class.
        name: Project / sketch name (letters, digits, ``_``; starts with a letter).
        num_samples: How many samples to embed (1 to 64).
        engine: ``"interpreter"`` (TFLM's ``MicroInterpreter`` with the flatbuffer and ``model_ops.h``) or
            ``"compiled"``: the model as code (``model_engine.h``/``.cc``, ``edgekd export --engine compiled``)
            calling the target runtime's kernels, in one static activation buffer planned offline (no arena:
            ``arena_size`` must be None and ``arena_margin`` is not used).

    Returns:
        The rendered :class:`Project`.

    Raises:
        InvalidArgumentError: A bad argument, or a model without int8 I/O.
        TFLiteFileError: The model file is missing or not a valid TFLite model.
        BoardError: Unknown board.
        UnsupportedOpError: An op the target's TFLM runtime (:func:`edgekd.boards.runtime.for_target`) has
            no kernel for, or computes wrong (per-channel Dense weights on Chirale_TensorFLowLite), or with
            ``engine="compiled"`` an op the compiled engine does not cover.
        DataError: Samples of the wrong shape or dtype.
    """
    runtime = runtimes.for_target(target)
    fw_board = board_for_target(board, target)
    _check_options(name, num_samples, arena_margin, arena_size)
    _check_engine(engine, arena_size)
    model = ConvertedModel.coerce(model_tflite, argument="model_tflite")  # parsed once, here or by convert
    # UnsupportedOpError before anything is rendered: an op the target's TFLM lacks, or one it computes wrong.
    ops = tuple(resolver_calls(model.parsed, runtime=runtime))
    _, out = _io_tensors(model.parsed)
    labels = _labels(model.labels if labels is None else labels, out)
    # The export's files (with the compiled engine, generated now: an op it lacks is refused here).
    exported, summary = export_files(model, name="model", labels=labels, engine=engine, runtime=runtime.id)
    compiled = summary["compiled"]

    x, true_labels, source = _samples(samples, model, num_samples)
    q = model.quantize(x)
    host, host_runtime = _host_predictions(model, q, host_predictions)
    # TFLM's own interpreter (tflite-micro, reference kernels) on the same int8 inputs: the output bytes
    # the firmware compares with, and the arena it needs (not measured again when the model carries it).
    if compiled is not None:
        arena = _engine_arena(_board_activation_bytes(compiled, fw_board, target), fw_board)
        expected = np.asarray(_run_tflm(model, q, bisect=False)[1]).astype(np.int8).reshape(q.shape[0], -1)
    else:
        arena, expected = _arena(model, q, arena_size, float(arena_margin), fw_board)
    samples_context = {
        "source": source, "host_runtime": host_runtime, "tolerance": 0 if runtime.kernels == "reference" else 1,
        "expected_runtime": "tflite-micro's Python interpreter, reference kernels",
        "rows": [{"lines": lines, "expected": exp, "host": int(h), "label": int(lb)}
                 for lines, exp, h, lb in zip(_rows(q), _rows(expected), host, true_labels)]}
    context = _context(model, target=target, board=fw_board, name=name, ops=ops, arena=arena, labels=labels,
                       file_name=_file_name(model), samples=samples_context, version=__version__,
                       engine=_engine_context(compiled, runtime))
    files = _render_templates(context)
    files.update(_exported_files(exported, labels, files))
    files[MARKER] = _marker(context, runtime.id)
    return Project(
        target=target, board=fw_board, name=name, files=types.MappingProxyType(dict(sorted(files.items()))),
        ops=ops, arena=arena, host_predictions=tuple(int(h) for h in host),
        true_labels=tuple(int(v) for v in true_labels), inputs=q, expected_outputs=expected, runtime=runtime.id,
        engine=engine,
    )


def write_project(project: Project, outdir: str | os.PathLike) -> list[str]:
    """Write a rendered project into ``outdir`` atomically.

    The files are staged in a temporary sibling folder and moved in only
    when all are written; files already in ``outdir`` that the project does
    not produce are kept (e.g. a ``build/`` folder).

    Returns:
        The absolute paths written, in the project's order.
    """
    if not isinstance(project, Project):
        raise invalid_value("project", "a Project from edgekd.firmware.render", type(project).__name__)
    outdir = os.path.abspath(os.fspath(outdir))
    with staged_dir(outdir) as stage:
        for rel, text in project.files.items():
            atomic_write_text(os.path.join(stage, rel), text)
    return [os.path.join(outdir, rel) for rel in project.files]
