"""TFLM probes, always in a child process.

:func:`measure_arena` starts ``python -m edgekd.check._worker`` (a fresh
interpreter) which loads TFLM's Python interpreter, reads its allocation
record, bisects the smallest arena with which the model allocates and invokes
(to within 16 bytes; each probe runs in a forked grandchild so a segfault on a
too-small arena costs one fork), and optionally runs inputs through TFLM. A
crash of TFLM becomes a :class:`TFLMFailure` naming the signal, the stage and,
when it can be narrowed down, the op — never a crash of edgekd.

Host vs MCU: TFLM's persistent structures hold pointers and ``size_t`` fields,
8 bytes on this 64-bit host and 4 bytes on a 32-bit microcontroller. The
activation buffers (the arena's head) are identical, but the tail is larger
here; :func:`host_overstatement` estimates by how much from the allocation
record — an estimate, not a bound (docs/check.md compares it with the arena
the same models use on an emulated Cortex-M4F).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Optional

import numpy as np

from edgekd import _tmp
from edgekd._sandbox import failure_message, run_worker

ALIGN = 16

# Per-category share of the 64-bit allocation that is pointer/size_t padding, i.e.
# what a 32-bit MCU does not need (struct layouts of tensorflow/lite/c/common.h with
# TF_LITE_STATIC_MEMORY and of TFLM's NodeAndRegistration):
#   TfLiteEvalTensor {data*, dims*, type} 24 B -> 12 B;  NodeAndRegistration
#   {TfLiteNode (6 pointers + int), registration*} 64 B -> 32 B;  TfLiteTensor ~64 B ->
#   ~40 B;  TfLiteAffineQuantization {scale*, zero_point*, int} 24 B -> 12 B (its
#   arrays are the same size on both). Kernel op data ("Persistent buffer data") is
#   mostly int32 arrays and is counted as equal (a slight under-estimate).
_POINTER_SHARE = {
    "TfLiteEvalTensor data": 0.5,
    "NodeAndRegistration struct": 0.5,
    "Persistent TfLiteTensor data": 0.35,
    "Persistent TfLiteTensor quantization data": 0.5,
}


@dataclasses.dataclass(frozen=True)
class TFLMFailure:
    """TFLM failed (error, crash or time-out) in its child process."""

    stage: str  # "allocate" or "invoke"
    signal: Optional[str] = None  # e.g. "SIGSEGV", "SIGABRT"; None for an ordinary error
    error: Optional[str] = None
    op_index: Optional[int] = None
    op_name: Optional[str] = None
    log_tail: str = ""
    timed_out: bool = False  # the stage did not finish before its deadline (and was killed)

    @property
    def message(self) -> str:
        return failure_message("TFLM", self)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["message"] = self.message
        return d


@dataclasses.dataclass(frozen=True)
class ArenaMeasurement:
    """The TFLM tensor arena of a model, measured on this host.

    Attributes:
        arena_bytes: Smallest arena that allocates and invokes (within 16 bytes),
            or None when TFLM failed.
        record_total_bytes: TFLM's own allocation record (RecordingMicroAllocator)
            at a generous arena: total, head (activations, non-persistent) and
            tail (persistent: tensors, nodes, op data).
        categories: The record's persistent categories ``{name: {used, requested, count}}``.
        host_overstatement_bytes: Estimated bytes by which this 64-bit host's arena
            exceeds a 32-bit MCU's (pointer-sized fields of persistent structures).
        probes: TFLM probes the bisection ran.
        seconds: Wall time of the whole child-process measurement.
        failure: Set when TFLM failed or crashed.
    """

    arena_bytes: Optional[int]
    record_total_bytes: Optional[int] = None
    record_head_bytes: Optional[int] = None
    record_tail_bytes: Optional[int] = None
    categories: dict = dataclasses.field(default_factory=dict)
    host_overstatement_bytes: int = 0
    probes: int = 0
    seconds: float = 0.0
    failure: Optional[TFLMFailure] = None

    @property
    def mcu_arena_estimate_bytes(self) -> Optional[int]:
        """The arena a 32-bit MCU would need: measured arena minus the host over-statement."""
        if self.arena_bytes is None:
            return None
        return self.arena_bytes - self.host_overstatement_bytes

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["failure"] = self.failure.to_dict() if self.failure else None
        d["mcu_arena_estimate_bytes"] = self.mcu_arena_estimate_bytes
        return d


def host_overstatement(categories: dict) -> int:
    """Estimate how many arena bytes a 64-bit host needs beyond a 32-bit MCU.

    Args:
        categories: The allocation record's categories (name → {"used": bytes, ...}).

    Returns:
        Bytes, rounded up to the 16-byte alignment.
    """
    extra = sum(_POINTER_SHARE.get(name, 0.0) * c.get("used", 0) for name, c in categories.items())
    return int(-(-extra // ALIGN) * ALIGN)


def _failure(d: Optional[dict]) -> Optional[TFLMFailure]:
    if not d:
        return None
    return TFLMFailure(stage=d.get("stage", "allocate"), signal=d.get("signal"), error=d.get("error"),
                       op_index=d.get("op_index"), op_name=d.get("op_name"), log_tail=d.get("log_tail", ""),
                       timed_out=bool(d.get("timed_out")))


def default_max_arena(model_size: int, activation_bytes: int) -> int:
    """An arena surely big enough for the first probe: the sum of all activations + slack."""
    return int(max(64 * 1024, 2 * activation_bytes + model_size // 2 + 64 * 1024))


def run_tflm(
    model_bytes: bytes, *, max_arena: int, num_ops: int, inputs: Optional[np.ndarray] = None,
    timeout: float = 300.0, narrow: bool = True, bisect: bool = True,
) -> tuple[ArenaMeasurement, Optional[np.ndarray], Optional[TFLMFailure]]:
    """Measure the arena (and optionally run ``inputs``) with TFLM in a child process.

    The model must already be verified with :func:`edgekd.flatbuffer.read_tflite`.

    Args:
        model_bytes: The ``.tflite`` flatbuffer.
        max_arena: Arena of the first probe (must be large enough).
        num_ops: Operator count (to narrow a crash down to one op).
        inputs: Optional batch (N, ...) in the model's input dtype, run one by one.
        timeout: Seconds for the whole measurement; the child process and
            everything it started are killed (process group) past it. Each TFLM
            call sequence (allocate + invoke of one probe) gets a fifth of it
            at most, so a model that never finishes is reported with the stage
            it hung in, within ``timeout``.
        narrow: Bisect over model prefixes to find the op that crashes.
        bisect: Measure the arena. ``False`` when it is known already (a
            :class:`~edgekd.model.ConvertedModel`'s ``arena_bytes``): only
            ``inputs`` run, in ``max_arena`` bytes, and the measurement's
            ``arena_bytes`` is None.

    Returns:
        ``(measurement, outputs or None, inference failure or None)``; outputs
        are the raw (quantized) output tensor values, shape (N, outputs).
    """
    tmp = _tmp.mkdtemp(prefix="edgekd_check_")  # in this process's temporary folder: swept if killed
    try:
        with open(os.path.join(tmp, "model.tflite"), "wb") as f:
            f.write(bytes(model_bytes))
        with open(os.path.join(tmp, "request.json"), "w") as f:
            json.dump({"max_arena": int(max_arena), "num_ops": int(num_ops), "narrow": narrow,
                       "timeout": timeout, "bisect": bool(bisect)}, f)
        if inputs is not None:
            np.save(os.path.join(tmp, "inputs.npy"), np.ascontiguousarray(inputs))

        run = run_worker("edgekd.check._worker", tmp, timeout=timeout)
        res_path = os.path.join(tmp, "result.json")
        if run.timed_out or run.returncode != 0 or not os.path.exists(res_path):
            # The worker keeps within its budget; this is the last resort (it was killed, or it died).
            stage = {"inference": "invoke"}.get(run.stage, "allocate")
            if run.timed_out:
                f = TFLMFailure(stage=stage, timed_out=True, error=f"timed out after {timeout:.3g} s",
                                log_tail=run.stderr[-2000:])
            else:
                f = TFLMFailure(stage=stage, signal=run.signal,
                                error=None if run.signal else f"TFLM worker exited with {run.returncode}",
                                log_tail=run.stderr[-2000:])
            return ArenaMeasurement(None, failure=f), None, None
        with open(res_path) as fh:
            res = json.load(fh)
        rec = res.get("record", {}) or {}
        cats = rec.get("categories", {})
        meas = ArenaMeasurement(
            arena_bytes=res.get("arena_bytes"),
            record_total_bytes=rec.get("total"),
            record_head_bytes=rec.get("head"),
            record_tail_bytes=rec.get("tail"),
            categories=cats,
            host_overstatement_bytes=host_overstatement(cats),
            probes=int(res.get("probes", 0)),
            seconds=float(res.get("seconds", 0.0)),
            failure=_failure(res.get("failure")),
        )
        outputs = None
        out_path = os.path.join(tmp, "outputs.npy")
        if os.path.exists(out_path):
            outputs = np.load(out_path)
        return meas, outputs, _failure(res.get("inference_failure"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
