"""docs/check.md's arena figures are the measured ones (bench/check_arena.py), and still hold here.

docs/check.md used to say the bisected arena is "a few hundred bytes at most" above TFLM's record, that
the 64-bit host over-states "~10–15 % of the persistent tail", and implied the profiler's peak equals the
arena's activation head; measurement contradicted all three.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from edgekd.check import check, render_report, run_tflm
from edgekd.flatbuffer import read_tflite
from edgekd.profile import profile
from tests.conftest import ROOT


def _doc(name: str) -> str:
    with open(os.path.join(ROOT, "docs", name), encoding="utf-8") as f:
        return " ".join(f.read().split())


def _bench_rows() -> list[dict]:
    text = _doc("benchmarks.md")
    m = re.search(r"<!-- BEGIN check_arena -->(.*?)<!-- END check_arena -->", text)
    assert m, "docs/benchmarks.md has no check_arena section: run python bench/check_arena.py --emulate"
    rows = []
    for cells in re.findall(r"\| ([^|]+?) \| ([\d,]+) \| ([\d,]+) \| ([-+\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) "
                            r"\| ([\d,]+) \| ([\d.]+)% \|(?: ([\d,]+) \| ([-+\d,]+) \| ([-\d.]+)% \|)?", m.group(1)):
        num = [int(c.replace(",", "").replace("+", "")) if c and "." not in c else (float(c) if c else None)
               for c in cells[1:]]
        rows.append(dict(zip(("total", "arena", "above", "head", "peak", "tail", "over", "share", "mcu", "host_mcu",
                              "mcu_share"), num), model=cells[0]))
    assert len(rows) >= 5
    return rows


def test_check_md_quotes_the_measured_ranges():
    rows, doc = _bench_rows(), _doc("check.md")
    above = [r["above"] for r in rows]
    assert f"{min(above):+,} to {max(above):+,} B".replace("-", "−") in doc
    shares = [r["share"] for r in rows]
    assert f"{min(shares):.1f}–{max(shares):.1f} % of the persistent tail" in doc
    if all(r["mcu"] is not None for r in rows):
        saved = [r["host_mcu"] for r in rows]
        pct = [r["mcu_share"] for r in rows]
        assert f"used {min(saved):,} B to {max(saved):,} B less than the host" in doc
        assert f"{min(pct):.1f} % to {max(pct):.1f} % of the tail" in doc
    vww = next(r for r in rows if r["model"].startswith("vww"))
    assert vww["peak"] < vww["head"]
    assert f"{vww['peak']:,} B from the profiler vs a {vww['head']:,} B head" in doc
    for stale in ("a few hundred bytes at most", "~10–15%"):
        assert stale not in doc


def test_digits_arena_within_the_documented_ranges(digits_model):
    rows = _bench_rows()
    data = digits_model[1]
    meas, _, _ = run_tflm(data, max_arena=256 * 1024, num_ops=len(read_tflite(data).operators))
    above = meas.arena_bytes - meas.record_total_bytes
    assert min(r["above"] for r in rows) <= above <= max(r["above"] for r in rows)
    share = 100 * meas.host_overstatement_bytes / meas.record_tail_bytes
    assert min(r["share"] for r in rows) - 0.05 <= share <= max(r["share"] for r in rows) + 0.05


@pytest.fixture(scope="module")
def fragmenting_tflite():
    """A 2-block MobileNetV1-style stem (32×32×3): TFLM's greedy planner needs 8,192 B where 6,144 B are live."""
    import keras
    from keras import layers

    from bench.emulate_latency import he_weights
    from edgekd.convert import convert

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    for filters, stride in ((16, 1), (32, 2)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 1, activation="relu")(x)
    out = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = he_weights(keras.Model(inp, out))
    return convert(model, representative_data=np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32))


def test_profiler_peak_is_a_lower_bound_of_the_head(fragmenting_tflite):
    r = check(fragmenting_tflite, board="esp32s3", host_latency=False)
    assert r.profiler_peak_ram_bytes == profile(fragmenting_tflite).peak_ram_bytes
    assert r.profiler_peak_ram_bytes < r.arena.record_head_bytes  # the planner fragments here
    lines = []
    render_report(r, print_fn=lines.append)
    assert "Profiler peak-RAM estimate (a lower bound)" in "\n".join(lines)
