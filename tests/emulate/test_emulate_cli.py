"""``edgekd emulate`` from the command line: a JSON run, and the exit-2 errors for what is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT, assert_clean_error, run_cli


def _run(*args, env_update=None, timeout=900):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_update or {})
    return subprocess.run([sys.executable, "-m", "edgekd", "emulate", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_json_run_reports_bytes_arena_sizes_and_instructions(tiny_tflite, chirale):
    proc = run_cli("emulate", tiny_tflite[0], "--board", "nano33ble", "--tflm", chirale, "--dataset", "digits",
                   "--samples", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["passed"] is True and out["samples"] == 4 and out["max_diff_steps"] <= 1
    assert out["data"] == "the first 4 of digits test split (269 samples)"  # which split it ran
    assert out["arena_used_bytes"] > 0 and out["size"]["tflm_flash"] > 0
    assert [o["op"] for o in out["ops"]][0] == "CONV_2D"
    assert len(out["outputs"]) == 4 and len(out["outputs"][0]) == 10


def test_a_board_without_an_emulator_is_refused(tiny_tflite):
    assert_clean_error(_run(tiny_tflite[0], "--board", "esp32"), "cannot be emulated", "nucleo-l4r5zi")


def test_no_tree_names_the_install_command(tiny_tflite, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(tiny_tflite[0], "--tflm", empty, env_update={"HOME": str(tmp_path), "EDGEKD_TFLM": "",
                                                             "EDGEKD_TFLM_TREES": ""})
    assert_clean_error(proc, 'arduino-cli lib install "Chirale_TensorFLowLite@2.0.0"', "--tflm")


def test_no_qemu_names_the_install_command(tiny_tflite, chirale, tmp_path):
    """A PATH with the cross compiler but no qemu-system-arm."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar", "arm-none-eabi-size"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = _run(tiny_tflite[0], "--tflm", chirale, env_update={"PATH": str(bin_dir)})
    assert_clean_error(proc, "qemu-system-arm is not installed", "apt-get install qemu-system-arm")
