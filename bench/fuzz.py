"""Fuzz edgekd with mutated ``.tflite`` files: no signal, no hang, no traceback, ever.

    python bench/fuzz.py --mutants 10000 --jobs 2 [--out build/fuzz] [--cli-every 33] [--seed 0]

Every mutant of three small seed models (an int8 CNN, an int8 SPLIT/RESHAPE
model, a float WHILE loop) goes through the in-process API of ``profile``,
``check``, ``export`` (the C arrays of a ``.tflite``) and ``firmware``
(``render``), in worker processes (a signal there is edgekd's process dying);
every ``--cli-every``-th mutant also through the four CLI verbs. Each outcome is
one of: ``ok``, ``report`` (check's exit 1: a budget, or a clean TFLM/LiteRT
failure report), ``typed`` (an :class:`~edgekd.errors.EdgeKDError`: exit 2, or 1
for an interpreter failure), or bad: ``traceback``, ``signal``, ``hang``.

Mutations (families): ``byte`` (1–8 random bytes), ``bit`` (1–4 bit flips),
``truncate`` (cut, or garbage appended), ``garbage`` (random bytes, half with a
valid header), and structural edits aimed with the verifier's map of the file
(:func:`edgekd._fbverify.layout`): ``length`` (vector/string lengths), ``offset``
(uoffsets), ``vtable`` (vtable sizes and entries), ``opcode`` (operator codes,
versions, opcode indices), ``shape`` (tensor dims), ``quant`` (scales, zero
points, quantized dimension), ``options`` (builtin options fields), plus
``semantic``: object-API edits re-packed into a well-formed flatbuffer
(omitted inputs, swapped tensors, wrong types/buffers/shapes, NaN scales,
random option values, subgraph indices) — the ones that reach the interpreters.

The run is parallel (``--jobs`` workers, mutant ``i`` to worker ``i % jobs``)
and resumable: results go to ``OUT/api-<k>.jsonl`` and ``OUT/cli-<k>.jsonl`` and
a rerun skips the mutants already done. A worker killed by a signal or stuck
past ``--hang`` seconds on one mutant is recorded against it and restarted.
``--report`` writes the section ``fuzz`` of docs/benchmarks.md from whatever is
in ``OUT``. ``tests/check/test_fuzz.py`` runs a few hundred of the same mutants.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FAMILIES = ("byte", "bit", "truncate", "garbage", "length", "offset", "vtable", "opcode", "shape", "quant",
            "options", "semantic")
VERBS = ("profile", "check", "export", "firmware")
BAD = ("traceback", "signal", "hang")
BOARD = "esp32s3"
TARGET = "esp-idf"  # esp-tflite-micro: per-channel Dense is fine, so the interpreters are reached


# ---------------------------------------------------------------- seeds

def build_seeds() -> dict[str, bytes]:
    """The three seed models (TensorFlow's converter; a few seconds)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    def int8(model_or_conv: Any, shape: tuple[int, ...]) -> bytes:
        conv = model_or_conv if isinstance(model_or_conv, tf.lite.TFLiteConverter) else \
            tf.lite.TFLiteConverter.from_keras_model(model_or_conv)
        rep = np.random.default_rng(0).random((16, *shape), dtype=np.float32)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in rep)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return conv.convert()

    keras.utils.set_random_seed(0)
    seeds = {}
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10)(x)
    seeds["cnn"] = int8(keras.Model(inp, keras.layers.Softmax()(x)), (8, 8, 1))
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    a, b = keras.ops.split(x, 2, axis=-1)
    x = keras.layers.Flatten()(keras.layers.Add()([a, b]))
    seeds["split"] = int8(keras.Model(inp, keras.layers.Dense(10)(x)), (8, 8, 1))

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def loop(v):
        def body(i, v):
            return i + 1, v * 0.5 + 1.0
        return tf.while_loop(lambda i, v: i < 10, body, [tf.constant(0), v])[1]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([loop.get_concrete_function()], loop)
    seeds["while"] = conv.convert()
    return seeds


def load_seeds(out: str) -> dict[str, bytes]:
    """Seeds cached under ``OUT/seeds`` (built once)."""
    d = os.path.join(out, "seeds")
    names = ("cnn", "split", "while")
    if not all(os.path.exists(os.path.join(d, f"{n}.tflite")) for n in names):
        os.makedirs(d, exist_ok=True)
        for n, data in build_seeds().items():
            with open(os.path.join(d, f"{n}.tflite"), "wb") as f:
                f.write(data)
    return {n: open(os.path.join(d, f"{n}.tflite"), "rb").read() for n in names}


# ---------------------------------------------------------------- mutations

def _schema() -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


def _layout(data: bytes) -> list:
    from edgekd._fbverify import layout

    return layout(data, _schema())


_INT_EDGES = (0, 1, 2, 3, 4, 7, 8, 15, 16, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
              0x80000000, 0xFFFFFFFF)


def _new_int(rng: np.random.Generator, old: int, size: int) -> int:
    mask = (1 << (8 * size)) - 1
    choices = [e & mask for e in _INT_EDGES] + [(old + 1) & mask, (old - 1) & mask, (old * 2) & mask,
                                                (old + 4) & mask, (old - 4) & mask]
    if rng.random() < 0.25:
        return int(rng.integers(0, mask + 1, dtype=np.uint64)) & mask
    return int(choices[int(rng.integers(len(choices)))])


def _poke(data: bytearray, pos: int, size: int, rng: np.random.Generator, floats: bool = False) -> str:
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[size]
    old = struct.unpack_from(fmt, data, pos)[0]
    if floats and size == 4 and rng.random() < 0.6:
        val = float(rng.choice([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45, 3e38, -1.0, 1e-12]))
        struct.pack_into("<f", data, pos, val)
        return f"{old:#x}->{val}"
    new = _new_int(rng, old, size)
    struct.pack_into(fmt, data, pos, new)
    return f"{old:#x}->{new:#x}"


def _structural(data: bytes, rng: np.random.Generator, pick: Callable[[tuple], bool], floats: bool = False) -> tuple:
    locs = [loc for loc in _layout(data) if pick(loc)]
    if not locs:
        return None, "no location"
    kind, pos, size, where = locs[int(rng.integers(len(locs)))]
    buf = bytearray(data)
    if kind.startswith("vec"):  # one element of a scalar vector
        elem = int(kind[3:])
        n = size // elem
        if n == 0:
            return None, "empty vector"
        pos, size = pos + elem * int(rng.integers(n)), elem
    elif kind.startswith("scalar"):
        size = int(kind[6:])
    elif kind == "struct":
        size = 1
    what = _poke(buf, pos, size, rng, floats)
    return bytes(buf), f"{where}@{pos} {what}"


def _semantic(data: bytes, rng: np.random.Generator) -> tuple:
    import flatbuffers

    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    g = m.subgraphs[int(rng.integers(len(m.subgraphs)))]
    tensors = g.tensors or []
    ops = g.operators or []
    n_t = len(tensors)
    choice = int(rng.integers(12))
    desc = ""
    if choice == 0 and ops:  # an input omitted (-1)
        op = ops[int(rng.integers(len(ops)))]
        if op.inputs is not None and len(op.inputs):
            k = int(rng.integers(len(op.inputs)))
            op.inputs[k] = -1
            desc = f"op input {k} omitted"
    elif choice == 1 and ops:  # an input or output replaced by another tensor
        op = ops[int(rng.integers(len(ops)))]
        vec = op.inputs if rng.random() < 0.6 else op.outputs
        if vec is not None and len(vec) and n_t:
            k = int(rng.integers(len(vec)))
            vec[k] = int(rng.integers(n_t))
            desc = f"op tensor {k} -> {vec[k]}"
    elif choice == 2 and n_t:  # a shape changed
        t = tensors[int(rng.integers(n_t))]
        shape = list(t.shape) if t.shape is not None else []
        if shape and rng.random() < 0.7:
            k = int(rng.integers(len(shape)))
            shape[k] = int(rng.choice([0, 1, 2, 3, -1, 7, 64, 1000, 65536, 1 << 20]))
        elif rng.random() < 0.5:
            shape = shape + [int(rng.integers(1, 4))]
        else:
            shape = shape[:-1]
        t.shape = np.array(shape, dtype=np.int32)
        desc = f"shape -> {shape}"
    elif choice == 3 and n_t:  # a type changed
        t = tensors[int(rng.integers(n_t))]
        t.type = int(rng.integers(0, 20))
        desc = f"type -> {t.type}"
    elif choice == 4 and n_t:  # a buffer index changed
        t = tensors[int(rng.integers(n_t))]
        t.buffer = int(rng.integers(0, len(m.buffers or [1]) + 2))
        desc = f"buffer -> {t.buffer}"
    elif choice == 5 and n_t:  # quantization
        t = tensors[int(rng.integers(n_t))]
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            k = int(rng.integers(4))
            if k == 0:
                q.scale[int(rng.integers(len(q.scale)))] = float(rng.choice([0.0, -1.0, np.nan, np.inf, 1e-30, 1e30]))
            elif k == 1 and q.zeroPoint is not None:
                q.zeroPoint[int(rng.integers(len(q.zeroPoint)))] = int(rng.choice([-129, 128, 255, -(1 << 31), 1000]))
            elif k == 2:
                q.quantizedDimension = int(rng.choice([-1, 1, 2, 3, 7]))
            else:
                q.scale = np.concatenate([q.scale, q.scale])
            desc = f"quantization edit {k}"
    elif choice == 6 and ops:  # an option value
        op = ops[int(rng.integers(len(ops)))]
        opts = op.builtinOptions
        if opts is not None:
            keys = [k for k, v in vars(opts).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if keys:
                key = keys[int(rng.integers(len(keys)))]
                setattr(opts, key, type(getattr(opts, key))(rng.choice([-1, 0, 1, 2, 3, 5, 100, 1 << 20, -(1 << 20)])))
                desc = f"option {key} -> {getattr(opts, key)}"
    elif choice == 7 and m.operatorCodes:  # an opcode changed
        oc = m.operatorCodes[int(rng.integers(len(m.operatorCodes)))]
        k = int(rng.integers(3))
        if k == 0:
            oc.builtinCode = int(rng.integers(0, 215))
            oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
        elif k == 1:
            oc.version = int(rng.choice([0, 2, 3, 7, 100]))
        else:
            oc.builtinCode, oc.deprecatedBuiltinCode = 32, 32  # CUSTOM
            oc.customCode = None if rng.random() < 0.5 else b"NoSuchOp"
        desc = f"opcode edit {k}"
    elif choice == 8 and ops:  # an op's opcode index
        op = ops[int(rng.integers(len(ops)))]
        op.opcodeIndex = int(rng.integers(0, len(m.operatorCodes or []) + 2))
        desc = f"opcode index -> {op.opcodeIndex}"
    elif choice == 9:  # subgraph inputs/outputs
        vec = g.inputs if rng.random() < 0.5 else g.outputs
        if vec is not None and len(vec):
            vec[int(rng.integers(len(vec)))] = int(rng.integers(-1, n_t + 2))
            desc = "subgraph io edit"
    elif choice == 10 and ops:  # an op dropped or duplicated
        k = int(rng.integers(len(ops)))
        if rng.random() < 0.5:
            del ops[k]
            desc = f"op {k} dropped"
        else:
            ops.insert(k, ops[k])
            desc = f"op {k} duplicated"
    elif choice == 11 and m.buffers:  # constant data resized
        buf = m.buffers[int(rng.integers(len(m.buffers)))]
        if buf.data is not None and len(buf.data):
            cut = int(rng.integers(len(buf.data)))
            buf.data = buf.data[:cut] if rng.random() < 0.5 else np.concatenate([buf.data, buf.data])
            desc = "buffer resized"
    if not desc:
        return None, "no edit"
    b = flatbuffers.Builder(len(data) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), desc


def mutate(seed_data: bytes, family: str, rng: np.random.Generator) -> tuple[Optional[bytes], str]:
    """One mutant of ``seed_data`` by ``family``: ``(bytes or None if not applicable, description)``."""
    n = len(seed_data)
    if family == "byte":
        buf = bytearray(seed_data)
        k = int(rng.integers(1, 9))
        for pos in rng.integers(0, n, size=k):
            buf[int(pos)] = int(rng.integers(0, 256))
        return bytes(buf), f"{k} bytes"
    if family == "bit":
        buf = bytearray(seed_data)
        k = int(rng.integers(1, 5))
        for pos in rng.integers(0, 8 * n, size=k):
            buf[int(pos) // 8] ^= 1 << (int(pos) % 8)
        return bytes(buf), f"{k} bits"
    if family == "truncate":
        if rng.random() < 0.75:
            cut = int(rng.integers(0, n))
            return seed_data[:cut], f"cut at {cut}"
        extra = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        return seed_data + extra, f"+{len(extra)} garbage bytes"
    if family == "garbage":
        size = int(rng.integers(0, 2 * n))
        body = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
        if rng.random() < 0.5 and size >= 8:
            body = struct.pack("<I", int(rng.integers(8, max(9, size)))) + b"TFL3" + body[8:]
        return body, f"{size} random bytes"
    if family == "length":
        return _structural(seed_data, rng, lambda loc: loc[0] == "length")
    if family == "offset":
        return _structural(seed_data, rng, lambda loc: loc[0] == "offset")
    if family == "vtable":
        return _structural(seed_data, rng, lambda loc: loc[0] == "vtable")
    if family == "opcode":
        return _structural(seed_data, rng, lambda loc: loc[0].startswith("scalar") and (
            loc[3].startswith("OperatorCode.") or loc[3] == "Operator.OpcodeIndex"))
    if family == "shape":
        return _structural(seed_data, rng, lambda loc: loc[0] == "vec4" and loc[3] in (
            "Tensor.Shape", "Tensor.ShapeSignature", "ReshapeOptions.NewShape"))
    if family == "quant":
        return _structural(seed_data, rng, lambda loc: loc[3].startswith("QuantizationParameters.")
                           and (loc[0].startswith("vec") or loc[0].startswith("scalar")), floats=True)
    if family == "options":
        return _structural(seed_data, rng, lambda loc: loc[0].startswith("scalar")
                           and loc[3].split(".")[0].endswith("Options"), floats=True)
    if family == "semantic":
        return _semantic(seed_data, rng)
    raise ValueError(family)


def mutant(seeds: dict[str, bytes], seed: int, index: int) -> tuple[bytes, str, str, str]:
    """Mutant ``index`` of campaign ``seed`` (deterministic): ``(bytes, seed model, family, description)``."""
    rng = np.random.default_rng([seed, index])
    names = sorted(seeds)
    for _ in range(20):
        name = names[int(rng.integers(len(names)))]
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
        try:
            data, desc = mutate(seeds[name], family, rng)
        except Exception as e:  # the mutator itself (e.g. a re-pack of an odd edit) failed: pick another
            data, desc = None, f"mutator error {type(e).__name__}"
        if data is not None:
            return data, name, family, desc
    return seeds[names[0]][: index % len(seeds[names[0]])], names[0], "truncate", "fallback cut"


# ---------------------------------------------------------------- running one mutant

def _classify(fn: Callable[[], Any]) -> tuple[str, str]:
    from edgekd.errors import EdgeKDError

    try:
        value = fn()
    except EdgeKDError as e:
        return "typed", f"{type(e).__name__}: {str(e)[:160]}"
    except Exception as e:
        import traceback

        return "traceback", f"{type(e).__name__}: {e} | {traceback.format_exc(limit=-3)[-600:]}"
    return value if isinstance(value, tuple) else ("ok", "")


def _litert_loads(data: bytes) -> str:
    """``ok`` or ``refused``: LiteRT's own loader (verifier + InterpreterBuilder) on the mutant, in a fork."""
    from edgekd._sandbox import in_fork

    def load(stage: Callable[[str], None]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        stage("load")
        Interpreter(model_content=data)

    res = in_fork(load, timeout=30)
    return "ok" if res["ok"] else ("signal " + res["signal"]) if res.get("signal") else "refused"


def run_api(data: bytes, tmp: str, timeout: float, interpreters: bool = True) -> dict:
    """The four verbs' in-process API on one mutant: ``{verb: [outcome, detail]}``.

    Without ``interpreters`` only what needs no interpreter runs (``profile``, ``export``; ``check`` and
    ``firmware`` are skipped). For a mutant edgekd accepts, ``litert_load`` says whether LiteRT's loader does.
    """
    from edgekd.check import check
    from edgekd.export import write_export
    from edgekd.firmware import render
    from edgekd.flatbuffer import read_tflite
    from edgekd.profile import profile

    out: dict[str, Any] = {}
    out["profile"] = _classify(lambda: (profile(data), ("ok", ""))[1])
    out["export"] = _classify(lambda: (write_export(os.path.join(tmp, "export"), data, name="model"), ("ok", ""))[1])
    x = None
    try:
        shape = read_tflite(data).input_tensors[0].shape
        if 0 < math.prod(max(1, d) for d in shape) <= 1 << 16 and len(shape) >= 1:
            x = np.random.default_rng(0).random((3, *[max(1, d) for d in shape[1:]]), dtype=np.float32)
    except Exception:
        pass

    def run_check() -> tuple[str, str]:
        r = check(data, board=BOARD, data=x, host_latency_runs=5, timeout=timeout)
        load_refused = any(f.stage == "load" and not f.signal and not f.timed_out for f in r.litert_failures)
        detail = "; ".join([f.message for f in r.litert_failures]
                           + [f.message for f in (r.arena.failure, r.inference_failure) if f is not None])
        if load_refused:
            detail = "LITERT-LOAD-REFUSED " + detail
        return ("ok", "") if r.exit_code == 0 else ("report", detail[:400])

    if out["profile"][0] == "ok":
        out["litert_load"] = [_litert_loads(data), ""]
    if interpreters:
        out["check"] = _classify(run_check)
        out["firmware"] = _classify(lambda: (render(data, board=BOARD, target=TARGET), ("ok", ""))[1])
    return out


_CLI = {
    "profile": lambda m, o: ["profile", m],
    "check": lambda m, o: ["check", m, "--board", BOARD],
    "export": lambda m, o: ["export", m, "-o", os.path.join(o, "export")],
    "firmware": lambda m, o: ["firmware", m, "-b", BOARD, "-t", TARGET, "-o", os.path.join(o, "fw")],
}


def run_cli(data: bytes, tmp: str, timeout: float, mark: Callable[[str], None] = lambda verb: None) -> dict:
    """The four CLI verbs as child processes: ``{verb: [outcome, detail]}`` by exit status and stderr.

    ``mark(verb)`` is called before each (the campaign watches it for progress).
    """
    path = os.path.join(tmp, "mutant.tflite")
    with open(path, "wb") as f:
        f.write(data)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = {}
    for verb, args in _CLI.items():
        mark(verb)
        try:
            p = subprocess.run([sys.executable, "-m", "edgekd", *args(path, tmp)], env=env, capture_output=True,
                               text=True, timeout=timeout, cwd=tmp, start_new_session=True)
        except subprocess.TimeoutExpired:
            out[verb] = ["hang", f"> {timeout} s"]
            continue
        err = p.stderr or ""
        if p.returncode < 0:
            out[verb] = ["signal", signal.Signals(-p.returncode).name]
        elif "Traceback" in err or p.returncode not in (0, 1, 2):
            out[verb] = ["traceback", f"rc {p.returncode}: {err[-400:]}"]
        elif p.returncode == 2 and sum(ln.startswith(("error:", "Error:")) for ln in err.splitlines()) != 1:
            out[verb] = ["traceback", f"exit 2 without one error line: {err[-300:]}"]
        else:
            banner = [ln for ln in err.splitlines() if ln.startswith("INFO:") or "Created TensorFlow Lite" in ln]
            out[verb] = [{0: "ok", 1: "report", 2: "typed"}[p.returncode],
                         ("stderr noise: " + banner[0][:200]) if banner else ""]
    return out


def _done_ids(path: str) -> set[int]:
    ids = set()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    ids.add(int(json.loads(line)["id"]))
                except (ValueError, KeyError):
                    pass
    return ids


def worker(out: str, shard: int, jobs: int, mutants: int, seed: int, cli_every: int, timeout: float,
           interp_every: int = 1, hang: float = 900.0) -> None:
    """Run mutants ``i % jobs == shard`` not done yet; append results; ``OUT/current-<shard>`` says which runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seeds = load_seeds(out)
    api_path = os.path.join(out, f"api-{shard}.jsonl")
    cli_path = os.path.join(out, f"cli-{shard}.jsonl")
    done_api, done_cli = _done_ids(api_path), _done_ids(cli_path)
    current = os.path.join(out, f"current-{shard}")
    for i in range(shard, mutants, jobs):
        want_cli = cli_every > 0 and i % cli_every == 0
        if i in done_api and (not want_cli or i in done_cli):
            continue
        data, name, family, desc = mutant(seeds, seed, i)
        tmp = tempfile.mkdtemp(prefix="edgekd_fuzz_")
        try:
            if i not in done_api:
                with open(current, "w") as f:
                    f.write(f"api {i}\n")
                t0 = time.monotonic()
                res = run_api(data, tmp, timeout, interpreters=i % max(1, interp_every) == 0)
                rec = {"id": i, "seed": name, "family": family, "desc": desc, "bytes": len(data),
                       "seconds": round(time.monotonic() - t0, 3), "verbs": res}
                with open(api_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if want_cli and i not in done_cli:
                def mark(verb: str) -> None:
                    with open(current, "w") as f:
                        f.write(f"cli {i} {verb}\n")

                res = run_cli(data, tmp, hang, mark)
                with open(cli_path, "a") as f:
                    f.write(json.dumps({"id": i, "seed": name, "family": family, "desc": desc, "verbs": res}) + "\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    with open(current, "w") as f:
        f.write("done\n")


# ---------------------------------------------------------------- the campaign

def campaign(out: str, *, mutants: int, jobs: int = 2, seed: int = 0, cli_every: int = 33, timeout: float = 20.0,
             hang: float = 900.0, interp_every: int = 1, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) a campaign with ``jobs`` worker processes; return :func:`summarize` of ``out``."""
    os.makedirs(out, exist_ok=True)
    load_seeds(out)  # built once, before the workers start
    args = ["--out", out, "--mutants", str(mutants), "--jobs", str(jobs), "--seed", str(seed),
            "--cli-every", str(cli_every), "--timeout", str(timeout), "--interp-every", str(interp_every),
            "--hang", str(hang)]
    procs: dict[int, subprocess.Popen] = {}
    last: dict[int, tuple[str, float]] = {}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def start(k: int) -> None:
        with open(os.path.join(out, f"worker-{k}.log"), "ab") as logf:
            procs[k] = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", str(k), *args],
                                        env=env, start_new_session=True, stdout=logf, stderr=logf)
        last[k] = ("", time.monotonic())

    def record_bad(k: int, what: str, detail: str) -> None:
        cur = _read(os.path.join(out, f"current-{k}")).split()
        if len(cur) < 2:
            return
        kind, i = cur[0], int(cur[1])
        data, name, family, desc = mutant(load_seeds(out), seed, i)
        rec = {"id": i, "seed": name, "family": family, "desc": desc, "verbs": {"?": [what, detail]}}
        with open(os.path.join(out, f"{kind}-{k}.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        log(f"worker {k}: {what} on mutant {i} ({kind}, {family} {desc}): {detail[-300:]}")

    for k in range(jobs):
        start(k)
    try:
        _watch(out, procs, last, start, record_bad, hang, log)
    finally:  # interrupted: take the workers down with us (each leads its own process group)
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return summarize(out)


def _watch(out: str, procs: dict, last: dict, start: Callable[[int], None], record_bad: Callable[..., None],
           hang: float, log: Callable[[str], None]) -> None:
    """Wait for the workers; restart one that died or hung, recording it against its mutant."""
    t0 = time.monotonic()
    while procs:
        time.sleep(1.0)
        for k, p in list(procs.items()):
            rc = p.poll()
            cur = _read(os.path.join(out, f"current-{k}"))
            if rc is None:
                if cur != last[k][0]:
                    last[k] = (cur, time.monotonic())
                elif time.monotonic() - last[k][1] > hang:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    record_bad(k, "hang", f"no progress for {hang:.0f} s")
                    start(k)
                continue
            err = _read(os.path.join(out, f"worker-{k}.log"))[-2000:]
            if rc == 0 and cur.strip() == "done":
                del procs[k]
                continue
            record_bad(k, "signal" if rc < 0 else "traceback", f"worker exit {rc}: {err[-500:]}")
            start(k)
        if int(time.monotonic() - t0) % 60 == 0:
            s = summarize(out)
            log(f"{s['api_mutants']} API mutants, {s['cli_mutants']} CLI; bad {s['bad']}")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _records(out: str, kind: str) -> dict[int, dict]:
    recs: dict[int, dict] = {}
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        if name.startswith(f"{kind}-") and name.endswith(".jsonl"):
            with open(os.path.join(out, name)) as f:
                for line in f:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue
                    if r["id"] not in recs or "?" in r["verbs"]:  # a bad outcome recorded by the parent wins
                        recs[r["id"]] = r
    return recs


def summarize(out: str) -> dict:
    """Counts per verb and outcome, per family, the bad cases, and LiteRT/edgekd disagreements."""
    api, cli = _records(out, "api"), _records(out, "cli")
    s: dict[str, Any] = {"api_mutants": len(api), "cli_mutants": len(cli), "bad": 0, "bad_cases": []}
    for kind, recs in (("api", api), ("cli", cli)):
        table: dict[str, collections.Counter] = {v: collections.Counter() for v in VERBS}
        for r in recs.values():
            for verb, (outcome, detail) in r["verbs"].items():
                table.setdefault(verb, collections.Counter())[outcome] += 1
                if outcome in BAD:
                    s["bad"] += 1
                    if len(s["bad_cases"]) < 50:
                        s["bad_cases"].append({"kind": kind, "id": r["id"], "family": r["family"], "seed": r["seed"],
                                               "desc": r["desc"], "verb": verb, "outcome": outcome,
                                               "detail": detail[-500:]})
        s[kind] = {v: dict(c) for v, c in table.items()}
    fam = collections.defaultdict(collections.Counter)
    for r in api.values():
        outcomes = {o for o, _ in r["verbs"].values()}
        fam[r["family"]]["mutants"] += 1
        fam[r["family"]]["accepted"] += r["verbs"].get("profile", ["typed"])[0] == "ok"
        fam[r["family"]]["bad"] += bool(outcomes & set(BAD))
    s["families"] = {k: dict(v) for k, v in sorted(fam.items())}
    s["litert_load_refused_but_accepted"] = sum(
        1 for r in api.values() if r["verbs"].get("litert_load", ["ok"])[0] != "ok"
        or "LITERT-LOAD-REFUSED" in r["verbs"].get("check", ["", ""])[1])
    s["accepted"] = sum(1 for r in api.values() if r["verbs"].get("profile", ["", ""])[0] == "ok")
    s["noise"] = sum(1 for r in cli.values() for o, d in r["verbs"].values()
                     if d.startswith("stderr noise") and "Created TensorFlow Lite" in d)
    contained: collections.Counter = collections.Counter()  # crashes and hangs check turned into report lines
    for r in api.values():
        detail = r["verbs"].get("check", ["", ""])[1]
        for m in re.finditer(r"(LiteRT|TFLM) (?:crashed with (SIG\w+)|(timed out))", detail):
            contained[f"{m.group(1)} {m.group(2) or 'time-out'}"] += 1
    s["contained"] = dict(contained.most_common())
    files = [os.path.join(out, n) for n in os.listdir(out) if n.endswith(".jsonl")] if os.path.isdir(out) else []
    seeds_dir = os.path.join(out, "seeds")
    s["wall_minutes"] = (round((max(os.path.getmtime(f) for f in files) - os.path.getmtime(seeds_dir)) / 60)
                         if files and os.path.isdir(seeds_dir) else None)
    secs = [r.get("seconds", 0.0) for r in api.values() if "seconds" in r]
    s["api_seconds_mean"] = round(float(np.mean(secs)), 3) if secs else None
    return s


def report(out: str, command: str) -> str:
    """The markdown section for docs/benchmarks.md."""
    s = summarize(out)
    lines = ["## Fuzzing: mutated .tflite files through profile, check, export and firmware", "",
             f"{s['api_mutants']:,} mutants through the in-process API (worker processes: a signal there would be "
             f"edgekd's process dying), {s['cli_mutants']:,} of them also through the CLI. "
             f"**Bad outcomes (signal, hang, traceback): {s['bad']}.**", "",
             "| verb | path | ok | report (exit 1) | typed error (exit 2/1) | traceback | signal | hang |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind in ("api", "cli"):
        for verb in VERBS:
            c = s[kind].get(verb, {})
            lines.append(f"| {verb} | {kind.upper()} | {c.get('ok', 0):,} | {c.get('report', 0):,} | "
                         f"{c.get('typed', 0):,} | {c.get('traceback', 0)} | {c.get('signal', 0)} | "
                         f"{c.get('hang', 0)} |")
    lines += ["", "| family | mutants | accepted by the verifier (profile ok) | bad |", "|---|---:|---:|---:|"]
    for fam, c in s["families"].items():
        lines.append(f"| {fam} | {c.get('mutants', 0):,} | {c.get('accepted', 0):,} | {c.get('bad', 0)} |")
    rate = s["bad"] / max(1, s["api_mutants"] + s["cli_mutants"])
    lines += ["", f"Bad-outcome rate: {s['bad']} / {s['api_mutants'] + s['cli_mutants']:,} runs = {rate:.2%}. "
              f"Mutants edgekd's verifier accepted but LiteRT's loader refused: "
              f"{s['litert_load_refused_but_accepted']}. CLI runs with LiteRT's XNNPACK banner on stderr: "
              f"{s['noise']}. Mean API time per mutant (one worker): {s['api_seconds_mean']} s; the whole run took "
              f"about {s['wall_minutes']} minutes (first to last result).",
              "", "Interpreter crashes and hangs `check` (API) turned into report lines instead of dying with them: "
              + (", ".join(f"{k} × {v}" for k, v in s["contained"].items()) or "none") + "."]
    if s["bad_cases"]:
        lines += ["", "Bad cases (first 10):", ""]
        lines += [f"- mutant {b['id']} ({b['seed']}, {b['family']}: {b['desc']}) {b['kind']} {b['verb']}: "
                  f"{b['outcome']} — {b['detail'][:200]}" for b in s["bad_cases"][:10]]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mutants", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "fuzz"))
    ap.add_argument("--cli-every", type=int, default=33, help="also run the CLI on every N-th mutant (0: never)")
    ap.add_argument("--timeout", type=float, default=20.0, help="check(timeout=) per mutant")
    ap.add_argument("--hang", type=float, default=900.0, help="seconds on one mutant that count as a hang")
    ap.add_argument("--interp-every", type=int, default=1,
                    help="run check and firmware (the interpreters) on every N-th mutant only")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="only write docs/benchmarks.md from OUT")
    a = ap.parse_args(argv)
    if a.worker is not None:
        worker(a.out, a.worker, a.jobs, a.mutants, a.seed, a.cli_every, a.timeout, a.interp_every, a.hang)
        return 0
    if not a.report:
        campaign(a.out, mutants=a.mutants, jobs=a.jobs, seed=a.seed, cli_every=a.cli_every, timeout=a.timeout,
                 hang=a.hang, interp_every=a.interp_every)
    from bench._report import write_section

    body = report(a.out, "")
    write_section("fuzz", body, command=f"python bench/fuzz.py --mutants {a.mutants} --jobs {a.jobs} "
                                        f"--cli-every {a.cli_every} --seed {a.seed}")
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
