"""The CLI stops the same way on SIGINT, SIGTERM and SIGHUP: one line, status 128 + signal, cleanups run."""

from __future__ import annotations

import signal

import pytest

from tests._interrupt import child_env, cli_command, interrupt_at, strays


@pytest.mark.parametrize("sig, line", [(signal.SIGINT, "Interrupted."), (signal.SIGTERM, "Stopped by SIGTERM."),
                                       (signal.SIGHUP, "Stopped by SIGHUP.")])
def test_signal_stops_the_command_cleanly(tmp_path, sig, line):
    (tmp_path / "tmp").mkdir()
    run = interrupt_at(cli_command("boards"), child_env(tmp_path / "tmp"), "cli:command", sig, timeout=60)
    assert run.returncode == 128 + sig, (run.returncode, run.stderr)
    assert run.stderr.strip().splitlines() == [line]
    assert strays(tmp_path / "tmp") == []  # the run's temporary folder went with it
