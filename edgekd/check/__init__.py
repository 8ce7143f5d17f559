"""On-host budget checks: flash, RAM (the real TFLM arena) and latency against a board.

The module itself is callable: ``edgekd.check(model, board=...)`` is
:func:`edgekd.check.check`.

Example:
    >>> from edgekd.check import check, render_report
    >>> report = check("model.tflite", board="nano33ble", max_ram="128KB")  # doctest: +SKIP
    >>> render_report(report, layers=True)  # doctest: +SKIP
    >>> report.exit_code  # doctest: +SKIP
    0
"""


from edgekd.check.budgets import BudgetRow, Budgets, parse_latency, parse_size, resolve_budgets
from edgekd.check.core import (
    Accuracy,
    CheckReport,
    LayerRow,
    check,
    validate_ops,
)
from edgekd.check.latency import (
    BoardLatency,
    HostLatency,
    estimate_board_latency,
    measure_host_latency,
    op_costs,
)
from edgekd.check.render import render_boards, render_layers, render_report
from edgekd.check.tflm import ArenaMeasurement, TFLMFailure, host_overstatement, run_tflm

__all__ = [
    "Accuracy", "ArenaMeasurement", "BoardLatency", "BudgetRow", "Budgets", "CheckReport", "HostLatency", "LayerRow",
    "TFLMFailure", "check", "estimate_board_latency", "host_overstatement", "measure_host_latency",
    "op_costs",
    "parse_latency", "parse_size", "render_boards", "render_layers", "render_report", "resolve_budgets", "run_tflm",
    "validate_ops",
]


from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, check)
