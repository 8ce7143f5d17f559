"""Render :class:`~edgekd.profile.ModelProfile` data for people (rich tables).

Machines get :meth:`ModelProfile.to_json` / :meth:`ModelProfile.to_csv`.
Every printer takes ``print_fn``: given, it receives the rendered plain text
(one string; e.g. ``print`` or ``logging.info``); omitted, the table goes to
the terminal through rich.
"""

from __future__ import annotations

from typing import Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekd.profile._types import MAC_KINDS, ModelProfile


def _esc(text: object) -> str:
    """Names from a model file (layers, tensors, custom ops, the file) shown as they are, never as rich markup."""
    return escape(str(text))


def fmt_count(n: int) -> str:
    """1234567 -> '1.23M'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def fmt_bytes(n: int) -> str:
    """Bytes with binary units: 2048 -> '2.0 KiB'."""
    if abs(n) < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024.0
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    return f"{n:.1f} GiB"


def _use_int8(p: ModelProfile, int8: Optional[bool]) -> bool:
    return p.source == "tflite" if int8 is None else bool(int8)


def profile_table(p: ModelProfile, *, int8: Optional[bool] = None):
    """A rich Table of the per-layer rows with a totals footer.

    Args:
        p: The profile.
        int8: Show int8 weight/activation bytes (default: True for a TFLite
            profile, False for Keras, which shows float32 bytes).
    """
    i8 = _use_int8(p, int8)
    dt = "int8" if i8 else "f32"
    kinds = p.macs_by_kind
    caption = (
        f"{p.source}: params {p.params:,} (inference {p.inference_params:,}) · MACs {p.macs:,} "
        "(" + ", ".join(f"{k} {fmt_count(kinds[k])}" for k in MAC_KINDS) + ") · "
        f"flash int8 ≈ {fmt_bytes(p.flash_int8_bytes)} · peak RAM {fmt_bytes(p.peak_ram_bytes)} int8 / "
        f"{fmt_bytes(p.peak_ram_f32_bytes)} f32 (at {_esc(p.peak_ram_at or '-')})"
    )
    if p.unsupported:
        caption += f" · MACs not counted for: {_esc(', '.join(p.unsupported))}"
    table = Table(title=f"{_esc(p.name)} ({p.source})", caption=caption, show_footer=True)
    table.add_column("layer", footer="total")
    table.add_column("type")
    table.add_column("output", no_wrap=True)
    table.add_column("params", justify="right", footer=f"{p.params:,}")
    table.add_column("MACs", justify="right", footer=f"{p.macs:,}")
    w_total = p.weight_bytes_int8 if i8 else p.weight_bytes_f32
    table.add_column(f"weights {dt}", justify="right", footer=fmt_bytes(w_total))
    peak = p.peak_ram_bytes if i8 else p.peak_ram_f32_bytes
    table.add_column(f"activation {dt}", justify="right", footer=f"peak {fmt_bytes(peak)}")
    for r in p.layers:
        table.add_row(
            _esc(r.name), _esc(r.op_type), "×".join(str(d) for d in r.output_shape), f"{r.params:,}", f"{r.macs:,}",
            fmt_bytes(r.weight_bytes_int8 if i8 else r.weight_bytes_f32),
            fmt_bytes(r.activation_bytes if i8 else r.activation_bytes_f32),
        )
    return table


def comparison_table(teacher: ModelProfile, student: ModelProfile):
    """A rich Table comparing the totals of two profiles side by side (e.g. teacher vs shrunk student)."""
    table = Table(title=f"{_esc(teacher.name)} → {_esc(student.name)}")
    table.add_column("")
    table.add_column("teacher", justify="right")
    table.add_column("student", justify="right")
    table.add_column("student / teacher", justify="right")

    def ratio(a: float, b: float) -> str:
        return f"{b / a:.3f}×" if a else "-"

    tk, sk = teacher.macs_by_kind, student.macs_by_kind
    rows = [
        ("input", "×".join(map(str, teacher.input_shape)), "×".join(map(str, student.input_shape)), ""),
        ("layers", str(len(teacher.layers)), str(len(student.layers)), ratio(len(teacher.layers),
                                                                             len(student.layers))),
        ("params", f"{teacher.params:,}", f"{student.params:,}", ratio(teacher.params, student.params)),
        ("MACs", f"{teacher.macs:,}", f"{student.macs:,}", ratio(teacher.macs, student.macs)),
    ]
    rows += [(f"  {k} MACs", f"{tk[k]:,}", f"{sk[k]:,}", ratio(tk[k], sk[k])) for k in MAC_KINDS]
    rows += [
        ("weights int8", fmt_bytes(teacher.weight_bytes_int8), fmt_bytes(student.weight_bytes_int8),
         ratio(teacher.weight_bytes_int8, student.weight_bytes_int8)),
        ("flash int8 (est.)", fmt_bytes(teacher.flash_int8_bytes), fmt_bytes(student.flash_int8_bytes),
         ratio(teacher.flash_int8_bytes, student.flash_int8_bytes)),
        ("peak RAM int8", fmt_bytes(teacher.peak_ram_bytes), fmt_bytes(student.peak_ram_bytes),
         ratio(teacher.peak_ram_bytes, student.peak_ram_bytes)),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def _emit(renderable, print_fn: Optional[Callable[[str], object]], width: int) -> None:
    if print_fn is None:
        Console().print(renderable)
        return
    console = Console(width=width, record=True, force_terminal=False, color_system=None, file=_NullFile())
    console.print(renderable)
    print_fn(console.export_text().rstrip("\n"))


class _NullFile:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def print_profile(
    p: ModelProfile,
    *,
    int8: Optional[bool] = None,
    print_fn: Optional[Callable[[str], object]] = None,
    width: int = 140,
) -> None:
    """Print the per-layer table of a profile.

    Args:
        p: The profile.
        int8: Show int8 bytes instead of float32 (default: int8 for TFLite).
        print_fn: Receives the rendered text instead of the terminal (e.g. ``print``).
        width: Text width when ``print_fn`` is given.
    """
    _emit(profile_table(p, int8=int8), print_fn, width)


def print_comparison(
    teacher: ModelProfile,
    student: ModelProfile,
    *,
    print_fn: Optional[Callable[[str], object]] = None,
    width: int = 100,
) -> None:
    """Print teacher vs student totals side by side (see :func:`comparison_table`)."""
    _emit(comparison_table(teacher, student), print_fn, width)
