"""``edgekd.check.check``: flash, RAM and latency of a TFLite model against a board."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from edgekd import boards as _boards
from edgekd.convert.loading import load_model
from edgekd.convert.runtime import LiteRTJob, outputs_job, run_litert
from edgekd.datasets import Split, validate
from edgekd.errors import BoardError, DataError, ResizeNeededError, UnsupportedOpError, invalid_value
from edgekd.export.ops import resolver_calls
from edgekd.flatbuffer import TFLiteModel
from edgekd.model import ConvertedModel
from edgekd.profile import profile

from .budgets import BudgetRow, resolve_budgets
from .compiled import CompiledMeasurement, check_engine, measure_compiled
from .latency import BoardLatency, HostLatency, costs_from_profile, estimate_board_latency
from .tflm import ArenaMeasurement, TFLMFailure, default_max_arena, run_tflm


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One op of the per-layer view."""

    index: int
    op_name: str
    output: str
    output_shape: tuple[int, ...]
    macs: int
    board_ms: float
    latency_share: float
    live_activation_bytes: int  # activations alive while this op runs (inputs + outputs + carried)
    is_ram_peak: bool


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Accuracy and LiteRT/TFLM parity on the given data."""

    samples: int
    float_accuracy: Optional[float]
    litert_accuracy: Optional[float]
    tflm_accuracy: Optional[float]
    max_diff_steps: Optional[int]  # max |LiteRT - TFLM| over all outputs, in quantized steps
    argmax_agreement: Optional[float]


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The result of :func:`check`. Render it with :mod:`edgekd.check.render` or :meth:`to_json`."""

    model_path: str
    model_bytes: int
    model_sha256: str
    board: _boards.Board
    rows: tuple[BudgetRow, ...]
    arena: ArenaMeasurement
    runtime_flash_bytes: int
    runtime_ram_bytes: int
    profiler_peak_ram_bytes: Optional[int]
    board_latency: BoardLatency
    host_latency: Optional[HostLatency]
    layers: tuple[LayerRow, ...]
    accuracy: Optional[Accuracy]
    notes: tuple[str, ...] = ()
    inference_failure: Optional[TFLMFailure] = None
    litert_failures: tuple = ()  # edgekd.convert.runtime.LiteRTFailure: LiteRT failed, crashed or hung
    emulation: Optional[Any] = None  # edgekd.emulate.qemu.Emulation when check ran with emulate=True
    model: Optional[ConvertedModel] = None  # the model checked, with arena_bytes (the bisected TFLM arena)
    compiled: Optional[CompiledMeasurement] = None  # the compiled engine's linked sizes (engine="compiled")

    @property
    def engine(self) -> str:
        """The engine the flash and RAM budgets were checked for: ``"interpreter"`` or ``"compiled"``."""
        return "interpreter" if self.compiled is None else "compiled"

    @property
    def passed(self) -> bool:
        """True when TFLM ran the model and every budget holds."""
        tflm_ok = self.arena.failure is None and self.inference_failure is None
        return tflm_ok and not self.litert_failures and all(r.passed for r in self.rows)

    @property
    def exit_code(self) -> int:
        """0 when everything passes, 1 when a budget is exceeded or TFLM cannot run the model."""
        return 0 if self.passed else 1

    @property
    def failed_budgets(self) -> list[str]:
        return [r.name for r in self.rows if not r.passed]

    def to_dict(self) -> dict:
        b = self.board
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "failed": self.failed_budgets
            + (["tflm"] if self.arena.failure or self.inference_failure else [])
            + (["litert"] if self.litert_failures else []),
            "model": {"path": self.model_path, "bytes": self.model_bytes, "sha256": self.model_sha256},
            "engine": self.engine,
            "compiled_engine": self.compiled.to_dict() if self.compiled is not None else None,
            "board": {"id": b.id, "name": b.name, "core": b.core, "clock_hz": b.clock_hz,
                      "kernels": self.board_latency.kernels},
            "budgets": [r.to_dict() for r in self.rows],
            "arena": self.arena.to_dict(),
            "runtime_flash_bytes": self.runtime_flash_bytes,
            "runtime_ram_bytes": self.runtime_ram_bytes,
            "profiler_peak_ram_bytes": self.profiler_peak_ram_bytes,
            "board_latency": self.board_latency.to_dict(),
            "host_latency": self.host_latency.to_dict() if self.host_latency else None,
            "layers": [dataclasses.asdict(r) for r in self.layers],
            "accuracy": dataclasses.asdict(self.accuracy) if self.accuracy else None,
            "inference_failure": self.inference_failure.to_dict() if self.inference_failure else None,
            "litert_failures": [f.to_dict() for f in self.litert_failures],
            "emulation": _emulation_summary(self.emulation),
            "notes": list(self.notes),
        }

    def to_json(self, **kwargs: Any) -> str:
        """The report as JSON (machine-readable; ``edgekd check --json``)."""
        return json.dumps(self.to_dict(), **({"indent": 2} | kwargs))


_FLOATS = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
PROBE_LIMIT_BYTES = 16 * 1024 * 1024


def validate_ops(model: TFLiteModel) -> None:
    """Raise :class:`UnsupportedOpError` when TFLM cannot run the model, naming the op and the fix."""
    names = model.op_names
    flex = [n for n in names if n.startswith("CUSTOM:Flex")]
    if flex:
        raise UnsupportedOpError(
            f"The model uses TensorFlow (SELECT_TF_OPS) op {flex[0].split(':', 1)[1]}, "
            "which TFLM cannot run: "
            "convert with builtin ops only (edgekd export --mode int8, no SELECT_TF_OPS).")
    for op in model.operators:
        if op.op_name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) >= 2:
            x, w = model.tensors[op.inputs[0]], model.tensors[op.inputs[1]]
            if x.dtype in _FLOATS and w.dtype == "INT8":
                raise UnsupportedOpError(
                    f"The model is dynamic-range quantized (op {op.index} {op.op_name} has float activations "
                    "and int8 weights), which TFLM does not support: convert to full-integer int8 with "
                    "representative data (edgekd export --mode int8).")
    for kind, idx in (("input", model.inputs), ("output", model.outputs)):
        for i in idx:
            if model.tensors[i].dtype == "UINT8":
                raise UnsupportedOpError(
                    f"The model's {kind} {model.tensors[i].name!r} is uint8; TFLM's int8 kernels "
                    "need int8 (or float32) I/O: convert with "
                    "inference_input_type/inference_output_type = tf.int8 "
                    "(edgekd export --mode int8).")
    resolver_calls(model)  # raises UnsupportedOpError naming the op and what to do


def _probe_cap(b: _boards.Board) -> int:
    # No board has more than a few MB of RAM: never probe arenas past this (a corrupted or
    # huge model would otherwise make TFLM allocate and bisect over gigabytes).
    return max(PROBE_LIMIT_BYTES, 4 * b.ram_bytes)


def _load_float_model(float_model: Any):
    if float_model is None or hasattr(float_model, "predict"):
        return float_model
    path = os.fspath(float_model)
    if not os.path.exists(path):
        raise invalid_value("float_model", "a keras.Model or the path of an existing .keras/.h5 file", path)
    return load_model(path)


def _as_split(data: Any, labels: Any) -> Optional[Split]:
    """``data`` (an array or an :class:`edgekd.datasets.Split`) and ``labels``, checked by the one validator."""
    if data is None:
        return None
    if hasattr(data, "x") and hasattr(data, "y"):  # edgekd.datasets.Split
        data, labels, name = data.x, data.y if labels is None else labels, getattr(data, "name", "data")
    else:
        name = "data"
    return validate(Split(np.asarray(data), None if labels is None else np.asarray(labels), name))


def _check_options(b: _boards.Board, max_samples: Any, emulation: Any) -> None:
    if not isinstance(max_samples, int) or max_samples < 1:
        raise invalid_value("max_samples", "a positive integer", max_samples)
    if emulation is not None and getattr(emulation, "board", None) != b.id:
        raise invalid_value("emulation", f"an edgekd.emulate.qemu.emulate() result for board {b.id!r}",
                            getattr(emulation, "board", type(emulation).__name__))


def _model_data(fb: TFLiteModel, split: Optional[Split],
                max_samples: int) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The first ``max_samples`` of the split, once their shape is the model's input's."""
    if split is None:
        return None, None
    if len(fb.inputs) != 1:
        raise DataError(f"The model has {len(fb.inputs)} inputs; accuracy/parity data is supported for "
                        "single-input models only: check without `data`.")
    first = Split(split.x[:max_samples], None if split.y is None else split.y[:max_samples], split.name)
    want = tuple(fb.input_tensors[0].shape[1:])
    try:
        first = validate(first, input_shape=want)
    except ResizeNeededError as e:  # check() takes no resize option: the caller resizes first
        raise e.with_opt_in(f"pass edgekd.datasets.resize(x, {want}) as `data`") from None
    return first.x, first.y


def _measure_tflm(model: ConvertedModel, b: _boards.Board, peak: int, x: Optional[np.ndarray],
                  timeout: float) -> tuple[ArenaMeasurement, Optional[np.ndarray], Optional[TFLMFailure]]:
    """TFLM in a child process: the arena bisection, then ``x`` (quantized as the board would) through it."""
    fb, cap = model.parsed, _probe_cap(b)
    if peak > cap:
        return ArenaMeasurement(None, failure=TFLMFailure(
            stage="allocate", error=f"its activations alone need {peak:,} B, over the {cap:,} B that edgekd "
                                    "probes with TFLM")), None, None
    act_bytes = sum(t.nbytes for t in fb.tensors if not t.is_constant)
    xq = model.quantize(x.astype(np.float32)) if x is not None else None
    arena, out, inf_fail = run_tflm(model.data, max_arena=min(cap, default_max_arena(len(model), act_bytes)),
                                    num_ops=len(fb.operators), inputs=xq, timeout=timeout)
    f = arena.failure
    if f is not None and f.op_index is not None and f.op_name is None and 0 <= f.op_index < len(fb.operators):
        arena = dataclasses.replace(arena, failure=dataclasses.replace(f, op_name=fb.operators[f.op_index].op_name))
    return arena, out, inf_fail


def _budget_rows(budgets: Any, b: _boards.Board, fb: TFLiteModel, arena: ArenaMeasurement, peak: int,
                 lat: BoardLatency, em: Any, compiled: Optional[CompiledMeasurement] = None) -> tuple[BudgetRow, ...]:
    """Flash, RAM and latency against the budgets; the arena row; the emulated outputs row.

    With ``compiled``, flash and RAM are the compiled engine's linked sizes, and there is no arena.
    """
    flash_value = fb.size_bytes + b.runtime_flash_bytes
    flash_how = f"model {fb.size_bytes} B + TFLM runtime {b.runtime_flash_bytes} B"
    if em is not None:
        flash_value = fb.size_bytes + em.size.tflm_flash
        flash_how = (f"model {fb.size_bytes} B + TFLM {em.size.tflm_flash} B as linked for this op set "
                     f"({em.runtime}, {em.kernels}, Cortex-M4F)")
        ram_value, ram_how = em.arena_used_bytes + b.runtime_ram_bytes, \
            f"TFLM arena on the emulated 32-bit {em.machine} + runtime {b.runtime_ram_bytes} B"
    elif arena.arena_bytes is not None:
        ram_value, ram_how = arena.arena_bytes + b.runtime_ram_bytes, \
            f"TFLM arena (bisected) + runtime {b.runtime_ram_bytes} B"
    elif peak > _probe_cap(b):
        ram_value, ram_how = peak + b.runtime_ram_bytes, "lower bound: peak live activations (TFLM not run)"
    else:
        ram_value, ram_how = None, "TFLM could not run the model"
    if compiled is not None:
        flash_value, flash_how = compiled.flash_bytes, compiled.how("flash")
        ram_value, ram_how = compiled.ram_bytes, compiled.how("ram")
    rows = budgets.rows(flash=flash_value, ram=ram_value, latency=lat.total_ms, flash_how=flash_how,
                        ram_how=ram_how, latency_how=f"estimate: MACs x cycles/MAC ({lat.kernels}) / "
                        f"{b.clock_hz / 1e6:g} MHz + per-op overhead")
    arena_value = em.arena_used_bytes if em is not None else arena.arena_bytes
    if b.static_arena_max_bytes is not None and arena_value is not None and compiled is None:
        rows += (_arena_row(b, arena_value),)
    if b.static_arena_max_bytes is not None and compiled is not None:  # one static array, no heap fallback
        rows += (BudgetRow("activation_buffer", b.static_arena_max_bytes, compiled.activation_bytes, "bytes", "board",
                           f"the compiled engine's activation buffer is a static array: up to "
                           f"{b.static_arena_max_bytes:,} B links on {b.id} (--engine interpreter can use the heap)"),)
    if em is not None:
        rows += (BudgetRow("device_outputs", 1, em.max_diff_steps, "steps", "board",
                           f"max |emulated {em.kernels} - TFLM host| over {len(em.predicted)} sample(s); "
                           f"class agreement {em.class_agreement:.1%}"),)
    return rows


def _run_litert(model: ConvertedModel, x: Optional[np.ndarray], *, host_latency: bool, runs: int,
                timeout: float) -> tuple[Optional[HostLatency], Optional[np.ndarray], tuple]:
    """LiteRT in a child process: host latency (default delegate: XNNPACK) and the raw outputs of ``x``.

    The outputs come from :func:`edgekd.convert.runtime.outputs_job`, the job
    ``export``'s accuracy gate runs too, so both measure int8 accuracy the same way.
    """
    jobs = []
    if host_latency:
        # timing stops after 3 s; a fifth of the budget, as a TFLM probe, is plenty unless the model hangs
        jobs.append(LiteRTJob("latency", runs=runs, task="host latency", timeout=timeout / 5))
    if x is not None:
        jobs.append(outputs_job(x.astype(np.float32), dequantize=False, task="accuracy and parity"))
    done = dict(zip([j.kind for j in jobs], run_litert(model, jobs, timeout=timeout))) if jobs else {}
    lat, out = done.get("latency"), done.get("outputs")
    host = HostLatency(**lat.value) if lat is not None and lat.failure is None else None
    outputs = out.value.reshape(len(x), -1) if out is not None and out.failure is None else None
    return host, outputs, tuple(r.failure for r in done.values() if r.failure is not None)


def _accuracy(fb: TFLiteModel, x: Optional[np.ndarray], y: Optional[np.ndarray], tflm: Optional[np.ndarray],
              lit: Optional[np.ndarray], fmodel: Any) -> Optional[Accuracy]:
    """Accuracy of the float model, LiteRT and TFLM on ``x``; how far LiteRT's outputs are from TFLM's."""
    if x is None:
        return None
    out_t = fb.output_tensors[0]
    max_steps = agree = tflm_acc = lit_acc = f_acc = None
    if tflm is not None and y is not None:
        tflm_acc = float(np.mean(np.argmax(tflm, -1) == y))
    if tflm is not None and lit is not None and tflm.shape == lit.shape:
        if out_t.dtype in _FLOATS and out_t.quantization is not None:
            with np.errstate(all="ignore"):
                steps = np.ceil(np.max(np.abs(lit - tflm)) / out_t.quantization.scale[0])
            max_steps = int(steps) if np.isfinite(steps) else None  # NaN outputs or a zero scale
        elif out_t.dtype not in _FLOATS:
            max_steps = int(np.max(np.abs(lit.astype(np.int64) - tflm.astype(np.int64))))
        agree = float(np.mean(np.argmax(lit, -1) == np.argmax(tflm, -1)))
    if y is not None and lit is not None:
        lit_acc = float(np.mean(np.argmax(lit, -1) == y))
    if fmodel is not None and y is not None:
        pred = np.asarray(fmodel.predict(x.astype(np.float32), verbose=0))
        f_acc = float(np.mean(np.argmax(pred.reshape(len(x), -1), -1) == y))
    return Accuracy(int(len(x)), f_acc, lit_acc, tflm_acc, max_steps, agree)


def _notes(fb: TFLiteModel, b: _boards.Board, arena: ArenaMeasurement, em: Any, optimized: bool) -> tuple[str, ...]:
    notes = []
    if not fb.is_full_integer:
        notes.append("The model computes in float: the cycles-per-MAC coefficients are calibrated for int8 "
                     "kernels, so the latency estimate is optimistic.")
    if arena.host_overstatement_bytes and em is None:
        notes.append(
            f"This 64-bit host over-states the arena against a 32-bit MCU by about "
            f"{arena.host_overstatement_bytes} B (pointer-sized fields of TFLM's persistent tensors "
            "and nodes); "
            "the budget uses the host figure, which errs on the safe side.")
    if b.has_optimized_kernels and optimized:
        notes.append(f"{b.optimized_kernels.upper()} kernels can request scratch buffers in the arena on the "
                     "board that the host's reference kernels do not; keep a few KB of RAM margin.")
    return tuple(notes)


def check(
    model_tflite: ConvertedModel | bytes | str | os.PathLike, *, board: str | _boards.Board,
    max_flash: int | str | None = None, max_ram: int | str | None = None, max_latency_ms: float | None = None,
    data: Any = None, labels: Optional[Sequence[int]] = None, float_model: Any = None, max_samples: int = 500,
    host_latency: bool = True, host_latency_runs: int = 50, optimized_kernels: bool = True, timeout: float = 300.0,
    emulation: Any = None, engine: str = "interpreter", tflm: Optional[str | os.PathLike] = None,
) -> CheckReport:
    """Check a TFLite model against a board's flash, RAM and latency budgets.

    Flash is the model's bytes plus the TFLM runtime's flash overhead. RAM is the TFLM tensor arena, measured
    with TFLM's own interpreter in a child process (the smallest arena that allocates and invokes, bisected to
    16 bytes) plus the runtime's RAM overhead. Latency is estimated for the board from per-op MACs and the
    board's cycles-per-MAC coefficients, and measured on this host with LiteRT. With data, the accuracy of the
    float model, LiteRT and TFLM and the LiteRT/TFLM output difference are reported.

    Args:
        model_tflite: A :class:`edgekd.ConvertedModel`, or ``.tflite`` bytes or path (verified before any
            interpreter sees it; read and parsed once).
        board: Board id (see ``edgekd boards``) or a :class:`edgekd.boards.Board`.
        max_flash: Flash budget overriding the board's (bytes or "512KB"; KB = 1024 B).
        max_ram: RAM budget overriding the board's.
        max_latency_ms: Latency budget for the board estimate (none by default).
        data: Float inputs (N, ...) or an ``edgekd.datasets.Split`` for accuracy and parity.
        labels: Integer labels for ``data``.
        float_model: Keras model (or path) whose accuracy is reported next to the int8 ones.
        max_samples: At most this many samples of ``data`` are run.
        host_latency: Measure LiteRT latency on this host.
        host_latency_runs: Timed runs after warm-up.
        optimized_kernels: Estimate with the board's optimized kernels (CMSIS-NN, ESP-NN).
        timeout: Seconds allowed for each interpreter's child process (TFLM; LiteRT's host latency and
            outputs together). Every interpreter call sequence has a deadline within it (a fifth of it for each
            TFLM probe), and a model that hangs is reported with the stage.
        emulation: What the model did on the board's emulated core (:func:`edgekd.emulate.qemu.emulate` of the
            same model and board: the TFLM and kernels the Arduino firmware links). With it, RAM is the arena
            the 32-bit target used instead of the 64-bit host figure, flash counts the TFLM library as linked
            for this op set instead of the board's table, and the emulated outputs must be within 1 quantized
            step of TFLM's host interpreter (a ``device_outputs`` row).
        engine: ``"interpreter"`` (TFLM's ``MicroInterpreter``) or ``"compiled"`` (:mod:`edgekd.engine`): the
            flash and RAM budgets then hold the compiled engine's sizes as linked for the board's kernels
            (:mod:`edgekd.check.compiled`: code, weights, precomputed parameters and the static activation
            buffer; no interpreter, no arena). TFLM still runs the model for the arena and the outputs.
        tflm: The TFLM source tree the compiled engine is linked against (else ``$EDGEKD_TFLM``).

    Returns:
        A :class:`CheckReport`; ``report.exit_code`` is 0 when every budget holds, and
        ``report.model`` is the model with ``arena_bytes`` (and ``emulation``) attached.

    Raises:
        TFLiteFileError: The model file is missing, not TFLite, truncated or corrupted.
        BoardError: Unknown board, or a board TFLM cannot run on (e.g. ``uno``).
        UnsupportedOpError: An op TFLM lacks, SELECT_TF_OPS, dynamic-range or uint8 I/O; with
            ``engine="compiled"``, an op the compiled engine does not run.
        InvalidArgumentError, DataError: Bad budgets or data.
        FirmwareRunError, ToolNotFoundError, BuildError: ``engine="compiled"`` without a TFLM tree or the Arm
            compiler (exit 2), or an engine that does not build.
    """
    b = _boards.get(board)
    budgets = resolve_budgets(b, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms)
    _check_options(b, max_samples, emulation)
    check_engine(engine)
    split = _as_split(data, labels)
    fmodel = _load_float_model(float_model)
    model = ConvertedModel.coerce(model_tflite, argument="model_tflite")  # read and parsed once, here
    fb = model.parsed
    if not b.tflm_supported:
        raise BoardError(f"Board {b.id!r} ({b.name}) cannot run TFLM: {b.tflm_unsupported_reason}.")
    validate_ops(fb)
    compiled = measure_compiled(model, b, tflm=tflm) if engine == "compiled" else None
    x, y = _model_data(fb, split, max_samples)
    prof = profile(model)  # per-op MACs and live activation bytes (and their peak), from the parsed model
    peak = int(prof.peak_ram_bytes)
    arena, tflm_out, inf_fail = _measure_tflm(model, b, peak, x, timeout)
    costs = costs_from_profile(prof)
    lat = estimate_board_latency(costs, b, optimized=optimized_kernels)
    host, lit, litert_failures = _run_litert(model, x, host_latency=host_latency, runs=host_latency_runs,
                                             timeout=timeout)
    total_ms = lat.total_ms or 1.0
    layers = tuple(LayerRow(c.index, c.op_name, c.output_name, c.output_shape, c.macs, ms, ms / total_ms, lv,
                            lv == peak and peak > 0) for c, ms, lv in zip(costs, lat.per_op_ms, prof.live_bytes))
    measured = arena.arena_bytes if arena.arena_bytes is not None else model.arena_bytes
    return CheckReport(
        model_path=model.provenance.get("file") or "<bytes>", model_bytes=fb.size_bytes, model_sha256=fb.sha256,
        board=b, rows=_budget_rows(budgets, b, fb, arena, peak, lat, emulation, compiled), arena=arena,
        runtime_flash_bytes=b.runtime_flash_bytes, runtime_ram_bytes=b.runtime_ram_bytes,
        profiler_peak_ram_bytes=peak, board_latency=lat, host_latency=host, layers=layers,
        accuracy=_accuracy(fb, x, y, tflm_out, lit, fmodel), notes=_notes(fb, b, arena, emulation, optimized_kernels),
        inference_failure=inf_fail, litert_failures=litert_failures, emulation=emulation,
        model=model.with_(arena_bytes=measured, emulation=emulation if emulation is not None else model.emulation),
        compiled=compiled,
    )


def _arena_row(b: _boards.Board, arena_bytes: int) -> BudgetRow:
    """The arena against what the generated project can hold in one piece on ``b`` (static, else heap)."""
    static, heap = b.static_arena_max_bytes, b.heap_arena_max_bytes
    how = (f"one block: a static array up to {static:,} B links on {b.id}; above that edgekd firmware "
           "allocates it from the heap" + (f", whose largest block is about {heap:,} B" if heap else ""))
    limit = static if heap is None else max(static or 0, heap)
    return BudgetRow("arena", None if heap is None else limit, arena_bytes, "bytes", "board", how)


def _emulation_summary(em: Any) -> Optional[dict]:
    if em is None:
        return None
    d = em.to_dict()
    d.pop("outputs", None)
    return d
