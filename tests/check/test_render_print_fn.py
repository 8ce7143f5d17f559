"""`render_report`/`render_boards` with `print_fn`: the text goes there and nowhere else."""

from __future__ import annotations

from edgekd import boards
from edgekd.check import check, render_boards, render_report


def test_render_boards_prints_only_through_print_fn(capsys):
    got: list[str] = []
    render_boards(boards.all_boards(), print_fn=got.append)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert len(got) == 1 and "nano33ble" in got[0] and "edgekd boards" in got[0]


def test_render_report_prints_only_through_print_fn(capsys, digits_tflite):
    report = check(digits_tflite, board="nano33ble", host_latency=False)
    capsys.readouterr()
    got: list[str] = []
    render_report(report, layers=True, print_fn=got.append)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert "Result:" in got[0] and "Per layer" in got[0]
