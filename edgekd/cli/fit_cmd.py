"""``edgekd fit``: search the most accurate distilled student that fits a board."""

from __future__ import annotations

import os
import sys
from typing import Optional
import shutil

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgekd.errors import EdgeKDError, InvalidArgumentError
from edgekd.cli import in_options
from edgekd.cli._common import (StudentChoice, board_options, check_keras_path, check_output, console, data_for_model,
                                load_dataset, load_keras, resolve_board, unsafe_option)
from edgekd.fit import binding_budget, comparison_table, fit as run_fit, write_report
from edgekd.check.budgets import resolve_budgets
from edgekd.datasets import resize
from edgekd.firmware import render
from edgekd.firmware.targets import supported_targets, unsupported_reason
from edgekd.fit import check_storage
from edgekd.fit.shared import connect
from edgekd.engine import ENGINES


def _splits(dataset: Optional[str], data: Optional[str]):
    """The data (edgekd.datasets.load): x/y trains, x_val/y_val ranks the candidates (else 15% of x held out),
    x_test/y_test is reported for the chosen one."""
    if bool(dataset) == bool(data):
        raise InvalidArgumentError("Pass exactly one of --dataset digits or --data FILE.npz.")
    return load_dataset(dataset, data).with_validation(0.15, seed=0)


@click.command("fit")
@click.option("--teacher", required=True, type=str, help="Teacher model (.keras, .h5, SavedModel).")
@click.option("--dataset", type=str, default=None, help="Bundled dataset (digits).")
@click.option("--data", type=str, default=None,
              help="Labelled data: x/y train, x_val/y_val rank the candidates (else 15% of x is held out), "
                   "x_test/y_test is reported; a .npz or folder (docs/data.md).")
@board_options()
@click.option("--max-flash", type=str, default=None, help="Flash budget, e.g. 512KB (overrides the board).")
@click.option("--max-ram", type=str, default=None, help="RAM budget, e.g. 128KB (overrides the board).")
@click.option("--max-latency-ms", type=float, default=None, help="Latency budget for the board estimate, in ms.")
@click.option("--arch", type=StudentChoice(extra=("shrink",)), default="ds_cnn",
              show_default=True, help="Student family (shrink = derived from the teacher).")
@click.option("--trials", type=click.IntRange(min=1), default=12, show_default=True,
              help="Candidates to train (those rejected by their profile don't count; a resumed study trains "
                   "only the missing ones).")
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True, help="Epochs per trial.")
@click.option("--objective", type=click.Choice(["accuracy", "pareto"]), default="accuracy", show_default=True,
              help="accuracy: TPE on int8 accuracy; pareto: NSGA-II on accuracy and latency.")
@click.option("--storage", type=str, default=None,
              help="Optuna storage URL (default: sqlite in OUTPUT). A shared database (postgresql://, needs "
                   "edgekd[distributed]) lets many workers run the same command and divide the trials (docs/fit.md).")
@click.option("--study-name", type=str, default=None,
              help="Study within the storage [default: from the board, --arch, --objective and the budgets].")
@click.option("--artifact-store", type=str, default=None, metavar="DIR",
              help="A folder every worker can read (NFS) for each trained candidate's .tflite/.keras "
                   "[default: in the storage's database].")
@click.option("--heartbeat", type=click.IntRange(min=1), default=30, show_default=True, metavar="SECONDS",
              help="A running trial's heartbeat; a trial silent for twice as long (worker killed) is failed "
                   "and its candidate retried.")
@click.option("--report", "report_only", is_flag=True,
              help="Train nothing: write the report of the study in --storage (the whole search, as any "
                   "worker writes it) to OUTPUT.")
@click.option("--firmware", "firmware_target", type=click.Choice(["arduino", "esp-idf", "platformio"]),
              default=None, help="Also render a firmware project for the chosen model.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the search and of each trial's training (resume with the same seed).")
@click.option("--no-prune", is_flag=True, help="Disable Optuna's median pruner.")
@click.option("--engine", type=click.Choice(ENGINES), default="interpreter", show_default=True,
              help="compiled: measure candidates' flash and RAM for the compiled engine (as `edgekd check "
                   "--engine compiled`), so students that fit only without the interpreter are found.")
@click.option("--recipe", type=click.Choice(["patient"]), default=None,
              help="Train each candidate with this distillation recipe (patient: warm-up, cosine decay, the teacher "
                   "and student fed the same augmented view; docs/distill.md). --epochs still sets the length.")
@unsafe_option
@click.option("-o", "--output", "outdir", required=True, type=str, help="Output directory (resumable).")
def fit(teacher: str, dataset: Optional[str], data: Optional[str], board_id: Optional[str],
        board_file: Optional[str], max_flash: Optional[str],
        max_ram: Optional[str], max_latency_ms: Optional[float], arch: str, trials: int, epochs: int,
        objective: str, storage: Optional[str], study_name: Optional[str], artifact_store: Optional[str],
        heartbeat: int, report_only: bool, firmware_target: Optional[str], seed: int, no_prune: bool,
        engine: str, unsafe: bool, outdir: str, recipe: Optional[str] = None) -> None:
    """Find the most accurate distilled student that fits BOARD's budgets.

    Candidates are profiled first; those that cannot fit are never trained.
    The rest are distilled, converted to int8 and checked with the real TFLM
    arena. Writes trials.csv/.json, pareto.png and the chosen model's export
    to OUTPUT. Exit 1 when no candidate meets every budget.
    """
    # cheap checks first (the budgets as `edgekd check` checks them)
    brd = resolve_board(board_id, board_file)
    resolve_budgets(brd, max_flash=max_flash, max_ram=max_ram, max_latency_ms=max_latency_ms)
    check_output(outdir)
    if firmware_target:
        _check_firmware_target(brd, firmware_target)
    check_keras_path(teacher, what="Teacher")

    local = storage is None  # the study in OUTPUT/study.db, its trials' files in OUTPUT/trials too
    storage = storage or f"sqlite:///{os.path.abspath(os.path.join(outdir, 'study.db'))}"
    db_path = check_storage(storage, will_create=outdir)
    if report_only and db_path is not None and not os.path.isfile(db_path):
        raise InvalidArgumentError(f"--report: no study in {db_path}. Pass the --storage of the search.")
    connect(storage)  # a server database: reached (user, password, database) before TensorFlow loads
    ds = _splits(dataset, data)
    teacher_model = load_keras(teacher, unsafe=unsafe)  # refused in safe mode before anything is created
    ds = data_for_model(ds, input_shape=tuple(teacher_model.inputs[0].shape[1:]),
                        num_classes=int(teacher_model.outputs[0].shape[-1]), offer_resize=False)
    train, val, test = ds.train, ds.val.labeled(), None if ds.test is None else ds.test.labeled()
    console().print(f"Training on {train.describe()}; candidates ranked on {val.describe()}"
                    + (f"; the chosen one tested on {test.describe()}" if test else "") + ".")
    train, val, test = (train.x, train.y), (val.x, val.y), None if test is None else (test.x, test.y)
    labels = list(ds.class_names) or None
    # what this run creates, removed again when it ends with a bad-input error (exit 2)
    created = [p for p in (outdir, db_path, os.path.join(outdir, "trials")) if p and not os.path.exists(p)]
    os.makedirs(outdir, exist_ok=True)
    shared = dict(study_name=study_name, artifact_store=artifact_store, heartbeat=heartbeat, report_only=report_only,
                  artifacts_dir=os.path.join(outdir, "trials") if local else None)
    try:
        _search(teacher_model, train, val, test, labels, brd, max_flash, max_ram, max_latency_ms, arch, trials,
                epochs, objective, storage, firmware_target, seed, no_prune, outdir, engine, shared)
    except EdgeKDError:
        _remove(created)
        raise


def _check_firmware_target(board, target: str) -> None:
    """--firmware TARGET must be able to build for --board (checked before the search, not after it)."""
    if unsupported_reason(board, target):
        targets = supported_targets(board)
        raise InvalidArgumentError(f"--firmware {target} cannot build for board {board.id}. Use "
                                   + (f"--firmware {' or '.join(targets)}, or " if targets else "")
                                   + "drop --firmware (then render with edgekd firmware for another board).")


def _recipe() -> Optional[str]:
    """--recipe of the running command (None outside one)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.params.get("recipe")


def _remove(paths: list) -> None:
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.exists(p):
            os.unlink(p)


def _search(teacher, train, val, test, labels, brd, max_flash, max_ram, max_latency_ms, arch, trials, epochs,
            objective, storage, firmware_target, seed, no_prune, outdir, engine="interpreter", shared=None) -> None:

    con = console()
    counts = {"passed": 0, "infeasible": 0}
    with Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=con, transient=False) as bar:
        task = bar.add_task("", total=trials)

        def on_trial(t) -> None:
            counts[t.state] = counts.get(t.state, 0) + 1
            acc = f"int8 {100 * t.int8_accuracy:.1f}%" if t.int8_accuracy is not None else t.state
            bar.console.print(f"  trial {t.number}: {t.spec} → {acc}"
                              + (f" (over: {', '.join(t.violations)})" if t.violations else ""))
            trained = t.trained and t.repeat_of is None and t.state != "failed"
            bar.update(task, advance=1 if trained else 0, description=f"{counts.get('passed', 0)} passed, "
                       f"{counts.get('infeasible', 0)} not trained")

        result = run_fit(teacher, train=train, val=val, test=test, board=brd, max_flash=max_flash,
                         max_ram=max_ram, max_latency_ms=max_latency_ms, arch=arch, trials=trials, epochs=epochs,
                         objective=objective, storage=storage, prune=not no_prune, seed=seed,
                         verbose=2 if not sys.stdout.isatty() else 1, on_trial=on_trial,
                         recipe=_recipe(), engine=engine,
                         **(shared or {"artifacts_dir": os.path.join(outdir, "trials")}))
        bar.update(task, completed=_trained(result.trials))
    # The firmware project joins the report: both replace the previous ones in one step (write_report).
    firmware = {f"firmware-{firmware_target}": _firmware(result, brd, firmware_target, val, labels, engine)} \
        if firmware_target and result.best is not None else None
    paths = write_report(result, outdir, firmware=firmware)
    if result.interrupted:
        con.print("[yellow]Interrupted: the finished trials are kept; rerun the same command to continue.[/yellow]")
    repeats = sum(t.repeat_of is not None for t in result.trials)
    failed = sum(t.state == "failed" for t in result.trials)
    running = sum(t.state == "running" for t in result.trials)
    con.print(f"{len(result.trials)} candidates in study {result.study_name!r}: {_trained(result.trials)} trained"
              + (f", {repeats} identical to a trained one (its result reused)" if repeats else "")
              + (f", {failed} failed" if failed else "")
              + (f", {running} still running (another worker, or one stopped without a heartbeat)" if running else "")
              + f", {sum(t.state == 'infeasible' for t in result.trials)} skipped by the profile (never trained).")
    if result.best is None:
        click.echo(f"Wrote {', '.join(os.path.basename(p) for p in paths)} to {outdir}")
        why = in_options(binding_budget(result.trials, result.budgets), click.get_current_context().command)
        click.echo(f"error: no candidate meets every budget: {why}", err=True)
        sys.exit(1)
    if result.comparison:
        comparison_table(result, print_fn=con.print)
    if firmware:
        con.print(f"Firmware project: {os.path.join(outdir, next(iter(firmware)))}")
    con.print(f"Chosen: {result.best.spec} — int8 val accuracy {100 * result.best.int8_accuracy:.2f}%")
    con.print(f"Pareto plot: {os.path.join(os.path.abspath(outdir), 'pareto.png')}")
    click.echo(f"Wrote {len(paths)} files to {outdir}")


def _trained(trials) -> int:
    """Candidates trained in the study (a repeat reuses a trained one's result; a failed one has none)."""
    return sum(t.trained and t.repeat_of is None and t.state != "failed" for t in trials)


def _firmware(result, brd, firmware_target, val, labels, engine="interpreter"):
    """The firmware project of the chosen model (rendered, not written)."""

    xs = None
    if result.best_model is not None:
        xs = (resize(val[0][:8], result.best.input_shape), val[1][:8])
    return render(result.best_tflite, board=brd, target=firmware_target, samples=xs, labels=labels, engine=engine)
