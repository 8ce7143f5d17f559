"""Child process that runs every TFLM probe (``python -m edgekd.check._worker REQUEST_DIR``).

TFLM's Python interpreter kills its process on some failures (a segfault when
the arena is too small, an abort while preparing some models), so edgekd never
loads it in its own process. This worker runs in a separate interpreter
started by :mod:`edgekd.check.tflm`, and isolates each probe once more in a
forked grandchild: a crash costs one fork (a few milliseconds), the worker
survives it, and the parent gets a JSON result with the signal and the stage.
Every probe has a deadline (:func:`edgekd._sandbox.in_fork`): a model that
loops forever (a WHILE that never ends) is killed and reported with the stage
it hung in, and the whole measurement stays within the request's ``timeout``.
The grandchild's output (TFLM's log) comes back through a pipe: no log file.

Protocol: ``REQUEST_DIR`` holds ``model.tflite``, ``request.json`` and
optionally ``inputs.npy`` (already quantized to the input dtype). The worker
writes ``result.json`` and ``outputs.npy``. Nothing here is public API.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

from edgekd._sandbox import announce, in_fork, narrow_to_op

ALIGN = 16  # bisection resolution: TFLM's arena buffer alignment (MicroArenaBufferAlignment)


def _runtime():
    from tflite_micro.python.tflite_micro import runtime  # TFLM's native interpreter: loaded on first use

    return runtime


def _in_fork(fn: Callable[[Callable[[str], None]], Any], *, timeout: float = 60.0) -> dict:
    """Run ``fn(stage)`` in a forked grandchild with a deadline; see :func:`edgekd._sandbox.in_fork`."""
    return in_fork(fn, timeout=timeout)


def _zeros_inputs(interp) -> list:
    xs = []
    k = 0
    while True:
        try:
            d = interp.get_input_details(k)
        except Exception:
            break
        xs.append(np.zeros(tuple(int(s) for s in d["shape"]), dtype=d["dtype"]))
        k += 1
    return xs


def _allocate_and_invoke(model: bytes, arena: int, stage: Callable[[str], None], *, record: bool = False) -> dict:
    rt = _runtime()
    stage("allocate")
    interp = rt.Interpreter.from_bytes(model, arena_size=int(arena))
    stage("invoke")
    for k, x in enumerate(_zeros_inputs(interp)):
        interp.set_input(x, k)
    interp.invoke()
    if record:
        sys.stdout.flush()
        interp.print_allocations()
    return {"arena": int(arena)}


_NODE_RE = re.compile(r"Node (\S+) \(number (\d+)f?\) failed to (\w+)")


def parse_allocations(log: str) -> dict:
    """Parse RecordingMicroAllocator's report into numbers."""
    rec: dict[str, Any] = {"categories": {}}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", log)
        if m:
            rec[key] = int(m.group(1))
    pattern = r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)"
    for m in re.finditer(pattern, log):
        rec["categories"][m.group(1)] = {"used": int(m.group(2)), "requested": int(m.group(3)),
                                         "count": int(m.group(4))}
    return rec


class _Clock:
    """The worker's time budget: every probe gets ``probe`` seconds at most, all of them ``total``."""

    def __init__(self, total: float, probe: float) -> None:
        self.deadline = time.monotonic() + max(1.0, total - 1.0)  # leave the parent a second to read results
        self.probe = max(0.05, probe)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, cap: Optional[float] = None) -> float:
        return max(0.05, min(self.probe if cap is None else cap, self.left()))


def _failure(res: dict, model: bytes, arena: int, n_ops: int, narrow: bool, clock: _Clock) -> dict:
    log = res.get("log", "")
    out = {"stage": res.get("stage", "allocate"), "signal": res.get("signal"), "error": res.get("error"),
           "timed_out": bool(res.get("timed_out")), "log_tail": log[-2000:]}
    if out["stage"] not in ("allocate", "invoke"):
        out["stage"] = "allocate"
    m = _NODE_RE.search(log)
    if m:
        out["op_index"] = int(m.group(2))
        out["op_name"] = m.group(1)
        out["stage"] = "allocate" if m.group(3) == "prepare" else m.group(3)
    elif narrow and n_ops > 0:
        # The first prefix of the model that fails. After a hang, each probe gets a share of what is left.
        steps = max(1, (n_ops - 1).bit_length())
        cap = clock.probe if not out["timed_out"] else max(0.5, clock.left() / (steps + 1))

        def fails(sub: bytes) -> Optional[bool]:
            if clock.left() < 0.2:
                return None
            return not _in_fork(lambda st: _allocate_and_invoke(sub, arena, st), timeout=clock.limit(cap))["ok"]

        idx = narrow_to_op(model, n_ops, fails)
        if idx is not None:
            out["op_index"] = idx
    if "Didn't find op for builtin opcode" in log or "Failed to get registration" in log:
        mm = re.search(r"Didn't find op for builtin opcode '([^']+)'", log)
        out["missing_op"] = mm.group(1) if mm else None
    return out


def _bisect(model: bytes, lo: int, hi: int, clock: _Clock) -> tuple[int, int]:
    """Smallest arena in (lo, hi] that allocates and invokes, to within ALIGN bytes."""
    probes = 0
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2
        probes += 1
        res = _in_fork(lambda st: _allocate_and_invoke(model, mid, st), timeout=clock.limit())
        if res["ok"]:
            hi = mid
        elif res.get("timed_out"):  # out of time, not a too-small arena: keep hi, which is known to work
            break
        else:
            lo = mid
    return hi, probes


def _run_inputs(model: bytes, arena: int, inputs: np.ndarray, out_path: str, stage: Callable[[str], None]) -> dict:
    rt = _runtime()
    stage("allocate")
    interp = rt.Interpreter.from_bytes(model, arena_size=int(arena))
    stage("invoke")
    outs = []
    for x in inputs:
        interp.set_input(x[None, ...], 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    np.save(out_path, np.stack(outs))
    return {"n": len(outs)}


def main(req_dir: str) -> int:
    with open(os.path.join(req_dir, "request.json")) as f:
        req = json.load(f)
    with open(os.path.join(req_dir, "model.tflite"), "rb") as f:
        model = f.read()
    n_ops = int(req.get("num_ops", 0))
    max_arena = int(req["max_arena"])
    total = float(req.get("timeout", 300))
    clock = _Clock(total, float(req.get("probe_timeout", total / 5)))
    narrow = bool(req.get("narrow", True))
    t0 = time.perf_counter()
    _runtime()  # import TFLM once here (loading it runs no interpreter); every probe forks from this process
    result: dict[str, Any] = {"ok": False}
    if req.get("bisect", True) is False:  # the arena is known (edgekd check measured it): the outputs only
        result.update(ok=True, arena_bytes=None, probes=0)
        _infer(req_dir, model, max_arena - 1024, n_ops, clock, result)
        return _finish(req_dir, result, t0)
    # 1) generous arena: does it allocate (prepare) and invoke at all? Allocation record.
    announce("measure")
    first = _in_fork(lambda st: _allocate_and_invoke(model, max_arena, st, record=True), timeout=clock.limit())
    if not first["ok"]:
        announce("narrow")
        result["failure"] = _failure(first, model, max_arena, n_ops, narrow, clock)
        result["max_arena"] = max_arena
    else:
        rec = parse_allocations(first["log"])
        result["record"] = rec
        # 2) bisection, bracketed by the record (the arena cannot be smaller than the record's head)
        announce("bisect")
        total_rec = rec.get("total")
        lo = 0
        hi = max_arena
        if total_rec:
            lo_guess = max(0, total_rec - 4 * ALIGN * 8)
            hi_guess = total_rec + 1024
            if _in_fork(lambda st: _allocate_and_invoke(model, hi_guess, st), timeout=clock.limit())["ok"]:
                hi = hi_guess
            if not _in_fork(lambda st: _allocate_and_invoke(model, lo_guess, st), timeout=clock.limit())["ok"]:
                lo = lo_guess
        arena, probes = _bisect(model, lo, hi, clock)
        result.update(ok=True, arena_bytes=arena, probes=probes + 3)
        _infer(req_dir, model, arena, n_ops, clock, result)
    return _finish(req_dir, result, t0)


def _infer(req_dir: str, model: bytes, arena: int, n_ops: int, clock: _Clock, result: dict) -> None:
    """3) inference on the given inputs (if any), with ``arena`` + 1024 bytes: what is left of the budget."""
    inp = os.path.join(req_dir, "inputs.npy")
    if os.path.exists(inp):
        announce("inference")
        xs = np.load(inp)
        res = _in_fork(lambda st: _run_inputs(model, arena + 1024, xs, os.path.join(req_dir, "outputs.npy"), st),
                       timeout=max(0.05, clock.left()))
        if not res["ok"]:
            result["inference_failure"] = _failure(res, model, arena + 1024, n_ops, False, clock)


def _finish(req_dir: str, result: dict, t0: float) -> int:
    result["seconds"] = time.perf_counter() - t0
    with open(os.path.join(req_dir, "result.json"), "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
