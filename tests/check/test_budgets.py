"""edgekd.check.budgets: one rule for every budget, the same for `check` and `fit` (library and CLI)."""

from __future__ import annotations

import math

import pytest

from edgekd import boards
from edgekd.check import check, parse_latency, resolve_budgets
from edgekd.errors import InvalidArgumentError
from edgekd.fit import fit

BAD_LATENCIES = [0, -1.0, math.nan, math.inf, True, "fast", "", [1.0]]


def test_parse_latency():
    assert parse_latency(3) == 3.0 and parse_latency("2.5") == 2.5 and parse_latency(0.001) == 0.001
    for bad in BAD_LATENCIES:
        with pytest.raises(InvalidArgumentError, match="max_latency_ms.*positive number of milliseconds"):
            parse_latency(bad)


def test_resolve_budgets_board_defaults_and_overrides():
    board = boards.get("nano33ble")
    b = resolve_budgets(board)
    assert (b.flash_bytes, b.ram_bytes, b.latency_ms) == (board.flash_budget_bytes, board.ram_budget_bytes, None)
    assert [r.source for r in b.rows(flash=1, ram=1, latency=1.0)] == ["board", "board", "none"]
    b = resolve_budgets(board, max_ram="1KB", max_latency_ms=5)
    assert (b.ram_bytes, b.latency_ms) == (1024, 5.0)
    assert [r.source for r in b.rows(flash=1, ram=1, latency=1.0)] == ["board", "override", "override"]
    # a figure over its budget, or not known (None), breaks it; no latency budget holds any latency
    assert b.violations(1, 1025, 5.0) == ("ram",)
    assert b.violations(board.flash_budget_bytes + 1, None, 5.1) == ("flash", "ram", "latency")
    assert resolve_budgets(board).violations(1, 1, 1e9) == ()
    assert b.excess(board.flash_budget_bytes, 2048, 2.5) == [0.0, 1.0, -0.5]


@pytest.mark.parametrize("bad", [0, -3, math.nan, math.inf, True, "fast"])
def test_check_and_fit_refuse_a_bad_latency_budget_alike(bad):
    # Before the one rule, fit took NaN and True (its own isinstance test) while check refused them.
    with pytest.raises(InvalidArgumentError) as from_check:
        check(b"not read before the budgets", board="nano33ble", max_latency_ms=bad)
    with pytest.raises(InvalidArgumentError) as from_fit:
        fit(None, train=(None, None), val=(None, None), board="nano33ble", max_latency_ms=bad)
    assert str(from_check.value) == str(from_fit.value)
    assert "max_latency_ms" in str(from_check.value) and "positive number of milliseconds" in str(from_check.value)


@pytest.mark.parametrize("option, bad", [("--max-latency-ms", "nan"), ("--max-latency-ms", "0"),
                                         ("--max-latency-ms", "-2"), ("--max-ram", "0.5")])
def test_check_and_fit_clis_give_the_same_error(capsys, tmp_path, option, bad):
    from edgekd.cli import main

    lines = []
    for argv in (["check", str(tmp_path / "m.tflite"), "--board", "nano33ble", option, bad],
                 ["fit", "--teacher", str(tmp_path / "m.keras"), "--dataset", "digits", "--board", "nano33ble",
                  option, bad, "-o", str(tmp_path / "out")]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "Traceback" not in err, err
        lines += [ln for ln in err.splitlines() if ln.lower().startswith("error:")]
    assert len(lines) == 2 and lines[0] == lines[1], lines
    assert not (tmp_path / "out").exists()
