"""Render an :class:`edgekd.emulate.qemu.Emulation` as text (the data is computed elsewhere)."""

from __future__ import annotations

from typing import Callable, Optional

from edgekd.emulate.qemu import Emulation


def _kb(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def _compiled_lines(em: Emulation) -> list[str]:
    """Memory lines of a compiled engine's emulation: no arena, the engine's object instead of model_data."""
    return [
        f"  engine       compiled (no interpreter, no arena): static RAM of the engine {_kb(em.size.model_ram)} "
        "(activation buffer and state)",
        f"  flash        TFLM kernels {_kb(em.size.tflm_flash)} + engine (weights, parameters, code) "
        f"{_kb(em.size.model_flash)} = {_kb(em.size.firmware_flash)}",
        f"               whole image text {em.size.text:,} + data {em.size.data:,} B (runner, newlib, semihosting "
        f"{em.size.support_flash:,} B)",
        f"  static RAM   TFLM {em.size.tflm_ram:,} B; whole image data + bss = {em.size.static_ram:,} B",
    ]


def emulation_lines(em: Emulation) -> list[str]:
    """The text report of an emulation, line by line."""
    n = len(em.predicted)
    compiled = getattr(em, "engine", "interpreter") == "compiled"
    lines = [
        f"edgekd emulate: {em.board} on QEMU {em.machine} (Cortex-M4F), {em.runtime} with {em.kernels} kernels",
        f"  outputs      {n} sample(s): max difference {em.max_diff_steps} quantized step(s), class agreement "
        f"{em.class_agreement:.1%} vs {em.compared_with}",
    ]
    lines += _compiled_lines(em) if compiled else [
        f"  arena        {_kb(em.arena_used_bytes)} used on the 32-bit target (reserved {_kb(em.size.arena)})",
        f"  flash        TFLM for this op set {_kb(em.size.tflm_flash)} + model {_kb(em.size.model_flash)} = "
        f"{_kb(em.size.firmware_flash)}",
        f"               whole image text {em.size.text:,} + data {em.size.data:,} B (runner, newlib, semihosting "
        f"{em.size.support_flash:,} B; samples {em.size.samples_flash:,} B)",
        f"  static RAM   TFLM {em.size.tflm_ram:,} B; whole image data + bss - arena = {em.size.static_ram:,} B",
    ]
    if em.instructions:
        first = em.instructions[0]
        lines.append(f"  instructions {first:,} per inference (sample 0; min {min(em.instructions):,}, "
                     f"max {max(em.instructions):,}; exact to 40)")
    if em.latency is not None:
        lines.append(f"  latency      {em.latency.total_ms:.2f} ms on {em.board} at {em.latency.clock_hz / 1e6:g} MHz "
                     f"from instructions (MAC-based estimate {em.mac_latency_ms:.2f} ms)")
    elif em.mac_latency_ms is not None:
        why = "the compiled engine has no per-op profile" if compiled else \
            f"{em.board} has no cycles_per_instruction calibration"
        lines.append(f"  latency      MAC-based estimate {em.mac_latency_ms:.2f} ms ({why})")
    if compiled:
        return lines
    lines.append("  per op (sample 0):")
    lines.append(f"    {'#':>3}  {'op':<24} {'class':<16} {'instructions':>13} {'MACs':>11} {'instr/MAC':>10}")
    for o in em.ops:
        ipm = f"{o.instructions_per_mac:.2f}" if o.instructions_per_mac is not None else "-"
        lines.append(f"    {o.node:>3}  {o.op:<24} {o.op_class:<16} {o.instructions:>13,} {o.macs:>11,} {ipm:>10}")
    return lines


def render_emulation(em: Emulation, *, print_fn: Optional[Callable[[str], None]] = None) -> None:
    """Print the report (``print_fn`` defaults to ``print``)."""
    out = print_fn or print
    for line in emulation_lines(em):
        out(line)
