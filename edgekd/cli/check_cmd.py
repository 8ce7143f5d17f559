"""``edgekd check`` and ``edgekd boards``."""

from __future__ import annotations

import json
import sys

import click


@click.command("check")
@click.argument("model", type=str)
@click.option("--board", "board_id", default=None, help="Board id (see `edgekd boards`).")
@click.option("--board-file", default=None, help="Your own board profile (.toml, see docs/boards.md).")
@click.option("--max-flash", default=None, help="Flash budget, e.g. 512KB (KB = KiB = 1024 B; MB = 1024² B).")
@click.option("--max-ram", default=None, help="RAM budget, e.g. 128KB.")
@click.option("--max-latency-ms", type=float, default=None, help="Latency budget for the board estimate.")
@click.option("--data", "data_path", default=None,
              help=".npz with x (and y) for accuracy and LiteRT/TFLM parity.")
@click.option("--dataset", default=None, help="Bundled dataset instead of --data (digits: its test split).")
@click.option("--float-model", default=None, help="Float Keras model whose accuracy is shown next to int8.")
@click.option("--max-samples", type=int, default=500, show_default=True, help="Samples of the data to run.")
@click.option("--reference-kernels", is_flag=True, help="Estimate latency with reference kernels only.")
@click.option("--no-host-latency", is_flag=True, help="Skip the LiteRT latency measurement.")
@click.option("--layers", is_flag=True, help="Per-layer view: where RAM peaks, which ops dominate latency.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(model, board_id, board_file, max_flash, max_ram, max_latency_ms, data_path, dataset, float_model,
          max_samples, reference_kernels, no_host_latency, layers, as_json):
    """Check MODEL.tflite's flash, RAM and latency against a board.

    Exit status: 0 when every budget holds, 1 when one is exceeded (or TFLM
    cannot run the model), 2 for bad input.
    """
    from edgekd import boards
    from edgekd.check import check as run_check
    from edgekd.check import render_report
    from edgekd.errors import InvalidArgumentError

    if (board_id is None) == (board_file is None):
        raise InvalidArgumentError("Pass exactly one of --board ID or --board-file FILE.toml "
                                   f"(known boards: {', '.join(boards.list_boards())}).")
    board = boards.get(board_id) if board_id else boards.load_board_file(board_file)
    if data_path and dataset:
        raise InvalidArgumentError("Pass --data FILE.npz or --dataset NAME, not both.")
    data = None
    if data_path:
        from edgekd.datasets import load_arrays

        data = load_arrays(data_path)
    elif dataset:
        from edgekd import datasets

        data = datasets.get(dataset).test
    report = run_check(model, board=board, max_flash=max_flash, max_ram=max_ram,
                       max_latency_ms=max_latency_ms, data=data, float_model=float_model,
                       max_samples=max_samples,
                       host_latency=not no_host_latency, optimized_kernels=not reference_kernels)
    if as_json:
        click.echo(report.to_json())
    else:
        render_report(report, layers=layers)
    sys.exit(report.exit_code)


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
