"""What `edgekd check` says about the arena, against what TFLM allocates → docs/benchmarks.md section ``check_arena``.

    python bench/check_arena.py [--emulate] [--tflm DIR]

For the four MLPerf Tiny reference architectures (bench/refmodels.py, random He-normal weights, int8 with
random calibration, as bench/emulate_latency.py builds them) and the digits CNN of the tests:

* TFLM's allocation record at a generous arena (``RecordingMicroAllocator``: total = head + tail) vs the
  arena `check` bisects (the smallest that allocates and invokes, to 16 bytes): how far above the record;
* the head (activations, greedy memory planner) vs the profiler's peak-RAM estimate (live tensors at the
  worst op, a lower bound: the planner can fragment);
* the 64-bit host's over-statement that `check` estimates from the record's persistent categories, as a
  share of the tail, and — with ``--emulate`` (arm-none-eabi-g++, qemu-system-arm and a Chirale tree) —
  the arena the same model used on an emulated 32-bit Cortex-M4F (Chirale's TFLM, CMSIS-NN kernels).

docs/check.md quotes these numbers.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
os.environ.setdefault("EDGEKD_BUILD_DIR", os.path.join(_ROOT, "build", "edgekd"))

import numpy as np  # noqa: E402

from bench._report import write_section  # noqa: E402

MLPERF = ("vww_mobilenet_v1_025", "kws_ds_cnn", "ic_resnet8", "ad_fc_autoencoder")


def digits_cnn() -> tuple[bytes, np.ndarray]:
    """The tests' digits CNN (tests/conftest.py: 2 convs, pool, dense), trained 3 epochs."""
    import keras

    from edgekd.convert import convert
    from edgekd.datasets import digits

    ds = digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds.train.x, ds.train.y, epochs=3, verbose=0)
    return convert(model, representative_data=ds.val.x, per_channel_dense=False), ds.val.x[:2]


def measure(name: str, data: bytes, x: np.ndarray, emulate_tree: str | None, do_emulate: bool) -> dict:
    from edgekd.check.tflm import default_max_arena, run_tflm
    from edgekd.flatbuffer import read_tflite
    from edgekd.profile import profile

    fb = read_tflite(data)
    acts = sum(t.nbytes for t in fb.tensors if not t.is_constant)
    meas, _, _ = run_tflm(data, max_arena=default_max_arena(len(data), acts), num_ops=len(fb.operators))
    if meas.failure is not None:
        raise SystemExit(f"{name}: {meas.failure.message}")
    row = {"model": name, "bytes": len(data), "ops": len(fb.operators), "arena": meas.arena_bytes,
           "total": meas.record_total_bytes, "head": meas.record_head_bytes, "tail": meas.record_tail_bytes,
           "over": meas.host_overstatement_bytes, "peak": int(profile(data).peak_ram_bytes)}
    if do_emulate:
        from edgekd.emulate.qemu import emulate

        em = emulate(data, board="nucleo-l4r5zi", tflm=emulate_tree, samples=x, num_samples=len(x), timeout=900)
        row["mcu_arena"] = int(em.arena_used_bytes)
    return row


def report(rows: list[dict], emulated: bool) -> str:
    lines = ["## check: the bisected arena, TFLM's allocation record, the profiler and the 64-bit host", "",
             "| model | record total | bisected arena | arena − record | head (activations) | profiler peak "
             "| tail (persistent) | host over-statement (estimate) | of the tail |"
             + (" arena on the emulated 32-bit M4F | host − M4F | of the tail |" if emulated else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if emulated else "")]
    for r in rows:
        line = (f"| {r['model']} | {r['total']:,} | {r['arena']:,} | {r['arena'] - r['total']:+,} | {r['head']:,} "
                f"| {r['peak']:,} | {r['tail']:,} | {r['over']:,} | {100 * r['over'] / r['tail']:.1f}% |")
        if emulated:
            d = r["arena"] - r["mcu_arena"]
            line += f" {r['mcu_arena']:,} | {d:+,} | {100 * d / r['tail']:.1f}% |"
        lines.append(line)
    diffs = [r["arena"] - r["total"] for r in rows]
    shares = [100 * r["over"] / r["tail"] for r in rows]
    lines += ["", f"Bisected arena above the record: {min(diffs):+,} to {max(diffs):+,} B (the transient "
              "temporaries kernels allocate while preparing, which a small activation head cannot absorb). "
              f"Estimated 64-bit over-statement: {min(shares):.1f}–{max(shares):.1f}% of the persistent tail"
              + (f"; measured host − emulated Cortex-M4F: {min(r['arena'] - r['mcu_arena'] for r in rows):+,} to "
                 f"{max(r['arena'] - r['mcu_arena'] for r in rows):+,} B (Chirale's TFLM and CMSIS-NN kernels: "
                 "another TFLM version, other op data; the estimate is not a bound). " if emulated else ". ")
              + "Profiler peak vs head: equal where the planner packs perfectly, below it where it fragments "
              f"({', '.join(r['model'] for r in rows if r['peak'] != r['head']) or 'none here'})."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulate", action="store_true", help="also run each model on the emulated Cortex-M4F")
    ap.add_argument("--tflm", default=None, help="Chirale_TensorFLowLite 2.0.0 tree (for --emulate)")
    args = ap.parse_args()
    from bench.emulate_latency import _default_tree, build

    tree = args.tflm or _default_tree()
    rows = [measure("digits_cnn (tests)", *digits_cnn(), tree, args.emulate)]
    for name in MLPERF:
        rows.append(measure(name, *build(name), tree, args.emulate))
        print(rows[-1], flush=True)
    body = report(rows, args.emulate)
    write_section("check_arena", body, command="python bench/check_arena.py" + (" --emulate" if args.emulate else ""))
    print(body)


if __name__ == "__main__":
    main()
