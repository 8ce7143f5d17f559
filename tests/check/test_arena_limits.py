"""The arena against what the generated project can hold in one piece: a static array, else one heap block."""

from __future__ import annotations

import dataclasses

from edgekd.boards import get


def test_esp32_profile_limits_static_and_heap_arenas():
    b = get("esp32")
    assert b.arena_allocation(b.static_arena_max_bytes) == "static"
    assert b.arena_allocation(b.static_arena_max_bytes + 16) == "heap"
    assert b.arena_allocation(206_784) is None  # a reported model: neither links nor allocates
    assert get("nano33ble").arena_allocation(10 ** 9) == "static"  # no such limit there: the RAM budget rules


def test_an_arena_over_both_limits_fails_check_on_an_arena_row(small_cnn_tflite):
    from edgekd.check import check

    small = dataclasses.replace(get("esp32"), static_arena_max_bytes=1024, heap_arena_max_bytes=2048)
    report = check(small_cnn_tflite[1], board=small, host_latency=False)
    row = {r.name: r for r in report.rows}["arena"]
    assert row.value == report.arena.arena_bytes > 2048
    assert not row.passed and "arena" in report.failed_budgets and report.exit_code == 1
    assert "static array up to 1,024 B" in row.how and "about 2,048 B" in row.how


def test_an_arena_over_the_static_limit_but_within_the_heap_passes(small_cnn_tflite):
    from edgekd.check import check

    b = dataclasses.replace(get("esp32"), static_arena_max_bytes=1024, heap_arena_max_bytes=1 << 20)
    report = check(small_cnn_tflite[1], board=b, host_latency=False)
    assert {r.name: r for r in report.rows}["arena"].passed and report.passed
    assert "arena" not in {r.name for r in check(small_cnn_tflite[1], board="nano33ble", host_latency=False).rows}
