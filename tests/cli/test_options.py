"""Library errors name Python parameters; the command line shows them as its options (one `error:` style)."""

from __future__ import annotations

import click
import pytest

from edgekd.cli import COMMANDS, cli, in_options, option_names
from edgekd.errors import invalid_value
from tests.conftest import assert_clean_error


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def test_parameters_become_options():
    fw = _command("firmware")
    msg = str(invalid_value("num_samples", "an integer from 1 to 64", 0))
    assert in_options(msg, fw) == ("Invalid value for option `--samples`. Expected an integer from 1 to 64. "
                                   "Received --samples=0")
    assert in_options("Pass the right `input_shape`.", _command("export")) == "Pass the right `--input-shape`."
    assert in_options("Invalid value for argument `model_tflite`.", fw) == "Invalid value for argument `MODEL`."
    # what the command has no option for stays as written
    assert in_options("raise `nothing_like_it`", fw) == "raise `nothing_like_it`"


def test_every_option_of_every_command_is_known():
    for name in COMMANDS:
        cmd = _command(name)
        names = option_names(cmd)
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name:
                assert names[p.name].lstrip("-") and names[p.name] in p.opts, (name, p.name)


@pytest.mark.parametrize("args, fragments", [
    (["firmware", "m.tflite", "--board", "nano33ble", "--samples", "0", "-o", "fw"],
     ("option `--samples`", "Received --samples=0")),
    (["export", "m.keras", "--dataset", "digits", "--name", "my-model", "-o", "out"],
     ("option `--name`", "Received --name='my-model'")),
])
def test_cli_errors_name_options(cli, tmp_path, small_cnn_tflite, small_cnn_path, args, fragments):
    (tmp_path / "m.tflite").write_bytes(small_cnn_tflite[1])
    (tmp_path / "m.keras").write_bytes(open(small_cnn_path, "rb").read())
    proc = cli(*args, cwd=str(tmp_path))
    assert_clean_error(proc, *fragments)
    assert "num_samples" not in proc.stderr and "`name`" not in proc.stderr


def test_every_option_is_documented_in_help():
    """`edgekd distill --help` left --temperature, --batch-size, --learning-rate and --seed without a word."""
    undocumented = []
    for name in COMMANDS:
        cmd = _command(name)
        ctx = click.Context(cmd, info_name=name)
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden:
                record = p.get_help_record(ctx)
                text = (record[1] if record else "").split("  [")[0].strip()  # without click's [default: …]
                if not text:
                    undocumented.append(f"{name} {'/'.join(p.opts)}")
    assert not undocumented, undocumented
