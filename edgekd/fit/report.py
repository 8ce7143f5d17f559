"""What ``fit`` shows and writes: the teacher/student table, ``trials.csv``/``.json``, ``pareto.png`` and the export.

Figures are labelled by how they were obtained: measured on the int8 model
(flash, the TFLM arena), or estimated (the board's latency model, and the
teacher's RAM from its profile, marked "est.").
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Callable, Optional, Sequence

from rich.table import Table

from edgekd._io import atomic_save, atomic_write_bytes, staged_dir
from edgekd.check.budgets import Budgets
from edgekd.export import export_files
from edgekd.firmware import write_project

from .records import FitResult, Trial, trial_path

__all__ = ["REPORT_FILES", "binding_budget", "comparison_table", "pareto_figure", "pareto_png", "write_report"]

# Every file a report may hold (write_report; the export's are edgekd.export.write_export's).
REPORT_FILES = ("trials.csv", "trials.json", "pareto.png", "model.tflite", "model_data.h", "model_data.cc",
                "model_ops.h", "export.json")
CSV_COLUMNS = ["number", "state", "spec", "arch", "width", "resolution", "depth", "temperature", "input_shape",
               "params", "macs", "est_flash_bytes", "est_ram_bytes", "est_latency_ms", "flash_bytes", "ram_bytes",
               "arena_bytes", "latency_ms", "float_accuracy", "int8_accuracy", "violations", "epochs_run", "note"]


def binding_budget(trials: Sequence[Trial], budgets: Budgets) -> str:
    """A sentence naming the budget that bound the search when no candidate passed."""
    names = {"flash": ("flash", budgets.flash_bytes, "est_flash_bytes", "flash_bytes"),
             "ram": ("RAM", budgets.ram_bytes, "est_ram_bytes", "ram_bytes"),
             "latency": ("latency", budgets.latency_ms, "est_latency_ms", "latency_ms")}
    considered = [t for t in trials if t.state in ("infeasible", "over_budget")]
    if not considered:
        return "no candidate completed; run more `trials`."
    counts = {k: sum(k in t.violations for t in considered) for k in names}
    key = max(counts, key=lambda k: counts[k])
    label, limit, est, meas = names[key]
    best = min((getattr(t, meas) if getattr(t, meas) is not None else getattr(t, est)) for t in considered)
    unit = (lambda v: f"{v / 1024:.1f} KB") if key != "latency" else (lambda v: f"{v:.2f} ms")
    flag = {"flash": "`max_flash`", "ram": "`max_ram`", "latency": "`max_latency_ms`"}[key]
    every = "every one" if counts[key] == len(considered) else f"{counts[key]}"
    return (f"the {label} budget ({unit(limit)}) was exceeded by {every} of the {len(considered)} candidates; "
            f"the smallest needed {unit(best)}. Raise {flag}, pick a smaller `arch`, or widen the search.")


def comparison_table(result: FitResult, *, print_fn: Optional[Callable[[Any], None]] = None) -> Any:
    """A rich table of teacher vs chosen student (returns it; prints it with ``print_fn`` when given).

    A figure that is an estimate rather than a measurement reads "est.".
    """
    t = Table(title=f"teacher vs chosen student on {result.board.id} (test split)",
              caption="est. = estimated (profile / board latency model), not measured")
    t.add_column("")
    t.add_column("teacher", justify="right")
    t.add_column("student", justify="right")
    rows = result.comparison or {}
    te, st = rows.get("teacher", {}), rows.get("student", {})

    def f(key: str, fmt: Callable[[Any], str]) -> list[str]:
        return [(fmt(d[key]) + (" est." if key in d.get("estimated", ()) else "")) if d.get(key) is not None
                else "–" for d in (te, st)]

    t.add_row("params", *f("params", lambda v: f"{v:,}"))
    t.add_row("MACs", *f("macs", lambda v: f"{v:,}"))
    t.add_row("flash (int8 + runtime)", *f("flash_bytes", lambda v: f"{v / 1024:.1f} KB"))
    t.add_row("RAM (TFLM arena + runtime)", *f("ram_bytes", lambda v: f"{v / 1024:.1f} KB"))
    t.add_row(f"latency on {result.board.id}", *f("latency_ms", lambda v: f"{v:.2f} ms"))
    t.add_row("float accuracy", *f("float_accuracy", lambda v: f"{100 * v:.2f}%"))
    t.add_row("int8 accuracy", *f("int8_accuracy", lambda v: f"{100 * v:.2f}%"))
    if print_fn is not None:
        print_fn(t)
    return t


def _trials_csv(result: FitResult) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in (t.to_dict() for t in result.trials):
        w.writerow({**r, "input_shape": "x".join(map(str, r["input_shape"])), "violations": ";".join(r["violations"])})
    return buf.getvalue().encode()


def write_report(result: FitResult, outdir: str | os.PathLike, *,
                 firmware: Optional[dict[str, Any]] = None) -> list[str]:
    """Write ``trials.csv``, ``trials.json``, ``pareto.png`` and (when one passed) the chosen model's export.

    With the chosen model also ``student.keras``, and each of ``firmware``'s
    projects (subfolder name -> :class:`edgekd.firmware.Project`). Everything
    replaces the previous report in one step (:func:`edgekd._io.staged_dir`):
    an interrupt or a killed process leaves the whole previous report or the
    whole new one. Other files in ``outdir`` (``study.db``, ``trials/``) are
    kept as they are.

    Returns:
        The paths written.
    """
    outdir = os.fspath(outdir)
    files = {
        "trials.csv": _trials_csv(result),
        "trials.json": (json.dumps(result.summary(), indent=2, sort_keys=True, default=float) + "\n").encode(),
        "pareto.png": pareto_png(result),
    }
    chosen = result.best is not None and result.best_tflite is not None
    if chosen:
        files.update(export_files(bytes(result.best_tflite), name="model", source_model=result.best.spec,
                                  mode="int8")[0])
    # Chosen in an earlier run of a resumed study: the student saved with its trial (fit's artifacts).
    kept = trial_path(os.path.join(outdir, "trials"), result.best.number, "keras") if chosen else None
    written = list(files)
    # A report's files replace the previous report's, all of them: a name this one lacks is dropped, so
    # no file of an earlier report stays beside this one (e.g. the student of another chosen model).
    owned = [*REPORT_FILES, "student.keras", *(f"firmware-{t}" for t in ("arduino", "esp-idf", "platformio")),
             *(firmware or {})]
    with staged_dir(outdir, owned=owned) as stage:
        for name, data in files.items():
            atomic_write_bytes(os.path.join(stage, name), data)
        if chosen and result.best_keras is not None:  # the bytes stored with the trial: every worker writes the same
            atomic_write_bytes(os.path.join(stage, "student.keras"), bytes(result.best_keras))
            written.append("student.keras")
        elif chosen and result.best_model is not None:
            atomic_save(os.path.join(stage, "student.keras"), result.best_model.save)
            written.append("student.keras")
        elif kept is not None and os.path.isfile(kept):
            with open(kept, "rb") as f:
                atomic_write_bytes(os.path.join(stage, "student.keras"), f.read())
            written.append("student.keras")
        for sub, project in (firmware or {}).items():
            written += [os.path.relpath(p, stage) for p in write_project(project, os.path.join(stage, sub))]
    return [os.path.join(outdir, rel) for rel in written]


# ---------------------------------------------------------------------------------------------- pareto plot

def _value(t: Trial, measured: str, estimated: str) -> float:
    v = getattr(t, measured)
    return v if v is not None else getattr(t, estimated)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats (lower cost and higher accuracy), by increasing cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _limits(values: Sequence[float], pad: float = 0.08) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    span = hi - lo if hi > lo else max(abs(hi), 1e-9) * 0.2
    return lo - pad * span, hi + pad * span


def pareto_figure(result: FitResult) -> Any:
    """The figure of :func:`pareto_png`: int8 accuracy against flash, RAM and latency, one panel each.

    Axes are scaled to the trained candidates (not from zero, not to a
    budget far away: a budget out of view is named at the panel's edge); the
    Pareto front of each panel is drawn, the budgets as dashed lines, and the
    chosen model ringed and labelled without covering the points.
    """
    b = result.budgets
    panels = [("flash", "flash_bytes", "est_flash_bytes", 1 / 1024, "flash (KB, .tflite + runtime)",
               b.flash_bytes),
              ("RAM", "ram_bytes", "est_ram_bytes", 1 / 1024, "RAM (KB, TFLM arena + runtime)", b.ram_bytes),
              ("latency", "latency_ms", "est_latency_ms", 1.0, f"latency on {result.board.id} (ms, estimated)",
               b.latency_ms)]
    trained = [t for t in result.trials if t.int8_accuracy is not None and t.repeat_of is None]
    untrained = sum(t.state == "infeasible" for t in result.trials)
    from matplotlib.figure import Figure  # matplotlib: only for the plot, not for `import edgekd.fit`

    fig = Figure(figsize=(15, 4.6), dpi=100)  # not pyplot: no global figure, no backend switched
    axes = fig.subplots(1, 3, sharey=True)
    accs = [100 * t.int8_accuracy for t in trained]
    if trained:
        axes[0].set_ylim(*_limits(accs + ([100 * result.teacher_accuracy] if result.teacher_accuracy else [])))
    for ax, (name, meas, est, scale, label, limit) in zip(axes, panels):
        xs = [_value(t, meas, est) * scale for t in trained]
        for state, color, marker in (("passed", "tab:green", "o"), ("over_budget", "tab:red", "x")):
            pts = [(x, a) for x, a, t in zip(xs, accs, trained) if t.state == state]
            if not pts:
                continue
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=color, marker=marker, s=36, zorder=3,
                       label=state.replace("_", " "))
        if trained:
            front = pareto_front(list(zip(xs, accs)))
            ax.plot([p[0] for p in front], [p[1] for p in front], drawstyle="steps-post", color="tab:purple",
                    linewidth=1.2, marker="s", markersize=9, markerfacecolor="none", alpha=0.8, zorder=2,
                    label="Pareto front")
            # a budget near the candidates joins the view; one far off (960 KB of flash for 60 KB students)
            # would crush them against the edge: it is named there instead
            near = [limit * scale] if limit and limit * scale <= 1.5 * max(xs) else []
            ax.set_xlim(*_limits(xs + near))
        if limit:
            lo, hi = ax.get_xlim()
            if limit * scale < lo:  # every candidate over it: the budget joins the view
                ax.set_xlim(limit * scale - 0.05 * (hi - lo), hi)
            if limit * scale <= hi:
                ax.axvline(limit * scale, color="tab:red", linestyle="--", linewidth=1, label="budget")
            else:
                unit = "ms" if name == "latency" else "KB"
                ax.annotate(f"{name} budget {limit * scale:,.1f} {unit} →", xy=(0.98, 0.03), xycoords="axes fraction",
                            ha="right", fontsize=8, color="tab:red")
        if result.teacher_accuracy is not None:
            ax.axhline(100 * result.teacher_accuracy, color="tab:blue", linestyle=":", linewidth=1,
                       label=f"teacher {100 * result.teacher_accuracy:.1f}%")
        best = result.best
        if best is not None and best.int8_accuracy is not None:
            bx, by = _value(best, meas, est) * scale, 100 * best.int8_accuracy
            ax.scatter([bx], [by], marker="o", s=260, facecolors="none", edgecolors="black", linewidths=1.5,
                       zorder=4, label="chosen")
            ax.annotate(f"chosen\n{best.spec}", xy=(bx, by), xytext=(8, -22), textcoords="offset points",
                        fontsize=7, arrowprops={"arrowstyle": "-", "linewidth": 0.6})
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("int8 validation accuracy (%)")
    legend = {}
    for ax in axes:  # below the panels, where it hides no point
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    note = f"; {untrained} candidate(s) not trained (profile over budget)" if untrained else ""
    fig.suptitle(f"edgekd fit — {result.arch} students for {result.board.id}: {len(trained)} measured{note}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def pareto_png(result: FitResult) -> bytes:
    """int8 accuracy against flash, RAM and board latency (see :func:`pareto_figure`), as PNG bytes."""
    buf = io.BytesIO()
    pareto_figure(result).savefig(buf, format="png")
    return buf.getvalue()
