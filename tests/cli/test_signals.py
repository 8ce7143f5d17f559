"""The CLI stops the same way on SIGINT, SIGTERM and SIGHUP: one line, status 128 + signal, cleanups run."""

from __future__ import annotations

import signal
import sys

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


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_an_inherited_ignored_sighup_stays_ignored(tmp_path):
    """Under nohup the command outlives a hang-up (SIG_IGN is kept) and still stops cleanly on SIGTERM."""
    (tmp_path / "tmp").mkdir()
    # what nohup does: SIGHUP ignored, then exec (an ignored disposition survives exec, a handler does not)
    nohup = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
             "os.execv(sys.executable, [sys.executable, '-m', 'edgekd', 'boards'])"]
    run = interrupt_at(nohup, child_env(tmp_path / "tmp"), "cli:command", signal.SIGTERM, timeout=60,
                       survives=(signal.SIGHUP,))
    assert run.returncode == 128 + signal.SIGTERM, (run.returncode, run.stderr)
    assert run.stderr.strip().splitlines() == ["Stopped by SIGTERM."]
    assert strays(tmp_path / "tmp") == []
