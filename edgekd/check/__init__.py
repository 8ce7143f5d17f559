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


from edgekd.check.core import (
    Accuracy,
    BudgetRow,
    CheckReport,
    LayerRow,
    check,
    parse_size,
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
    "Accuracy", "ArenaMeasurement", "BoardLatency", "BudgetRow", "CheckReport", "HostLatency", "LayerRow",
    "TFLMFailure", "check", "estimate_board_latency", "host_overstatement", "measure_host_latency",
    "op_costs",
    "parse_size", "render_boards", "render_layers", "render_report", "run_tflm", "validate_ops",
]


from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, check)
