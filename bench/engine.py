"""The compiled engine vs TFLM's interpreter on an emulated Cortex-M4F: RAM, flash, instructions, bit-exactness.

    python bench/engine.py

Per model (random weights with BatchNormalization statistics from the calibration data, int8, per-tensor Dense
as Chirale's CMSIS-NN FULLY_CONNECTED needs), both programs are built from the same Chirale_TensorFLowLite 2.0.0
tree (CMSIS-NN, arm-none-eabi-g++ -Os) and run under QEMU mps2-an386 on the same random int8 inputs
(:mod:`edgekd.engine.build`):

* RAM (ELF): compiled = ``.data`` + ``.bss`` of the linked ELF (the activation buffer is in ``.bss``);
  interpreter = ``arena_used_bytes()`` on the target rounded up to 16 B + ``.data`` + ``.bss`` outside the
  reserved arena. Both ELFs hold the same runner skeleton, newlib and semihosting (about 3 KB of RAM);
* RAM (model): the same without that common part — the objects of TFLM/CMSIS-NN and of the model
  (``model_engine`` / ``model_data``) from the linker map, plus the interpreter's arena;
* activations: the engine's planned buffer vs TFLM's own plan for the same kernels: the head of the arena
  after ``AllocateTensors()`` on the target (``RecordingMicroInterpreter``, a separate run: activations and
  CMSIS-NN scratch buffers). The JSON lines also hold the host plan of TFLM's Python interpreter (reference
  kernels, less scratch) and the planner's port of TFLM's GreedyMemoryPlanner on the engine's buffers;
* flash (ELF): ``.text`` (with ``.rodata``) + exception tables + ``.data`` of the whole ELF;
  flash (model): TFLM/CMSIS-NN objects + the model's objects, from the linker map;
* instructions: per invoke, counted by QEMU (-icount shift=0, exact to 40), mean over the inputs.

Goals of the compiled engine: >= 30 % less RAM on every model, activation buffer <= TFLM's planned
activations, smaller flash, never more instructions.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("EDGEKD_BUILD_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                       "build", "edgekd"))

from bench import refmodels  # noqa: E402
from bench._report import write_section  # noqa: E402

TREE = os.environ.get("EDGEKD_TFLM", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                  os.pardir, "shared", "tflm", "Chirale_TensorFLowLite"))


def _models():
    from edgekd import students

    s = students.get
    return {
        "digits small_cnn (8x8)": (lambda: s("small_cnn")(input_shape=(8, 8, 1), num_classes=10), 4),
        "digits ds_cnn w0.5 (8x8)": (lambda: s("ds_cnn")(input_shape=(8, 8, 1), num_classes=10, width=0.5), 4),
        "ds_cnn w0.25 (49x10)": (lambda: s("ds_cnn")(input_shape=(49, 10, 1), num_classes=12, width=0.25), 3),
        "ds_cnn w0.5 (49x10)": (lambda: s("ds_cnn")(input_shape=(49, 10, 1), num_classes=12, width=0.5), 3),
        "ds_cnn w1.0 (49x10)": (lambda: s("ds_cnn")(input_shape=(49, 10, 1), num_classes=12, width=1.0), 2),
        "mobilenet_v1 w0.25 (32x32)": (
            lambda: s("mobilenet_v1")(input_shape=(32, 32, 3), num_classes=5, width=0.25), 2),
        "mobilenet_v1 w0.5 (32x32)": (
            lambda: s("mobilenet_v1")(input_shape=(32, 32, 3), num_classes=5, width=0.5), 2),
        "MLPerf VWW mobilenet_v1_025 (96x96x3)": (lambda: refmodels.mobilenet_v1_025(3), 1),
        "MLPerf KWS ds_cnn": (refmodels.ds_cnn, 2),
        "MLPerf IC resnet8": (refmodels.resnet8, 1),
        "MLPerf AD fc_autoencoder (per-tensor Dense)": (refmodels.fc_autoencoder, 2),
    }


def _tflm_head(model) -> tuple[int, int]:
    """(activation head, whole arena) of TFLM's own plan on the host (RecordingMicroAllocator; bisected arena)."""
    from edgekd.check.tflm import run_tflm

    arena, _, _ = run_tflm(model.data, max_arena=4 << 20, num_ops=len(model.parsed.operators))
    return int(arena.record_head_bytes or 0), int(arena.arena_bytes or 0)


def measure(name: str, build, n: int, facts) -> dict:
    """One model's row."""
    import keras
    import numpy as np

    from edgekd.emulate.build import CORTEX_M4F
    from edgekd.engine import compile_model
    from edgekd.engine.build import ARENA_ALIGN, run_engine, run_interpreter
    from tests.engine.conftest import int8, random_inputs

    keras.utils.set_random_seed(0)
    net = build()
    rep = np.random.default_rng(0).uniform(-1.0, 1.0, (32, *net.input_shape[1:])).astype("float32")
    model = int8(refmodels.with_batchnorm_statistics(net, rep), per_channel_dense=False)
    x = random_inputs(model, n)
    t0 = time.perf_counter()
    engine = compile_model(model, runtime="chirale-2.0.0")
    c = run_engine(engine, x, facts=facts, toolchain=CORTEX_M4F, timeout=600)
    i = run_interpreter(model, x, facts=facts, toolchain=CORTEX_M4F, timeout=600)
    recorded = run_interpreter(model, x[:1], facts=facts, toolchain=CORTEX_M4F, timeout=600, record=True)
    head, host_arena = _tflm_head(model)
    arena = -(-i.arena_used_bytes // ARENA_ALIGN) * ARENA_ALIGN
    return {
        "model": name, "ops": len(engine.ops), "inputs": n, "bit_exact": bool(np.array_equal(c.outputs, i.outputs)),
        "ram_compiled": c.ram_bytes, "ram_interpreter": i.ram_bytes,
        "model_ram_compiled": c.size.model_ram + c.size.tflm_ram,
        "model_ram_interpreter": arena + i.size.model_ram + i.size.tflm_ram,
        "activations_compiled": engine.activation_bytes, "activations_tflm": recorded.arena_head_bytes,
        "activations_tflm_host": head,
        "activations_tflm_greedy": engine.plan.tflm_greedy_bytes, "arena_used": i.arena_used_bytes,
        "host_arena": host_arena,
        "flash_compiled": c.flash_bytes, "flash_interpreter": i.flash_bytes,
        "model_flash_compiled": c.size.firmware_flash, "model_flash_interpreter": i.size.firmware_flash,
        "instructions_compiled": int(np.mean(c.instructions)), "instructions_interpreter": int(np.mean(i.instructions)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def per_channel_autoencoder(facts) -> dict:
    """fc_autoencoder with per-channel Dense: what Chirale's engine says, and TFLM's arena for both granularities."""
    import keras
    import numpy as np

    from edgekd.engine import compile_model
    from edgekd.errors import UnsupportedOpError
    from tests.engine.conftest import int8

    out = {}
    for per_channel in (True, False):
        keras.utils.set_random_seed(0)
        net = refmodels.fc_autoencoder()
        rep = np.random.default_rng(0).uniform(-1.0, 1.0, (32, *net.input_shape[1:])).astype("float32")
        model = int8(refmodels.with_batchnorm_statistics(net, rep), per_channel_dense=per_channel)
        head, arena = _tflm_head(model)
        try:
            compiled = compile_model(model, runtime="chirale-2.0.0").activation_bytes
        except UnsupportedOpError as e:  # Chirale's CMSIS-NN FULLY_CONNECTED is per-tensor only
            compiled = "refused (per-channel FULLY_CONNECTED: per_channel_dense=False)" if "per-channel" in str(e) \
                else f"refused: {str(e)[:80]}"
        ref = compile_model(model, runtime="esp-tflite-micro-1.4.0").activation_bytes
        out["per-channel" if per_channel else "per-tensor"] = {
            "tflm_host_arena": arena, "tflm_activation_head": head, "engine_activations_chirale": compiled,
            "engine_activations_reference": ref, "flatbuffer_bytes": len(model)}
    return out


def _pct(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.0f} %"


def _table(rows: list[dict]) -> list[str]:
    lines = ["| model | bit-exact | RAM ELF compiled / interpreter | RAM model-only compiled / interpreter | "
             "activations compiled / TFLM's plan | flash ELF compiled / interpreter | "
             "flash TFLM+model compiled / interpreter | instructions compiled / interpreter |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {'yes' if r['bit_exact'] else '**no**'} "
            f"| {r['ram_compiled']:,} / {r['ram_interpreter']:,} ({_pct(r['ram_compiled'], r['ram_interpreter'])}) "
            f"| {r['model_ram_compiled']:,} / {r['model_ram_interpreter']:,} "
            f"({_pct(r['model_ram_compiled'], r['model_ram_interpreter'])}) "
            f"| {r['activations_compiled']:,} / {r['activations_tflm']:,} "
            f"| {r['flash_compiled']:,} / {r['flash_interpreter']:,} "
            f"({_pct(r['flash_compiled'], r['flash_interpreter'])}) "
            f"| {r['model_flash_compiled']:,} / {r['model_flash_interpreter']:,} "
            f"({_pct(r['model_flash_compiled'], r['model_flash_interpreter'])}) "
            f"| {r['instructions_compiled']:,} / {r['instructions_interpreter']:,} "
            f"({_pct(r['instructions_compiled'], r['instructions_interpreter'])}) |")
    return lines


def _goals(rows: list[dict]) -> list[str]:
    def every(pred) -> str:
        bad = [r["model"] for r in rows if not pred(r)]
        return "met on every model" if not bad else f"**not met** on {len(bad)} of {len(rows)}: {', '.join(bad)}"

    return [
        f"- Bit-exact (every output byte): {every(lambda r: r['bit_exact'])}.",
        "- RAM >= 30 % less, whole ELF (runner, newlib and semihosting included on both sides): "
        f"{every(lambda r: r['ram_compiled'] <= 0.7 * r['ram_interpreter'])}.",
        "- RAM >= 30 % less, model-only (TFLM + model objects + arena, without the common runner/libc): "
        f"{every(lambda r: r['model_ram_compiled'] <= 0.7 * r['model_ram_interpreter'])}.",
        "- Activation buffer <= TFLM's planned activations (the head of its arena on the target, CMSIS-NN "
        f"scratch included): {every(lambda r: r['activations_compiled'] <= r['activations_tflm'])}.",
        f"- Smaller flash (whole ELF): {every(lambda r: r['flash_compiled'] < r['flash_interpreter'])}.",
        f"- Never more instructions: {every(lambda r: r['instructions_compiled'] <= r['instructions_interpreter'])}.",
    ]


def main() -> None:
    from edgekd.boards import runtime as runtimes

    facts = runtimes.tree_facts(TREE)
    only = set(sys.argv[1:])
    rows = []
    for name, (build, n) in _models().items():
        if only and not any(o in name for o in only):
            continue
        try:
            rows.append(measure(name, build, n, facts))
        except Exception as e:  # an op not covered yet: reported, not hidden
            print(f"{name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
            continue
        print(json.dumps(rows[-1]), flush=True)
    pc = per_channel_autoencoder(facts)
    print(json.dumps(pc), flush=True)
    body = [
        "## Compiled engine vs TFLM interpreter (Cortex-M4F under QEMU)", "",
        "Both programs from Chirale_TensorFLowLite 2.0.0 (CMSIS-NN DSP paths, arm-none-eabi-g++ -Os), run on QEMU "
        "mps2-an386 on the same random int8 inputs (random weights, BatchNormalization statistics from the "
        "calibration data; per-tensor Dense). Bytes; instructions per invoke (mean). RAM ELF = .data + .bss of "
        "the linked ELF (interpreter: arena used, rounded to 16 B, "
        "instead of the reserved arena); model-only = the TFLM/CMSIS-NN and model objects (+ arena), without the "
        "runner, newlib and semihosting both share. Activations: the engine's planned buffer vs TFLM's plan for the "
        "same kernels (the head of its arena after AllocateTensors on the target: activations and CMSIS-NN "
        "scratch). See docs/engine.md.", "",
        *_table(rows), "", "Goals:", *_goals(rows), "",
        "MLPerf AD fc_autoencoder, Dense granularity (TFLM host arena, bisected / activation head; engine "
        "activation buffer):", "",
        "| Dense | flatbuffer | TFLM arena | TFLM activations | engine (reference kernels) | engine on Chirale |",
        "|---|---|---|---|---|---|",
        *[f"| {k} | {v['flatbuffer_bytes']:,} | {v['tflm_host_arena']:,} | {v['tflm_activation_head']:,} | "
          f"{v['engine_activations_reference']:,} | {v['engine_activations_chirale']} |" for k, v in pc.items()],
    ]
    write_section("engine", "\n".join(body), command="python bench/engine.py")


if __name__ == "__main__":
    main()
