"""The ``edgekd`` command line.

Subcommands live in their own modules and are imported only when invoked, so
``edgekd --help`` never imports TensorFlow. Every :class:`EdgeKDError` becomes
a one-line ``error: …`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from edgekd import __version__
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
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # the stage is not built yet
                return None
            raise
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
def cli() -> None:
    """edgekd: distil a Keras model and ship it to a microcontroller.

    Pipeline: distill → shrink/profile → export (int8 TFLite + C) → check
    (flash, RAM, latency against a board) → firmware → flash. Or `fit` to
    search the best student for a board in one command.
    """


# Commands that need no TensorFlow (kept fast).
_NO_TF = {"boards", "flash"}


def _preload_tensorflow(args: list[str]) -> None:
    """Import TensorFlow with its native start-up chatter (CUDA probes, absl) silenced."""
    if not args or args[0] not in COMMANDS or args[0] in _NO_TF or {"-h", "--help"} & set(args):
        return
    from edgekd._io import quiet_native_output

    with quiet_native_output():
        try:
            import tensorflow as tf

            tf.constant(0)  # the CUDA probe logs on first use
        except Exception:  # pragma: no cover - TF problems surface in the command itself
            pass


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``edgekd`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _preload_tensorflow(list(sys.argv[1:] if argv is None else argv))
    try:
        return cli.main(args=argv, prog_name="edgekd", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except EdgeKDError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
