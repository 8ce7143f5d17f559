"""Render a :class:`~edgekd.check.core.CheckReport` for people (rich tables) — separate from computing it."""

from __future__ import annotations

import io
import sys
from typing import Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekd.boards import Board


def _esc(text: object) -> str:
    """Text from a model or a file (paths, tensor names, interpreter messages) printed as is, never as markup."""
    return escape(str(text))


def _fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value / 1024:,.1f} KiB"
    if unit == "steps":
        return f"{value:g} step(s)"
    return f"{value:,.2f} ms"


def _int(value: Optional[int]) -> str:
    return "?" if value is None else f"{value:,}"


def _console(print_fn: Optional[Callable[[str], None]]):
    if print_fn is None:
        return Console(width=None if sys.stdout.isatty() else 130), None
    # recorded for print_fn only: a recording console still writes to its file, so the file is a throwaway buffer
    con = Console(record=True, width=120, force_terminal=False, file=io.StringIO())
    return con, print_fn


def render_report(report, *, layers: bool = False, print_fn: Optional[Callable[[str], None]] = None) -> None:
    """Print the budget table, the measurement details and (with ``layers``) the per-layer view.

    Args:
        report: A :class:`~edgekd.check.core.CheckReport`.
        layers: Also print the per-op table (RAM peak, latency share).
        print_fn: Where text goes (default: the terminal via rich).
    """
    con, sink = _console(print_fn)
    b = report.board
    t = Table(title=f"edgekd check: {_esc(report.model_path)} on {_esc(b.name)} ({_esc(b.core)} @ "
                    f"{b.clock_hz / 1e6:g} MHz)")
    for col in ("budget", "limit", "measured / estimated", "margin", "result"):
        t.add_column(col, justify="right" if col in ("limit", "measured / estimated", "margin") else "left")
    for r in report.rows:
        res = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        lim = _fmt(r.budget, r.unit) + (" (override)" if r.source == "override" else "")
        if r.budget is None:
            lim = "none set"
        t.add_row(r.name, lim, _fmt(r.value, r.unit), _fmt(r.margin, r.unit), res)
    con.print(t)
    a = report.arena
    if a.failure is not None:
        con.print(f"[red]TFLM: {_esc(a.failure.message)}[/red] — the model cannot run on TFLM as is.")
    else:
        con.print(
            f"RAM: TFLM arena {_int(a.arena_bytes)} B (bisected to 16 B in {a.probes} probes, "
            f"{a.seconds:.1f} s); "
            f"TFLM's allocation record: {_int(a.record_total_bytes)} B = head {_int(a.record_head_bytes)} B "
            f"(activations) + tail {_int(a.record_tail_bytes)} B (persistent); "
            f"+ runtime {report.runtime_ram_bytes:,} B.")
        con.print(
            "     This 64-bit host over-states the arena vs a 32-bit MCU by an estimated "
            f"~{a.host_overstatement_bytes:,} B "
            f"(pointer fields of persistent structures): ~{_int(a.mcu_arena_estimate_bytes)} B on the board "
            "(an estimate, not a bound: docs/check.md).")
        if report.profiler_peak_ram_bytes is not None:
            con.print(f"     Profiler peak-RAM estimate (a lower bound): {report.profiler_peak_ram_bytes:,} B "
                      f"(arena head measured: {_int(a.record_head_bytes)} B).")
    c = getattr(report, "compiled", None)
    if c is not None:
        con.print(f"Engine: compiled ({c.runtime}, {c.kernels} kernels, {c.ops} ops), linked for a Cortex-M4F: "
                  f"flash {c.flash_bytes:,} B, static RAM {c.ram_bytes:,} B (activation buffer "
                  f"{c.activation_bytes:,} B); the flash and RAM rows use these, the TFLM arena above is the "
                  "interpreter's (--engine interpreter).")
    em = report.emulation
    if em is not None:
        con.print(
            f"Emulated: {em.runtime} ({em.kernels} kernels) on QEMU {em.machine}, Cortex-M4F: arena "
            f"{em.arena_used_bytes:,} B used on the 32-bit target (the RAM row uses it); TFLM linked for this op "
            f"set {em.size.tflm_flash:,} B of flash (the flash row uses it); {len(em.predicted)} sample(s) "
            f"within {em.max_diff_steps} step(s) of TFLM on the host, class agreement {em.class_agreement:.1%}; "
            f"{em.instructions[0]:,} instructions per inference"
            + (f" = {em.latency.total_ms:,.2f} ms on the board" if em.latency is not None else "") + ".")
    if report.inference_failure is not None:
        con.print(f"[red]TFLM inference: {_esc(report.inference_failure.message)}[/red]")
    for failure in getattr(report, "litert_failures", ()):
        con.print(f"[red]{_esc(failure.message)}[/red]")
    lat = report.board_latency
    con.print(f"Latency: board estimate {lat.total_ms:,.2f} ms ({lat.macs:,} MACs, {lat.kernels} kernels)"
              + (f"; host LiteRT median {report.host_latency.median_ms:.3f} ms, p90 "
                 f"{report.host_latency.p90_ms:.3f} ms ({report.host_latency.runs} runs, 1 thread)"
                 if report.host_latency else ""))
    acc = report.accuracy
    if acc is not None:
        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}%"
        con.print(f"Accuracy on {acc.samples} samples: float {pct(acc.float_accuracy)}, LiteRT int8 "
                  f"{pct(acc.litert_accuracy)}, TFLM int8 {pct(acc.tflm_accuracy)}; max |LiteRT - TFLM| = "
                  f"{'-' if acc.max_diff_steps is None else acc.max_diff_steps} quantized step(s), argmax "
                  f"agreement {pct(acc.argmax_agreement)}.")
    for n in report.notes:
        con.print(f"note: {_esc(n)}")
    if layers:
        render_layers(report, console=con)
    verdict = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red] (" + ", ".join(
        report.failed_budgets + (["tflm"] if a.failure or report.inference_failure else [])
        + (["litert"] if getattr(report, "litert_failures", ()) else [])) + ")"
    con.print(f"Result: {verdict}")
    if sink is not None:
        sink(con.export_text())


def render_layers(report, *, console=None) -> None:
    """Per-op table: MACs, estimated board time and share, live activation bytes (RAM peak marked)."""
    con = console or Console()
    t = Table(title="Per layer (RAM: activations alive while the op runs; latency: board estimate)")
    for col in ("#", "op", "output", "shape", "MACs", "board ms", "share", "live act.", ""):
        right = col in ("#", "MACs", "board ms", "share", "live act.")
        t.add_column(col, justify="right" if right else "left")
    top = sorted(report.layers, key=lambda r: -r.board_ms)[:3]
    for r in report.layers:
        mark = "RAM peak" if r.is_ram_peak else ""
        if r in top:
            mark = (mark + " " if mark else "") + "slowest"
        name = r.output if len(r.output) <= 32 else "…" + r.output[-31:]
        t.add_row(str(r.index), _esc(r.op_name), _esc(name), "x".join(map(str, r.output_shape)), f"{r.macs:,}",
                  f"{r.board_ms:.3f}", f"{100 * r.latency_share:.1f}%", f"{r.live_activation_bytes:,}", mark)
    con.print(t)


def render_boards(boards: list[Board], *, print_fn: Optional[Callable[[str], None]] = None) -> None:
    """Table of board profiles (``edgekd boards``)."""
    con, sink = _console(print_fn)
    t = Table(title="edgekd boards")
    for col in ("id", "name", "core", "MHz", "flash", "RAM", "usable flash", "usable RAM", "kernels", "TFLM"):
        t.add_column(col)
    for b in boards:
        t.add_row(b.id, b.name, b.core, f"{b.clock_hz / 1e6:g}", f"{b.flash_bytes // 1024} KiB",
                  f"{b.ram_bytes // 1024} KiB", f"{b.flash_budget_bytes // 1024} KiB",
                  f"{b.ram_budget_bytes // 1024} KiB", b.optimized_kernels,
                  "yes" if b.tflm_supported else "no")
    con.print(t)
    if sink is not None:
        sink(con.export_text())
