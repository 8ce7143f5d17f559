"""The ``edgekd`` command line.

Subcommands live in their own modules and are imported only when invoked, so
``edgekd --help`` never imports TensorFlow. Every :class:`EdgeKDError` becomes
a one-line ``error: …`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import re
import signal
import sys
import tempfile
from typing import Any, NoReturn

import click

from edgekd import __version__, _tmp
from edgekd._io import quiet_tensorflow
from edgekd.errors import EdgeKDError

# name -> (module, attribute, one-line help shown by `edgekd --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("edgekd.cli.export_cmd", "export", "Convert a model to int8 TFLite and C arrays."),
    "distill": ("edgekd.cli.distill_cmd", "distill", "Distil a teacher (or ensemble) into a student."),
    "profile": ("edgekd.cli.profile_cmd", "profile", "Params, MACs, flash and peak RAM per layer."),
    "shrink": ("edgekd.cli.profile_cmd", "shrink", "Derive a small student from a teacher."),
    "check": ("edgekd.cli.check_cmd", "check", "Check flash, RAM and latency against a board."),
    "boards": ("edgekd.cli.check_cmd", "boards", "List the known board profiles."),
    "firmware": ("edgekd.cli.firmware_cmd", "firmware", "Render an Arduino/ESP-IDF/PlatformIO project."),
    "flash": ("edgekd.cli.firmware_cmd", "flash", "Build and flash a generated project."),
    "emulate": ("edgekd.cli.emulate_cmd", "emulate", "Run a model on an emulated Cortex-M4F (QEMU), per-op counts."),
    "fit": ("edgekd.cli.fit_cmd", "fit", "Search the best distilled student for a board."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeKDError as e:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            if command is not None and e.args:
                e.args = (in_options(str(e), command),) + e.args[1:]
            raise


# Library parameters a command passes under an option whose name differs (its click destination does not say it).
PARAMETER_OPTIONS: dict[str, dict[str, str]] = {
    "check": {"model_tflite": "MODEL", "data": "--data", "board": "--board", "host_latency": "--no-host-latency",
              "optimized_kernels": "--reference-kernels"},
    "emulate": {"samples": "--data", "board": "--board"},
    "export": {"representative_data": "--dataset/--rep-data"},
    "firmware": {"model_tflite": "MODEL", "samples": "--data", "board": "--board"},
    "fit": {"train": "--data", "board": "--board", "prune": "--no-prune", "safe_mode": "--unsafe"},
}


def option_names(command: click.Command) -> dict[str, str]:
    """Python parameter name → how ``command`` spells it: ``input_shape`` → ``--input-shape``, ``model`` → ``MODEL``."""
    names = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name:
            names[p.name] = ([o for o in p.opts if o.startswith("--")] or p.opts)[0]
        elif isinstance(p, click.Argument) and p.name:
            names[p.name] = p.human_readable_name
    names.update(PARAMETER_OPTIONS.get(command.name or "", {}))
    return names


def in_options(message: str, command: click.Command) -> str:
    """A library message, which names Python parameters (`` `input_shape` ``), as ``command`` spells them.

    ``Invalid value for argument `num_samples`. … Received num_samples=0`` from ``edgekd firmware`` becomes
    ``Invalid value for option `--samples`. … Received --samples=0``. Names the command has no option for stay.
    """
    names = option_names(command)

    def kind(name: str) -> str:
        return "option" if name.startswith("-") else "argument"

    message = re.sub(r"argument `(\w+)`", lambda m: f"{kind(names[m[1]])} `{names[m[1]]}`" if m[1] in names else m[0],
                     message)
    message = re.sub(r"`(\w+)`", lambda m: f"`{names[m[1]]}`" if m[1] in names else m[0], message)
    return re.sub(r"Received (\w+)=", lambda m: f"Received {names[m[1]]}=" if m[1] in names else m[0], message)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
def cli() -> None:
    """edgekd: distil a Keras model and ship it to a microcontroller.

    Pipeline: distill → shrink/profile → export (int8 TFLite + C) → check
    (flash, RAM, latency against a board) → firmware → flash. Or `fit` to
    search the best student for a board in one command.
    """


def _one_line_usage_error(e: click.ClickException) -> str:
    """A click usage error as one ``error:`` line that names the problem and where to look for the fix."""
    line = f"error: {' '.join(e.format_message().split())}"
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        line += f" See '{ctx.command_path} --help'."
    return line


_STOPPED_BY: list[int] = []  # the signal that ended the command, for the exit status


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM and SIGHUP end a command as Ctrl-C does: KeyboardInterrupt, so every cleanup runs."""
    _STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def handle_signals() -> None:
    """Route SIGTERM/SIGHUP through :func:`_stop` (where they still have their default, deadly action)."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:  # nohup's SIG_IGN stays
            signal.signal(sig, _stop)


def _interrupted() -> NoReturn:
    sig = _STOPPED_BY[-1] if _STOPPED_BY else signal.SIGINT
    click.echo("Interrupted." if sig == signal.SIGINT else f"Stopped by {signal.Signals(sig).name}.", err=True)
    sys.exit(128 + int(sig))


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``edgekd`` console script.

    SIGINT, SIGTERM and SIGHUP stop a command the same way: temporaries and
    staging folders are removed, the output is left as it was (or complete, if
    the switch to the new one had happened) and the exit status is 128 + the
    signal number. Temporaries live in a per-process folder
    (:mod:`edgekd._tmp`); those of killed runs are removed here.
    """
    handle_signals()
    quiet_tensorflow()
    try:
        # Every library's tempfile use goes into this process's folder: what a SIGKILL leaves, the next run removes.
        tempfile.tempdir = _tmp.process_dir()
        _tmp.checkpoint("cli:command")
        return cli.main(args=argv, prog_name="edgekd", standalone_mode=False)
    except click.exceptions.Abort:
        if _STOPPED_BY or isinstance(sys.exc_info()[1].__cause__, KeyboardInterrupt):
            _interrupted()
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(_one_line_usage_error(e), err=True)
        sys.exit(2)
    except EdgeKDError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _interrupted()
