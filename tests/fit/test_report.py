"""fit's report without a search: the Pareto figure's panels and axes, estimates labelled as estimates."""

from __future__ import annotations

import dataclasses
import types

import pytest
from rich.console import Console

from edgekd.check.budgets import Budgets
from edgekd.fit import FitResult, Trial, comparison_table, pareto_figure, pareto_png
from edgekd.fit.report import pareto_front

BOARD = types.SimpleNamespace(id="nano33ble")
BUDGETS = Budgets(flash_bytes=960 * 1024, ram_bytes=200 * 1024, latency_ms=5.0)


def _trial(number, acc, flash_kb, ram_kb, lat, state="passed", **kw):
    base = dict(number=number, state=state, arch="ds_cnn", width=0.25 * (number + 1), resolution=1.0, depth=1,
                temperature=2.0, input_shape=(8, 8, 1), params=1000 * (number + 1), macs=10000 * (number + 1),
                est_flash_bytes=int(flash_kb * 1024), est_ram_bytes=int(ram_kb * 900), est_latency_ms=lat,
                epochs_run=1)
    if state != "infeasible":
        base.update(flash_bytes=int(flash_kb * 1024), ram_bytes=int(ram_kb * 1024), latency_ms=lat,
                    int8_accuracy=acc, float_accuracy=acc)
    else:
        base.update(epochs_run=0, violations=("latency",))
    base.update(kw)
    return Trial(**base)


@pytest.fixture
def result():
    trials = (
        _trial(0, 0.80, 100, 20, 1.0),
        _trial(1, 0.90, 110, 24, 2.0),
        _trial(2, 0.86, 120, 30, 3.0),  # dominated: more flash, less accuracy than trial 1
        _trial(3, 0.93, 130, 28, 6.0, state="over_budget", violations=("latency",)),
        _trial(4, None, 2000, 900, 40.0, state="infeasible"),  # far off: must not stretch the axes
        _trial(5, 0.90, 110, 24, 2.0, note="same as trial 1"),
    )
    return FitResult(board=BOARD, budgets=BUDGETS, arch="ds_cnn", trials=trials, best=trials[1], best_tflite=b"x",
                     best_model=None, teacher_accuracy=0.95, teacher_profile=None, trainings=4)


def test_pareto_front():
    assert pareto_front([(3, 0.86), (1, 0.8), (2, 0.9), (4, 0.93), (2, 0.85)]) == [(1, 0.8), (2, 0.9), (4, 0.93)]


def test_pareto_figure_panels_axes_front_budgets_and_label(result):
    fig = pareto_figure(result)
    axes = fig.axes
    assert [a.get_xlabel().split()[0] for a in axes] == ["flash", "RAM", "latency"]
    # y scaled to the candidates (and the teacher): not from 0
    lo, hi = axes[0].get_ylim()
    assert 70 < lo < 80 and 95 <= hi < 100
    flash_ax, ram_ax, lat_ax = axes
    # x scaled to the trained candidates: neither the 960 KB budget nor the 2 MB infeasible one stretch it
    x0, x1 = flash_ax.get_xlim()
    assert 90 < x0 < 100 and 130 < x1 < 140
    assert not [ln for ln in flash_ax.get_lines() if ln.get_label() == "budget"]
    assert any("960.0 KB" in t.get_text() for t in flash_ax.texts)  # the budget out of view is named
    assert 19 < ram_ax.get_xlim()[0] < 20 and ram_ax.get_xlim()[1] < 200
    # the latency budget (5 ms) lies among the candidates: drawn as a line
    budget = [ln for ln in lat_ax.get_lines() if ln.get_label() == "budget"]
    assert len(budget) == 1 and budget[0].get_xdata()[0] == pytest.approx(5.0)
    # the front: trial 0, 1 and 3 on the flash panel (trial 2 is dominated, trial 5 repeats trial 1)
    front = [ln for ln in flash_ax.get_lines() if ln.get_label() == "Pareto front"]
    assert len(front) == 1
    assert sorted(set(front[0].get_xdata())) == pytest.approx([100, 110, 130])
    # the chosen point ringed (hollow, so the point under it shows) and labelled with its spec
    for ax in axes:
        assert any(t.get_text().endswith(result.best.spec) for t in ax.texts)
        chosen = [c for c in ax.collections if c.get_label() == "chosen"]
        assert len(chosen) == 1 and chosen[0].get_facecolor().size == 0
    assert pareto_png(result)[:8] == b"\x89PNG\r\n\x1a\n"


def test_comparison_table_labels_estimates(result):
    comparison = {
        "teacher": {"params": 5000, "macs": 90000, "flash_bytes": 30000, "ram_bytes": 27443, "latency_ms": 3.2,
                    "float_accuracy": 0.95, "int8_accuracy": 0.94, "estimated": ["ram_bytes", "latency_ms"]},
        "student": {"params": 2000, "macs": 20000, "flash_bytes": 112640, "ram_bytes": 24576, "latency_ms": 2.0,
                    "float_accuracy": 0.9, "int8_accuracy": 0.9, "estimated": ["latency_ms"]},
    }
    con = Console(record=True, width=200)
    comparison_table(dataclasses.replace(result, comparison=comparison), print_fn=con.print)
    text = con.export_text()
    ram = next(ln for ln in text.splitlines() if "RAM" in ln)
    assert "26.8 KB est." in ram and "24.0 KB" in ram and "24.0 KB est." not in ram
    flash = next(ln for ln in text.splitlines() if "flash" in ln)
    assert "est." not in flash
    assert "est. = estimated" in text
