"""The host interpreter: LiteRT (``ai-edge-litert``), with fallbacks.

LiteRT is the maintained successor of ``tflite-runtime`` (last released as
2.14 in 2023). When it is missing, ``tflite_runtime`` and then ``tf.lite``
are used, in that order.

A model file is untrusted input and LiteRT can crash or hang on a malformed
one, so LiteRT never reads a model inside edgekd's process first:
:func:`run_litert` runs it in a child process (its own process group, a
deadline on every job; see :mod:`edgekd.convert._litert_worker`), and
:func:`predict` goes through it. A failure there becomes a
:class:`LiteRTFailure` naming the stage (load, allocate, invoke) and, when it
can be found, the op; :func:`predict` and :func:`make_interpreter` raise it as
:class:`~edgekd.errors.LiteRTError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgekd._io import quiet_native_output
from edgekd.errors import DataError, LiteRTError, invalid_value
from edgekd.model import ConvertedModel, dequantize, quantize  # the one quantizer, re-exported here
from edgekd import _tmp
from edgekd._sandbox import failure_message, run_worker

KERNELS = {"default": "XNNPACK delegate", "builtin": "builtin kernels"}
# The kernels every output of edgekd's LiteRT runs comes from (export's accuracy gate, check's accuracy and
# parity, predict, firmware's host predictions): the reference kernels TFLM mirrors. XNNPACK rounds int8
# differently (an output step off here and there); it only times the host (check's host latency).
OUTPUT_KERNELS = "builtin"


def interpreter_class() -> tuple[type, str]:
    """The interpreter class to use and the name of the package providing it."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # LiteRT: a native runtime, loaded on first use

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:  # pragma: no cover - depends on the environment
        from tflite_runtime.interpreter import Interpreter  # LiteRT's older wheel, when installed: loaded on first use

        return Interpreter, "tflite-runtime"
    except ImportError:  # pragma: no cover
        import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

        return tf.lite.Interpreter, "tensorflow"


def new_interpreter(model: bytes, *, kernels: str = OUTPUT_KERNELS, num_threads: int = 1,
                    stage: Optional[Callable[[str], None]] = None) -> Any:
    """A LiteRT interpreter for ``model`` with tensors allocated, as every edgekd LiteRT run makes it.

    Runs LiteRT in the calling process: edgekd calls it in its worker
    (:mod:`edgekd.convert._litert_worker`) or after the worker vetted the
    model (:func:`make_interpreter`).

    Args:
        model: The ``.tflite`` flatbuffer.
        kernels: ``"builtin"`` (reference kernels, no default delegate) or
            ``"default"`` (LiteRT's default delegate, XNNPACK).
        num_threads: LiteRT threads.
        stage: Called with ``"load"`` and ``"allocate"`` before each step.
    """
    cls, _ = interpreter_class()
    kwargs: dict[str, Any] = {}
    if kernels == "builtin":  # no default delegate (XNNPACK): the reference kernels TFLM mirrors
        kwargs["experimental_op_resolver_type"] = sys.modules[cls.__module__].OpResolverType \
            .BUILTIN_WITHOUT_DEFAULT_DELEGATES
    (stage or _no_stage)("load")
    interp = cls(model_content=bytes(model), num_threads=int(num_threads), **kwargs)
    (stage or _no_stage)("allocate")
    interp.allocate_tensors()
    return interp


def _no_stage(name: str) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class LiteRTJob:
    """One thing to do with LiteRT in the child process.

    Attributes:
        kind: ``"vet"`` (allocate and invoke once on zeros), ``"latency"``
            (median/p90 of timed ``invoke()`` calls after warm-up) or
            ``"outputs"`` (run ``inputs`` one by one through output 0).
        kernels: ``"default"`` (LiteRT's default delegate, XNNPACK) or
            ``"builtin"`` (reference kernels, no delegate). Outputs come from
            :func:`outputs_job` (:data:`OUTPUT_KERNELS`).
        inputs: For ``outputs``: the batch ``(N, ...)``.
        mode: For ``outputs``: ``"raw"`` (inputs already in the input dtype,
            raw outputs flattened per example) or ``"predict"`` (float inputs
            quantized, outputs dequantized as :func:`predict`).
        dequantize: For ``predict`` mode: dequantize integer outputs.
        num_threads: LiteRT threads.
        runs, warmup, max_seconds: For ``latency``.
        task: What the job is for, in messages (e.g. "host latency").
        timeout: Seconds this job may take at most (None: its share of the
            call's ``timeout``).
    """

    kind: str
    kernels: str = "default"
    inputs: Optional[np.ndarray] = None
    mode: str = "raw"
    dequantize: bool = True
    num_threads: int = 1
    runs: int = 50
    warmup: int = 5
    max_seconds: float = 3.0
    task: str = ""
    timeout: Optional[float] = None


def outputs_job(x: np.ndarray, *, dequantize: bool = True, num_threads: int = 1,
                task: str = "predict") -> LiteRTJob:
    """The one way edgekd runs a batch through LiteRT for outputs (and accuracy).

    Float inputs are quantized in the worker with :func:`edgekd.model.quantize`
    (TFLite's rounding, as TFLM's inputs and the firmware's), run on
    :data:`OUTPUT_KERNELS`, and the outputs are dequantized when
    ``dequantize``. :func:`predict` (export's accuracy gate) and
    :func:`edgekd.check.check` (accuracy and TFLM parity) both run this job, so
    they measure int8 accuracy the same way.
    """
    return LiteRTJob("outputs", kernels=OUTPUT_KERNELS, inputs=x, mode="predict", dequantize=dequantize,
                     num_threads=num_threads, task=task)


@dataclasses.dataclass(frozen=True)
class LiteRTFailure:
    """LiteRT failed (error, crash or time-out) on a model, in its child process."""

    task: str  # what the run was for, e.g. "host latency"
    kernels: str  # "XNNPACK delegate" or "builtin kernels"
    stage: str  # "load", "allocate" or "invoke"
    signal: Optional[str] = None
    error: Optional[str] = None
    timed_out: bool = False
    op_index: Optional[int] = None
    op_name: Optional[str] = None
    log_tail: str = ""

    @property
    def message(self) -> str:
        return f"{failure_message('LiteRT', self)} ({', '.join(x for x in (self.task, self.kernels) if x)})"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["message"] = self.message
        return d


@dataclasses.dataclass(frozen=True)
class LiteRTResult:
    """The outcome of one :class:`LiteRTJob`: a value or a failure."""

    value: Any = None  # outputs (np.ndarray) for "outputs", a dict for "latency", {} for "vet"
    failure: Optional[LiteRTFailure] = None
    seconds: float = 0.0


def run_litert(model_bytes: bytes, jobs: Sequence[LiteRTJob], *, timeout: float = 120.0,
               narrow: bool = True) -> list[LiteRTResult]:
    """Run LiteRT jobs on a model in a child process; a crash or hang there is a result, not edgekd's end.

    The model is verified first (:func:`edgekd.flatbuffer.read_tflite`). The
    child runs in its own process group, each job in a forked grandchild with
    its share of ``timeout``; past the deadline everything is killed.

    Args:
        model_bytes: The ``.tflite`` flatbuffer.
        jobs: What to run, in order.
        timeout: Seconds for all jobs together.
        narrow: Narrow a crash down to an op (bisection over model prefixes).

    Returns:
        One :class:`LiteRTResult` per job.

    Raises:
        TFLiteFileError: The model is not a valid TFLite flatbuffer.
    """
    fb = ConvertedModel.coerce(model_bytes).parsed  # a ConvertedModel's flatbuffer is parsed once, for all runs
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise invalid_value("timeout", "a positive number of seconds", timeout)
    tmp = _tmp.mkdtemp(prefix="edgekd_litert_")
    try:
        with open(os.path.join(tmp, "model.tflite"), "wb") as f:
            f.write(bytes(model_bytes))
        specs = []
        for k, job in enumerate(jobs):
            spec = {"kind": job.kind, "kernels": job.kernels, "mode": job.mode, "dequantize": job.dequantize,
                    "num_threads": int(job.num_threads), "runs": int(job.runs), "warmup": int(job.warmup),
                    "max_seconds": float(job.max_seconds), "out": f"out{k}.npy",
                    "timeout": None if job.timeout is None else float(job.timeout)}
            if job.inputs is not None:
                spec["inputs"] = f"in{k}.npy"
                np.save(os.path.join(tmp, spec["inputs"]), np.ascontiguousarray(job.inputs))
            specs.append(spec)
        with open(os.path.join(tmp, "request.json"), "w") as f:
            json.dump({"jobs": specs, "timeout": float(timeout), "num_ops": len(fb.operators), "narrow": narrow}, f)
        run = run_worker("edgekd.convert._litert_worker", tmp, timeout=float(timeout) + 10.0)
        res_path = os.path.join(tmp, "result.json")
        if run.timed_out or run.returncode != 0 or not os.path.exists(res_path):
            # the worker keeps within its budget; this is the last resort (killed, or it died)
            failure = LiteRTFailure(
                task="", kernels="", stage="load", signal=run.signal, timed_out=run.timed_out,
                error=f"timed out after {timeout:.3g} s" if run.timed_out
                else None if run.signal else f"the LiteRT worker exited with {run.returncode}",
                log_tail=run.stderr[-2000:])
            return [LiteRTResult(failure=dataclasses.replace(failure, task=j.task or j.kind,
                                                             kernels=KERNELS.get(j.kernels, j.kernels)))
                    for j in jobs]
        with open(res_path) as f:
            raw = json.load(f)["jobs"]
        results = []
        for k, (job, r) in enumerate(zip(jobs, raw)):
            task, kernels = job.task or job.kind, KERNELS.get(job.kernels, job.kernels)
            if not r.get("ok"):
                d = r["failure"]
                results.append(LiteRTResult(failure=LiteRTFailure(
                    task=task, kernels=kernels, stage=d.get("stage", "load"), signal=d.get("signal"),
                    error=d.get("error"), timed_out=bool(d.get("timed_out")), op_index=d.get("op_index"),
                    op_name=d.get("op_name") or _op_name(fb, d.get("op_index")), log_tail=d.get("log_tail", ""))))
                continue
            value = r.get("value")
            if job.kind == "outputs":
                value = np.load(os.path.join(tmp, specs[k]["out"]))
            results.append(LiteRTResult(value=value, seconds=float(r.get("seconds", 0.0))))
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _op_name(fb: Any, index: Optional[int]) -> Optional[str]:
    if index is None or not 0 <= index < len(fb.operators):
        return None
    return fb.operators[index].op_name


def make_interpreter(model_bytes: bytes, *, num_threads: int = 1, timeout: float = 120.0) -> Any:
    """A LiteRT interpreter with tensors allocated, in this process.

    The flatbuffer is verified first (:func:`edgekd.flatbuffer.read_tflite`),
    so a corrupt file raises ``TFLiteFileError``; then LiteRT allocates and
    invokes the model once in a child process (:func:`run_litert`), so a model
    that crashes or hangs LiteRT raises :class:`~edgekd.errors.LiteRTError`
    instead of taking this process down. Only then is it loaded here, with
    the kernels of every edgekd output run (:data:`OUTPUT_KERNELS`).

    Raises:
        TFLiteFileError: The model is not a valid TFLite flatbuffer.
        LiteRTError: LiteRT fails, crashes or hangs on the model.
    """
    (vet,) = run_litert(model_bytes, [LiteRTJob("vet", kernels=OUTPUT_KERNELS, num_threads=num_threads,
                                                task="loading")], timeout=timeout)
    if vet.failure is not None:
        raise litert_error(vet.failure)
    with quiet_native_output():
        return new_interpreter(model_bytes, num_threads=num_threads)


def litert_error(failure: LiteRTFailure) -> LiteRTError:
    """The typed error (exit status 1) for a LiteRT failure: the message names the stage and op."""
    return LiteRTError(f"{failure.message}. The model is malformed or uses something LiteRT cannot run: "
                       "re-export it (edgekd export), or see what TFLM makes of it with `edgekd check`.")


def predict(
    model_bytes: bytes,
    x: np.ndarray,
    *,
    dequantize_output: bool = True,
    num_threads: int = 1,
    interpreter: Optional[Any] = None,
    timeout: float = 300.0,
) -> np.ndarray:
    """Run a single-input TFLite model on a batch, one example at a time.

    Inputs are float; for an int8/uint8 input tensor they are quantized with
    the tensor's scale and zero point. Outputs are dequantized to float unless
    ``dequantize_output=False``. Without ``interpreter`` LiteRT runs in a child
    process (:func:`run_litert`): a crash or hang there raises
    :class:`~edgekd.errors.LiteRTError`.

    Args:
        model_bytes: The ``.tflite`` flatbuffer.
        x: Inputs of shape ``(N, *input_shape)``.
        dequantize_output: Return real values rather than raw quantized ones.
        num_threads: LiteRT threads.
        interpreter: An interpreter already made for ``model_bytes`` with
            :func:`make_interpreter` (reused, in this process).
        timeout: Seconds allowed for the child process.

    Returns:
        Outputs of shape ``(N, *output_shape[1:])``.

    Raises:
        DataError: ``x`` does not match the model's input shape.
        TFLiteFileError: The model is not a valid TFLite flatbuffer.
        LiteRTError: LiteRT fails, crashes or hangs on the model.
    """
    x = np.asarray(x)
    if interpreter is None:
        model_bytes = ConvertedModel.coerce(model_bytes)
        fb = model_bytes.parsed
        if len(fb.inputs) < 1 or len(fb.outputs) < 1:
            raise DataError(f"The model has {len(fb.inputs)} inputs and {len(fb.outputs)} outputs; predict needs "
                            "at least one of each. Pass a model with an input and an output.")
        want = tuple(int(d) for d in fb.input_tensors[0].shape[1:])
    else:
        want = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:])
    if tuple(x.shape[1:]) != want:
        raise DataError(
            f"Inputs have shape {tuple(x.shape[1:])} per example but the model expects {want}. "
            "Reshape the data to the model's input shape."
        )
    if interpreter is not None:
        return run_batch(interpreter, x, dequantize_output=dequantize_output)
    if x.shape[0] == 0:
        return np.zeros((0, *(int(d) for d in fb.output_tensors[0].shape[1:])), np.float32)
    (res,) = run_litert(model_bytes, [outputs_job(x, dequantize=dequantize_output, num_threads=num_threads)],
                        timeout=timeout)
    if res.failure is not None:
        raise litert_error(res.failure)
    return res.value


def run_batch(interp: Any, x: np.ndarray, *, raw: bool = False, dequantize_output: bool = True) -> np.ndarray:
    """Run each example of ``x`` through input 0 and output 0 of an allocated interpreter.

    Args:
        interp: A LiteRT interpreter with tensors allocated.
        x: The batch ``(N, *input_shape)``.
        raw: Inputs already in the input dtype, outputs returned raw and
            flattened ``(N, outputs)``; otherwise float inputs are quantized
            for an integer input and outputs are ``(N, *output_shape[1:])``.
        dequantize_output: Without ``raw``: dequantize integer outputs.
    """
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    quantize_in = not raw and np.dtype(inp["dtype"]).kind in "iu"
    shape = tuple(int(d) for d in inp["shape"])
    results = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        xi = quantize(xi, in_scale, in_zp, inp["dtype"]) if quantize_in else np.asarray(xi).astype(inp["dtype"])
        interp.set_tensor(inp["index"], xi.reshape(shape))
        interp.invoke()
        y = np.array(interp.get_tensor(out["index"]))
        results.append(y.reshape(-1) if raw else y[0].copy())
    y = np.stack(results)
    if not raw and dequantize_output and np.dtype(out["dtype"]).kind in "iu" and out_scale:
        y = dequantize(y, out_scale, out_zp)
    return y
