"""``edgekd check`` and ``edgekd boards``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from edgekd.cli._common import board_options, resolve_board, unsafe_option
from edgekd.errors import EdgeKDError


def _echo_json_error(kind: str, message: str, exit_code: int) -> None:
    """The JSON a failing ``check --json`` prints on stdout (stderr still gets the one-line message)."""
    click.echo(json.dumps({"error": {"type": kind, "message": message}, "exit_code": exit_code, "passed": False},
                          indent=2))


class _JSONErrorsCommand(click.Command):
    """With ``--json``, an error also prints a JSON error object on stdout, so ``> check.json`` is never empty."""

    def make_context(self, info_name: Any, args: list, parent: Any = None, **extra: Any) -> click.Context:
        as_json = "--json" in args
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as e:  # usage errors: unknown option, bad value, missing argument
            if as_json:
                _echo_json_error("UsageError", " ".join(e.format_message().split()), 2)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeKDError as e:
            if ctx.params.get("as_json"):
                _echo_json_error(type(e).__name__, str(e), e.exit_code)
            raise


@click.command("check", cls=_JSONErrorsCommand)
@click.argument("model", type=str)
@board_options()
@click.option("--max-flash", default=None, help="Flash budget, e.g. 512KB (KB = KiB = 1024 B; MB = 1024² B).")
@click.option("--max-ram", default=None, help="RAM budget, e.g. 128KB.")
@click.option("--max-latency-ms", type=float, default=None, help="Latency budget for the board estimate.")
@click.option("--data", "data_path", default=None,
              help=".npz with x (and y) for accuracy and LiteRT/TFLM parity.")
@click.option("--dataset", default=None, help="Bundled dataset instead of --data (digits: its test split).")
@click.option("--float-model", default=None,
              help="Float Keras model (.keras, .h5, SavedModel) whose accuracy is shown next to int8.")
@unsafe_option
@click.option("--max-samples", type=int, default=500, show_default=True, help="Samples of the data to run.")
@click.option("--reference-kernels", is_flag=True, help="Estimate latency with reference kernels only.")
@click.option("--no-host-latency", is_flag=True, help="Skip the LiteRT latency measurement.")
@click.option("--layers", is_flag=True, help="Per-layer view: where RAM peaks, which ops dominate latency.")
@click.option("--emulate", "emulate", is_flag=True,
              help="Also run the model on the board's emulated core (QEMU; see `edgekd emulate`): RAM and "
                   "flash as measured there, outputs compared with the host.")
@click.option("--tflm", default=None, help="TFLM source tree for --emulate (else $EDGEKD_TFLM).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(model, board_id, board_file, max_flash, max_ram, max_latency_ms, data_path, dataset, float_model,
          unsafe, max_samples, reference_kernels, no_host_latency, layers, emulate, tflm, as_json):
    """Check MODEL.tflite's flash, RAM and latency against a board.

    Exit status: 0 when every budget holds, 1 when one is exceeded (or TFLM
    cannot run the model), 2 for bad input. With --json an error is also a
    JSON object on stdout: {"error": {"type", "message"}, "exit_code", "passed": false}.
    """
    import os

    from edgekd.check import check as run_check
    from edgekd.check import render_report
    from edgekd.errors import InvalidArgumentError, TFLiteFileError

    if os.path.isdir(model):
        raise TFLiteFileError(f"{model} is a directory. Pass a .tflite file (edgekd export writes one).")

    board = resolve_board(board_id, board_file)
    from edgekd.check.budgets import resolve_budgets

    resolve_budgets(board, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms)  # as fit does
    if data_path and dataset:
        raise InvalidArgumentError("Pass --data FILE.npz or --dataset NAME, not both.")
    data = None
    if data_path:
        from edgekd.datasets import load_arrays

        data = load_arrays(data_path)
    elif dataset:
        from edgekd import datasets

        data = datasets.get(dataset).test
    if float_model is not None:
        from edgekd.cli._common import check_keras_path, load_keras

        check_keras_path(float_model, what="Float model")
    if data is not None and data.y is not None:
        _check_label_range(model, data)
    if emulate and not board.emulator:
        from edgekd.emulate.qemu import emulatable_boards

        raise InvalidArgumentError(f"Board {board.id!r} cannot be emulated: drop --emulate, or check one of "
                                   f"{', '.join(emulatable_boards())}.")
    if float_model is not None:
        float_model = load_keras(float_model, unsafe=unsafe)
    emulation = None
    if emulate:
        from edgekd.emulate.qemu import emulate as run_emulate

        samples = None if data is None else data.x[:min(64, max_samples)]
        emulation = run_emulate(model, board=board, tflm=tflm, samples=samples,
                                num_samples=1 if samples is None else len(samples))
    report = run_check(model, board=board, max_flash=max_flash, max_ram=max_ram,
                       max_latency_ms=max_latency_ms, data=data, float_model=float_model,
                       max_samples=max_samples, emulation=emulation,
                       host_latency=not no_host_latency, optimized_kernels=not reference_kernels)
    if as_json:
        click.echo(report.to_json())
    else:
        render_report(report, layers=layers)
    sys.exit(report.exit_code)


def _check_label_range(model: str, data: Any) -> None:
    """Labels must be class ids of the model's output (a file that does not read is check's to report)."""
    from edgekd.datasets import check_labels
    from edgekd.errors import TFLiteFileError
    from edgekd.flatbuffer import read_tflite

    try:
        outputs = read_tflite(model).output_tensors
    except TFLiteFileError:
        return
    if len(outputs) == 1 and outputs[0].shape:
        check_labels(data.y, int(outputs[0].shape[-1]), source="the --data labels")


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON (with sources).")
def boards(as_json):
    """List the known board profiles."""
    from edgekd import boards as registry
    from edgekd.check.render import render_boards

    all_b = registry.all_boards()
    if as_json:
        click.echo(json.dumps([b.to_dict() for b in all_b], indent=2))
    else:
        render_boards(all_b)
