"""``edgekd firmware`` (render a project) and ``edgekd flash`` (build + flash it)."""

from __future__ import annotations

import os
import sys
from typing import Optional

import click

from edgekd.cli._common import board_options, resize_option, resolve_board
from edgekd.firmware import flash_plan, render, run_plan, targets, write_project
from edgekd import datasets
from edgekd.engine import ENGINES
from edgekd.cli._common import check_output, console, data_for_tflite, tflite_model


def _load_samples(data: Optional[str], split: str, model: str, resize: bool):
    """(model, samples, class names or None) from --data: its SPLIT (a file without one: its evaluation split)
    at the model's input shape; resized data makes the model carry its source shape (the project states it)."""
    if data is None:
        return model, None, None

    ds = datasets.load(data)
    converted = tflite_model(model)
    if converted is None:  # render reports the file
        return model, None, None
    fitted = data_for_tflite(ds, converted, resize=resize, print_fn=console(stderr=True).print)
    if fitted.input_shape != ds.input_shape:
        converted = converted.with_(source_shape=converted.source_shape or ds.input_shape)
    return converted, getattr(fitted, split) or fitted.evaluation, list(ds.class_names) or None


@click.command("firmware")
@click.argument("model", type=click.Path(dir_okay=False))
@board_options(ids=targets.list_boards)
@click.option("--target", "-t", type=click.Choice(["arduino", "esp-idf", "platformio"]), default="arduino",
              show_default=True, help="Toolchain of the generated project.")
@click.option("--output", "-o", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder to write the project into.")
@click.option("--data", default=None,
              help="Validation data for the embedded samples: a dataset name (digits), a .npz/.npy file or a "
                   "folder of them (docs/data.md).")
@click.option("--split", default="val", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Split to take samples from (x, x_val, x_test; a file without it: x_test, else x_val, else x).")
@resize_option
@click.option("--samples", "num_samples", default=5, show_default=True, type=int,
              help="How many samples to embed.")
@click.option("--arena-size", type=int, default=None,
              help="Arena bytes TFLM needs (e.g. from `edgekd check`); measured with TFLM when omitted.")
@click.option("--arena-margin", type=float, default=0.25, show_default=True,
              help="Fraction added to the arena (at least 1024 bytes).")
@click.option("--labels", default=None,
              help="Comma-separated class names, one per output (default: the named dataset's).")
@click.option("--name", default="edgekd_model", show_default=True, help="Project / sketch name.")
@click.option("--engine", type=click.Choice(ENGINES), default="interpreter", show_default=True,
              help="interpreter: TFLM's MicroInterpreter with the flatbuffer. compiled: the model as C++ "
                   "(model_engine.cc) calling the target runtime's kernels, one static activation buffer planned "
                   "offline (no --arena-size).")
def firmware(model, board_id, board_file, target, outdir, data, split, resize, num_samples, arena_size, arena_margin,
             labels, name, engine) -> None:
    """Render an Arduino / ESP-IDF / PlatformIO project that runs MODEL (.tflite, int8) with TFLM."""
    check_output(outdir)
    board = targets.board_for_target(resolve_board(board_id, board_file, ids=targets.list_boards,
                                                   lookup=targets.get_board), target)
    label_list = [s.strip() for s in labels.split(",")] if labels else None
    model, samples, class_names = _load_samples(data, split, model, resize)
    label_list = label_list or class_names  # a named dataset knows its class names
    project = render(model, board=board, target=target, samples=samples, arena_size=arena_size,
                     arena_margin=arena_margin, labels=label_list, name=name, num_samples=num_samples, engine=engine)
    write_project(project, outdir)
    outdir = os.path.abspath(outdir)
    click.echo(project.summary())
    if samples is not None:
        click.echo(f"samples: the first {min(num_samples, len(samples))} of {samples.describe()}")
    click.echo(f"wrote {len(project.files)} files to {outdir}")
    click.echo(f"flash: edgekd flash {outdir} --port PORT   (or see {os.path.join(outdir, 'README.md')})")


@click.command("flash")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--port", "-p", default=None, help="Serial port (default: the only one found).")
@click.option("--dry-run", is_flag=True, help="Only print the commands.")
@click.option("--fqbn", default=None, help="Arduino FQBN overriding the project's board.")
@click.option("--env", "-e", "env", default=None, help="PlatformIO environment overriding the project's board.")
def flash(directory, port, dry_run, fqbn, env) -> None:
    """Build and flash the project in DIRECTORY with its toolchain (arduino-cli, idf.py, pio, esptool)."""
    plan = flash_plan(directory, port=port, fqbn=fqbn, env=env, dry_run=dry_run)
    if dry_run:
        click.echo(f"# {plan.project_type} project in {plan.directory} (cwd {plan.cwd})")
        for line in plan.lines():
            click.echo(line)
        return
    rc = run_plan(plan, print_fn=click.echo)
    if rc != 0:
        click.echo(f"error: flashing failed ({plan.tool} exited with status {rc}); see its output above.",
                   err=True)
        sys.exit(1)
