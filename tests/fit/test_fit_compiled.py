"""edgekd.fit with engine="compiled": candidates measured with the compiled engine's linked flash and RAM."""

from __future__ import annotations

import shutil

import pytest

from edgekd import boards
from edgekd.check.budgets import resolve_budgets
from edgekd.convert import convert
from edgekd.fit import SearchSpace, build_student, estimate, fit
from edgekd.fit.measurement import measure
from tests.engine.conftest import tree_path

pytestmark = pytest.mark.skipif(not shutil.which("arm-none-eabi-g++") or tree_path("chirale") is None,
                                reason="needs arm-none-eabi-g++ and shared/tflm/Chirale_TensorFLowLite")
ONE = SearchSpace(width=(0.25,), resolution=(1.0,), depth=(1,), temperature=(2.0,))


def test_fit_finds_a_student_that_fits_only_compiled(small_cnn, digits, monkeypatch):
    monkeypatch.setenv("EDGEKD_TFLM", str(tree_path("chirale")))
    board = boards.get("nano33ble")
    student = build_student("small_cnn", small_cnn, (8, 8, 1), 10, 0.25, 1.0, 1)
    # before training: without the interpreter the estimate drops the board's runtime figures
    interp_est, comp_est = (estimate(student, board, engine=e) for e in ("interpreter", "compiled"))
    assert comp_est.ram_bytes == interp_est.ram_bytes - board.runtime_ram_bytes
    # the same (untrained) student measured both ways: a RAM budget between the two
    tfl = convert(student, mode="int8", representative_data=digits.train.x[:64], per_channel_dense=False)
    budgets = resolve_budgets(board)
    low, high = (measure(tfl, board, budgets, engine=e).ram_bytes for e in ("compiled", "interpreter"))
    assert low < high
    kwargs = dict(train=(digits.train.x, digits.train.y), val=(digits.val.x, digits.val.y), board=board,
                  max_ram=(low + high) // 2, arch="small_cnn", trials=1, epochs=1, space=ONE, prune=False)
    compiled = fit(small_cnn, engine="compiled", **kwargs)
    assert compiled.best is not None and compiled.best.ram_bytes <= (low + high) // 2
    interpreter = fit(small_cnn, **kwargs)
    assert interpreter.best is None and "ram" in interpreter.trials[0].violations
