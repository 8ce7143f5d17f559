"""Child process that runs LiteRT on a model (``python -m edgekd.convert._litert_worker REQUEST_DIR``).

LiteRT segfaults on some malformed models (a SPLIT whose ``num_splits``
disagrees with its outputs under the XNNPACK delegate, a RESHAPE whose shape
input is omitted) and loops forever on others (a WHILE that never ends), so
edgekd never runs it in its own process. :func:`edgekd.convert.runtime.run_litert`
starts this worker in its own process group; each job runs once more in a
forked grandchild with a deadline (:func:`edgekd._sandbox.in_fork`), which
announces its stage (``load``, ``allocate``, ``invoke``) so a crash or a hang is
attributed to the call it happened in. A crash is narrowed down to an op: from
LiteRT's message when it names the node, otherwise by bisecting over prefixes
of the model.

Protocol: ``REQUEST_DIR`` holds ``model.tflite``, ``request.json`` (``jobs``,
``timeout``, ``num_ops``, ``narrow``) and each job's ``inputs`` file; the worker
writes each job's ``out`` file and ``result.json`` (one entry per job). LiteRT's
own output (the XNNPACK banner among it) stays in the worker. Nothing here is
public API.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

from edgekd._sandbox import announce, in_fork, narrow_to_op
from edgekd.convert.runtime import interpreter_class, new_interpreter, run_batch

_NODE_RE = re.compile(r"Node number (\d+) \(([^)]+)\) failed to (\w+)")
_DELEGATE_RE = re.compile(r"delegate", re.IGNORECASE)


def _interpreter(model: bytes, kernels: str, num_threads: int, stage: Callable[[str], None]) -> Any:
    return new_interpreter(model, kernels=kernels, num_threads=num_threads, stage=stage)


def _set_inputs(interp: Any, x: Optional[np.ndarray] = None) -> None:
    for k, d in enumerate(interp.get_input_details()):
        shape = tuple(int(s) for s in d["shape"])
        if x is not None and k == 0:
            val = np.asarray(x, dtype=d["dtype"]).reshape(shape)
        else:
            val = np.zeros(shape, dtype=d["dtype"])
        interp.set_tensor(d["index"], val)


def _vet(model: bytes, job: dict, stage: Callable[[str], None]) -> dict:
    interp = _interpreter(model, job.get("kernels", "default"), job.get("num_threads", 1), stage)
    stage("invoke")
    _set_inputs(interp)
    interp.invoke()
    return {}


def _latency(model: bytes, job: dict, stage: Callable[[str], None], req_dir: str) -> dict:
    interp = _interpreter(model, job.get("kernels", "default"), job.get("num_threads", 1), stage)
    stage("invoke")
    _set_inputs(interp, np.load(os.path.join(req_dir, job["inputs"]))[0] if job.get("inputs") else None)
    warmup, runs, max_seconds = int(job.get("warmup", 5)), int(job.get("runs", 50)), float(job.get("max_seconds", 3))
    for _ in range(warmup):
        interp.invoke()
    times = []
    t_end = time.perf_counter() + max_seconds
    for i in range(max(1, runs)):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
        if i >= 4 and time.perf_counter() > t_end:
            break
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return {"median_ms": float(statistics.median(times)), "p90_ms": float(p90), "runs": len(times),
            "warmup": warmup}


def _outputs(model: bytes, job: dict, stage: Callable[[str], None], req_dir: str) -> dict:
    """Run each input through output 0: raw values (``mode=raw``) or as :func:`predict` (``mode=predict``)."""
    xs = np.load(os.path.join(req_dir, job["inputs"]))
    interp = _interpreter(model, job.get("kernels", "default"), job.get("num_threads", 1), stage)
    stage("invoke")
    if xs.shape[0] == 0:
        raise ValueError("no inputs")
    y = run_batch(interp, xs, raw=job.get("mode") != "predict", dequantize_output=job.get("dequantize", True))
    np.save(os.path.join(req_dir, job["out"]), y)
    return {"n": int(y.shape[0])}


def _failure(res: dict, model: bytes, job: dict, n_ops: int, narrow: bool, deadline: float) -> dict:
    log = res.get("log", "")
    out = {"stage": res.get("stage", "load"), "signal": res.get("signal"), "error": res.get("error"),
           "timed_out": bool(res.get("timed_out")), "log_tail": log[-2000:]}
    if out["stage"] == "start":
        out["stage"] = "load"
    text = f"{out['error'] or ''}\n{log}"
    m = _NODE_RE.search(text)
    if m and not _DELEGATE_RE.search(m.group(2)):
        out["op_index"], out["op_name"] = int(m.group(1)), m.group(2)
    elif n_ops == 1:
        out["op_index"] = 0
    elif narrow and n_ops > 1 and not out["timed_out"] and (out["signal"] or m):
        def fails(sub: bytes) -> Optional[bool]:
            left = deadline - time.monotonic()
            if left < 0.2:
                return None
            return not in_fork(lambda st: _vet(sub, job, st), timeout=min(left, 30.0))["ok"]

        idx = narrow_to_op(model, n_ops, fails)
        if idx is not None:
            out["op_index"] = idx
    return out


def main(req_dir: str) -> int:
    with open(os.path.join(req_dir, "request.json")) as f:
        req = json.load(f)
    with open(os.path.join(req_dir, "model.tflite"), "rb") as f:
        model = f.read()
    jobs = list(req["jobs"])
    n_ops = int(req.get("num_ops", 0))
    deadline = time.monotonic() + max(0.5, float(req.get("timeout", 120)) - 1.0)

    interpreter_class()  # import LiteRT once here (it runs nothing); every job forks from this process
    results = []
    for k, job in enumerate(jobs):
        announce(f"{job['kind']}")
        left = deadline - time.monotonic()
        limit = max(0.05, min(left / (len(jobs) - k), job.get("timeout") or float("inf")))
        kind = job["kind"]
        if kind == "latency":
            res = in_fork(lambda st: _latency(model, job, st, req_dir), timeout=limit)
        elif kind == "outputs":
            res = in_fork(lambda st: _outputs(model, job, st, req_dir), timeout=limit)
        else:
            res = in_fork(lambda st: _vet(model, job, st), timeout=limit)
        if res["ok"]:
            results.append({"ok": True, "value": res["value"], "seconds": res["seconds"]})
        else:
            job_deadline = min(deadline, time.monotonic() + limit)
            results.append({"ok": False, "failure": _failure(res, model, job, n_ops, bool(req.get("narrow", True)),
                                                             job_deadline)})
    with open(os.path.join(req_dir, "result.json"), "w") as f:
        json.dump({"jobs": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
