"""Child process that runs every TFLM probe (``python -m edgekd.check._worker REQUEST_DIR``).

TFLM's Python interpreter kills its process on some failures (a segfault when
the arena is too small, an abort while preparing some models), so edgekd never
loads it in its own process. This worker runs in a separate interpreter
started by :mod:`edgekd.check.tflm`, and isolates each probe once more in a
forked grandchild: a crash costs one fork (a few milliseconds), the worker
survives it, and the parent gets a JSON result with the signal and the stage.

Protocol: ``REQUEST_DIR`` holds ``model.tflite``, ``request.json`` and
optionally ``inputs.npy`` (already quantized to the input dtype). The worker
writes ``result.json`` and ``outputs.npy``. Nothing here is public API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import numpy as np

ALIGN = 16  # bisection resolution: TFLM's arena buffer alignment (MicroArenaBufferAlignment)


def _runtime():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def _in_fork(fn: Callable[[], Any], *, log_path: Optional[str] = None, timeout: float = 60.0) -> dict:
    """Run ``fn`` in a forked grandchild; return {ok, value|error|signal, log}.

    ``fn``'s return value must be JSON-serialisable; it travels through a pipe.
    The child's stdout/stderr (TFLM logs there) go to ``log_path``.
    """
    r, w = os.pipe()
    log_fd, own_log = None, False
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="edgekd_tflm_", suffix=".log")
        os.close(fd)
        own_log = True
    pid = os.fork()
    if pid == 0:  # grandchild
        os.close(r)
        try:
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            try:
                value = fn()
                payload = {"ok": True, "value": value}
            except Exception as e:  # TFLM raises RuntimeError on ordinary failures
                payload = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            sys.stdout.flush()
            sys.stderr.flush()
            data = json.dumps(payload).encode()
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(r, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        else:
            time.sleep(0.001)
    try:
        with open(log_path, "r", errors="replace") as f:
            log = f.read()[-20000:]
    except OSError:
        log = ""
    if own_log:
        os.unlink(log_path)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"ok": False, "signal": signal.Signals(sig).name, "log": log}
    data = b"".join(chunks)
    if not data:
        return {"ok": False, "error": f"probe exited with status {os.WEXITSTATUS(status)} and no result",
                "log": log}
    out = json.loads(data)
    out["log"] = log
    return out


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


def _allocate_and_invoke(model: bytes, arena: int, *, record: bool = False) -> dict:
    rt = _runtime()
    interp = rt.Interpreter.from_bytes(model, arena_size=int(arena))
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


def _prefix_model(model: bytes, k: int) -> bytes:
    """The model cut after its first ``k`` operators (outputs = op k-1's outputs)."""
    import flatbuffers

    schema = _runtime().schema_fb
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    g = m.subgraphs[0]
    g.operators = g.operators[:k]
    g.outputs = list(g.operators[-1].outputs)
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _narrow_crash(model: bytes, arena: int, n_ops: int) -> Optional[int]:
    """Index of the first op whose prefix model crashes or fails, by bisection over prefixes."""
    lo, hi = 0, n_ops  # prefix of lo ops is fine (0 = trivially), prefix of hi ops fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            sub = _prefix_model(model, mid)
        except Exception:
            return None
        res = _in_fork(lambda: _allocate_and_invoke(sub, arena))
        if res["ok"]:
            lo = mid
        else:
            hi = mid
    return hi - 1


def _failure(res: dict, stage: str, model: bytes, arena: int, n_ops: int, narrow: bool) -> dict:
    log = res.get("log", "")
    out = {"stage": stage, "signal": res.get("signal"), "error": res.get("error"), "log_tail": log[-2000:]}
    m = _NODE_RE.search(log)
    if m:
        out["op_index"] = int(m.group(2))
        out["op_name"] = m.group(1)
        out["stage"] = "allocate" if m.group(3) == "prepare" else m.group(3)
    elif narrow and n_ops > 0:
        idx = _narrow_crash(model, arena, n_ops)
        if idx is not None:
            out["op_index"] = idx
    if "Didn't find op for builtin opcode" in log or "Failed to get registration" in log:
        mm = re.search(r"Didn't find op for builtin opcode '([^']+)'", log)
        out["missing_op"] = mm.group(1) if mm else None
    return out


def _stage_of(model: bytes, arena: int) -> dict:
    """Tell allocate from invoke: run allocation alone in a fork."""
    rt = _runtime()
    return _in_fork(lambda: (rt.Interpreter.from_bytes(model, arena_size=int(arena)), {"arena": arena})[1])


def _bisect(model: bytes, lo: int, hi: int) -> tuple[int, int]:
    """Smallest arena in (lo, hi] that allocates and invokes, to within ALIGN bytes."""
    probes = 0
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2
        probes += 1
        if _in_fork(lambda: _allocate_and_invoke(model, mid))["ok"]:
            hi = mid
        else:
            lo = mid
    return hi, probes


def _run_inputs(model: bytes, arena: int, inputs: np.ndarray, out_path: str) -> dict:
    rt = _runtime()
    interp = rt.Interpreter.from_bytes(model, arena_size=int(arena))
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
    t0 = time.perf_counter()
    result: dict[str, Any] = {"ok": False}
    # 1) generous arena: does it allocate (prepare) and invoke at all? Allocation record.
    first = _in_fork(lambda: _allocate_and_invoke(model, max_arena, record=True))
    if not first["ok"]:
        alloc = _stage_of(model, max_arena)
        stage = "allocate" if not alloc["ok"] else "invoke"
        result["failure"] = _failure(alloc if not alloc["ok"] else first, stage, model, max_arena, n_ops,
                                     bool(req.get("narrow", True)))
        result["max_arena"] = max_arena
    else:
        rec = parse_allocations(first["log"])
        result["record"] = rec
        # 2) bisection, bracketed by the record (the arena cannot be smaller than the record's head)
        total = rec.get("total")
        lo = 0
        hi = max_arena
        if total:
            lo_guess = max(0, total - 4 * ALIGN * 8)
            hi_guess = total + 1024
            if _in_fork(lambda: _allocate_and_invoke(model, hi_guess))["ok"]:
                hi = hi_guess
            if not _in_fork(lambda: _allocate_and_invoke(model, lo_guess))["ok"]:
                lo = lo_guess
        arena, probes = _bisect(model, lo, hi)
        result.update(ok=True, arena_bytes=arena, probes=probes + 3)
        # 3) inference on the given inputs
        inp = os.path.join(req_dir, "inputs.npy")
        if os.path.exists(inp):
            xs = np.load(inp)
            res = _in_fork(lambda: _run_inputs(model, arena + 1024, xs, os.path.join(req_dir, "outputs.npy")),
                           timeout=float(req.get("timeout", 300)))
            if not res["ok"]:
                result["inference_failure"] = _failure(res, "invoke", model, arena + 1024, n_ops, False)
    result["seconds"] = time.perf_counter() - t0
    with open(os.path.join(req_dir, "result.json"), "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
