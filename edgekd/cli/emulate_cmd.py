"""``edgekd emulate``: run a model on an emulated Cortex-M4F board (QEMU) with TFLM's CMSIS-NN kernels."""

from __future__ import annotations

import sys

import click

from edgekd.cli._common import board_options, resize_option, resolve_board
from edgekd.emulate.qemu import emulatable_boards
from edgekd.emulate.qemu import emulate as run_emulate
from edgekd.cli._common import console, data_for_tflite, echo_json, load_dataset
from edgekd.emulate.render import render_emulation
from edgekd.engine import ENGINES
from edgekd.errors import invalid_value

DEFAULT_BOARD = "nucleo-l4r5zi"


@click.command("emulate")
@click.argument("model", type=str)
@board_options(ids=emulatable_boards, default=DEFAULT_BOARD)
@click.option("--tflm", default=None,
              help="Chirale_TensorFLowLite source tree (else $EDGEKD_TFLM or ~/Arduino/libraries).")
@click.option("--data", "data_path", default=None,
              help="Inputs to run: a .npz/.npy or folder of them; its x_test, else x_val, else x (docs/data.md).")
@click.option("--dataset", default=None, help="Bundled dataset instead of --data (digits: its test split).")
@resize_option
@click.option("--samples", "num_samples", default=16, show_default=True, type=int, help="Inputs to run (1-64).")
@click.option("--arena-size", type=int, default=None, help="Arena to reserve (default: twice TFLM's host figure).")
@click.option("--max-diff", type=int, default=1, show_default=True,
              help="Largest output difference, in quantized steps, from TFLM's host interpreter (exit 1 above).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds the emulated run may take.")
@click.option("--engine", type=click.Choice(ENGINES), default="interpreter", show_default=True,
              help="compiled: run the compiled engine (the model as C++ calling the same CMSIS-NN kernels; "
                   "docs/engine.md) instead of TFLM's interpreter.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def emulate(model, board_id, board_file, tflm, data_path, dataset, resize, num_samples, arena_size, max_diff,
            timeout, engine, as_json):
    """Run MODEL.tflite on an emulated Cortex-M4F (QEMU mps2-an386) with TFLM's CMSIS-NN kernels.

    Reports the output bytes against TFLM's host interpreter, the arena used on a
    32-bit target, flash and static RAM of the linked image, and instructions
    per op. Exit status: 0 when the outputs agree within --max-diff, 1 when not
    (or the emulated program crashed or timed out), 2 for bad input or a missing
    tool or TFLM tree.
    """
    if max_diff < 0:
        raise invalid_value("max_diff", "a number of quantized steps >= 0", max_diff)
    board = resolve_board(board_id, board_file, ids=emulatable_boards, default=DEFAULT_BOARD)
    ds = load_dataset(dataset, data_path)
    samples = None
    if ds is not None:  # the test split (else x_val, else x) at the model's input shape
        samples = data_for_tflite(ds, model, resize=resize, print_fn=console(stderr=True).print).evaluation

    em = run_emulate(model, board=board, tflm=tflm, samples=samples, num_samples=num_samples,
                     arena_size=arena_size, timeout=timeout, engine=engine)
    ok = em.max_diff_steps <= max_diff
    data = None if samples is None else f"the first {min(num_samples, len(samples))} of {samples.describe()}"
    if as_json:
        echo_json({**em.to_dict(), "max_diff_allowed": max_diff, "passed": ok, "data": data})
    else:
        if data:
            click.echo(f"Data: {data}")
        render_emulation(em, print_fn=click.echo)
        if not ok:
            click.echo(f"FAIL: outputs differ by up to {em.max_diff_steps} steps from TFLM's host interpreter "
                       f"(--max-diff {max_diff})", err=True)
    sys.exit(0 if ok else 1)
