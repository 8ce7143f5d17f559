"""``edgekd check`` and ``edgekd boards``."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from edgekd.cli import in_options
from edgekd.cli._common import board_options, check_keras_path, load_keras, resize_option, resolve_board, unsafe_option
from edgekd.errors import EdgeKDError, TFLiteFileError
from edgekd import boards as registry
from edgekd.check import check as run_check
from edgekd.check import render_report
from edgekd.check.budgets import resolve_budgets
from edgekd.check.render import render_boards
from edgekd.engine import ENGINES
from edgekd.cli._common import console, data_for_tflite, load_dataset
from edgekd.emulate.qemu import emulate as run_emulate
from edgekd.emulate.qemu import require_emulator


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
            if ctx.params.get("as_json"):  # with the options' names, as the error line on stderr
                _echo_json_error(type(e).__name__, in_options(str(e), self), e.exit_code)
            raise


@click.command("check", cls=_JSONErrorsCommand)
@click.argument("model", type=str)
@board_options()
@click.option("--max-flash", default=None, help="Flash budget, e.g. 512KB (KB = KiB = 1024 B; MB = 1024² B).")
@click.option("--max-ram", default=None, help="RAM budget, e.g. 128KB.")
@click.option("--max-latency-ms", type=float, default=None, help="Latency budget for the board estimate.")
@click.option("--data", "data_path", default=None,
              help="Data for accuracy and LiteRT/TFLM parity: a .npz/.npy or folder of them; its x_test is "
                   "evaluated, else x_val, else x (docs/data.md).")
@click.option("--dataset", default=None, help="Bundled dataset instead of --data (digits: its test split).")
@resize_option
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
@click.option("--engine", type=click.Choice(ENGINES), default="interpreter", show_default=True,
              help="compiled: budget flash and RAM for the compiled engine (the model as C++ calling TFLM's kernels, "
                   "linked for a Cortex-M4F: no interpreter, no arena; docs/engine.md).")
@click.option("--tflm", default=None, help="TFLM source tree for --emulate and --engine compiled (else $EDGEKD_TFLM).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(model, board_id, board_file, max_flash, max_ram, max_latency_ms, data_path, dataset, float_model,
          resize, unsafe, max_samples, reference_kernels, no_host_latency, layers, emulate, engine, tflm, as_json):
    """Check MODEL.tflite's flash, RAM and latency against a board.

    Exit status: 0 when every budget holds, 1 when one is exceeded (or TFLM
    cannot run the model), 2 for bad input. With --json an error is also a
    JSON object on stdout: {"error": {"type", "message"}, "exit_code", "passed": false}.
    """

    if os.path.isdir(model):
        raise TFLiteFileError(f"{model} is a directory. Pass a .tflite file (edgekd export writes one).")

    board = resolve_board(board_id, board_file)

    resolve_budgets(board, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms)  # as fit does

    ds = load_dataset(dataset, data_path)
    data = None
    if ds is not None:  # the test split (else x_val, else x), checked against the model's input and classes
        data = data_for_tflite(ds, model, resize=resize, print_fn=console(stderr=True).print).evaluation.labeled()
    if float_model is not None:
        check_keras_path(float_model, what="Float model")
    if emulate:
        require_emulator(board)  # before loading anything: emulate()'s own check
    if float_model is not None:
        float_model = load_keras(float_model, unsafe=unsafe)
    emulation = None
    if emulate:
        samples = None if data is None else data.x[:min(64, max_samples)]
        emulation = run_emulate(model, board=board, tflm=tflm, samples=samples,
                                num_samples=1 if samples is None else len(samples))
    report = run_check(model if emulation is None else emulation.model,  # read once, by emulate
                       board=board, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms,
                       data=data, float_model=float_model, max_samples=max_samples, emulation=emulation,
                       host_latency=not no_host_latency, optimized_kernels=not reference_kernels,
                       engine=engine, tflm=tflm)
    evaluated = None if data is None else data.describe()  # which split the accuracy is of
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "data": evaluated}, indent=2))
    else:
        if evaluated:
            click.echo(f"Data: {evaluated}")
        render_report(report, layers=layers)
    sys.exit(report.exit_code)


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON (with sources).")
def boards(as_json):
    """List the known board profiles."""
    all_b = registry.all_boards()
    if as_json:
        click.echo(json.dumps([b.to_dict() for b in all_b], indent=2))
    else:
        render_boards(all_b)
