"""`edgekd firmware` and `edgekd flash` end to end (child processes), and flash planning."""

from __future__ import annotations

import json
import os

import pytest

from edgekd.errors import InvalidArgumentError, ToolNotFoundError
from edgekd.firmware import detect_project, flash_plan, render, run_plan, write_project
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def projects(tiny_tflite, tiny_arena, tmp_path_factory):
    """One written project per target: {target: folder}."""
    root = tmp_path_factory.mktemp("fw_flash")
    out = {}
    for target, board in (("arduino", "nano33ble"), ("esp-idf", "esp32s3"), ("platformio", "esp32s3")):
        folder = root / target
        write_project(render(tiny_tflite[1], board=board, target=target, arena_size=tiny_arena), folder)
        out[target] = str(folder)
    return out


def test_cli_firmware_writes_a_project(tiny_tflite, tmp_path):
    out = tmp_path / "esp"
    proc = run_cli("firmware", tiny_tflite[0], "--board", "esp32s3", "--target", "esp-idf", "-o", out,
                   "--data", "digits", "--samples", "2", "--labels", ",".join(str(i) for i in range(10)))
    assert proc.returncode == 0, proc.stderr
    assert "esp-idf project 'edgekd_model' for esp32s3" in proc.stdout
    assert f"edgekd flash {out}" in proc.stdout
    marker = json.loads((out / "edgekd-project.json").read_text())
    assert marker["target"] == "esp-idf" and marker["arena"]["measured"] > 0
    assert "constexpr int kNumSamples = 2;" in (out / "main" / "samples.h").read_text()


def test_cli_firmware_bad_input_is_one_clean_error(tiny_tflite, tmp_path):
    out = tmp_path / "x"
    assert_clean_error(run_cli("firmware", tiny_tflite[0], "--board", "teensy99", "-o", out), "board", "nano33ble")
    assert_clean_error(run_cli("firmware", tmp_path / "nope.tflite", "--board", "esp32", "-o", out),
                       "not found", "nope.tflite", "`MODEL`")
    assert not out.exists()


@pytest.mark.parametrize("target", ["arduino", "esp-idf", "platformio"])
def test_flash_dry_run_prints_the_commands(projects, target):
    d = projects[target]
    proc = run_cli("flash", d, "--dry-run", "--port", "/dev/ttyACM0")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]
    sketch = os.path.join(d, "edgekd_model")
    expected = {
        "arduino": [f"arduino-cli compile --fqbn arduino:mbed_nano:nano33ble {sketch}",
                    f"arduino-cli upload -p /dev/ttyACM0 --fqbn arduino:mbed_nano:nano33ble {sketch}"],
        "esp-idf": ["idf.py -p /dev/ttyACM0 build flash"],
        "platformio": [f"pio run -d {d} -e esp32s3 -t upload --upload-port /dev/ttyACM0"],
    }[target]
    assert lines == expected
    assert f"# {target} project in {d}" in proc.stdout


def test_flash_dry_run_fqbn_override_and_prebuilt_image(projects, tmp_path):
    proc = run_cli("flash", projects["arduino"], "--dry-run", "-p", "COM3", "--fqbn", "arduino:mbed_nano:nano33ble")
    assert "upload -p COM3 --fqbn arduino:mbed_nano:nano33ble" in proc.stdout
    image_dir = tmp_path / "img"
    image_dir.mkdir()
    (image_dir / "app.bin").write_bytes(b"\xe9" + bytes(15))
    proc = run_cli("flash", image_dir, "--dry-run", "--port", "/dev/ttyUSB0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].endswith(
        f"--chip auto -p /dev/ttyUSB0 write_flash 0x0 {image_dir / 'app.bin'}")
    assert proc.stdout.splitlines()[-1].split()[0] in ("esptool.py", "esptool")


def test_detect_project_fallbacks_without_marker(projects, tmp_path):
    import shutil

    for target in ("arduino", "esp-idf", "platformio"):
        copy = tmp_path / target
        shutil.copytree(projects[target], copy)
        os.remove(copy / "edgekd-project.json")
        assert detect_project(copy)[0] == target
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="not a firmware project"):
        detect_project(tmp_path / "empty")


@pytest.mark.parametrize("target,tool", [("arduino", "arduino-cli"), ("esp-idf", "idf.py"),
                                         ("platformio", "pio")])
def test_flash_missing_tool_is_a_clear_error(projects, target, tool, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no toolchain on PATH
    proc = run_cli("flash", projects[target], "--port", "/dev/ttyACM0")
    assert_clean_error(proc, f"{tool} is not installed", "install")


def test_run_plan_checks_the_tool_before_running(projects, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    plan = flash_plan(projects["arduino"], port="/dev/ttyACM0")
    printed = []
    with pytest.raises(ToolNotFoundError, match="arduino-cli"):
        run_plan(plan, print_fn=printed.append)
    assert printed == []


def test_run_plan_runs_each_command_and_stops_at_failure(projects, monkeypatch, tmp_path):
    # A stand-in `pio` on PATH records its arguments and fails: the real subprocess path is exercised.
    log = tmp_path / "calls.txt"
    fake = tmp_path / "pio"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    plan = flash_plan(projects["platformio"], port="/dev/ttyUSB1")
    printed = []
    assert run_plan(plan, print_fn=printed.append) == 3
    assert printed[0] == "$ " + plan.lines()[0]
    assert log.read_text().split() == list(plan.commands[0][1:])


def test_missing_port_lists_the_ports_found(projects, monkeypatch):
    import edgekd.firmware.flash as fl

    monkeypatch.setattr(fl, "list_serial_ports", lambda: ["/dev/ttyUSB0", "/dev/ttyUSB1"])
    with pytest.raises(InvalidArgumentError, match="/dev/ttyUSB0, /dev/ttyUSB1"):
        flash_plan(projects["esp-idf"])
    monkeypatch.setattr(fl, "list_serial_ports", lambda: [])
    with pytest.raises(InvalidArgumentError, match="found: none"):
        flash_plan(projects["esp-idf"])
    monkeypatch.setattr(fl, "list_serial_ports", lambda: ["/dev/ttyACM3"])
    assert flash_plan(projects["esp-idf"]).commands[0] == ("idf.py", "-p", "/dev/ttyACM3", "build", "flash")
    # A dry run without a port still prints, with a placeholder.
    monkeypatch.setattr(fl, "list_serial_ports", lambda: [])
    assert "PORT" in flash_plan(projects["esp-idf"], dry_run=True).commands[0]


def test_project_flash_commands_before_writing(tiny_tflite, tiny_arena):
    project = render(tiny_tflite[1], board="esp32", target="arduino", arena_size=tiny_arena)
    assert project.flash_commands("/work/proj", port="/dev/ttyUSB0") == [
        ("arduino-cli", "compile", "--fqbn", "esp32:esp32:esp32", "/work/proj/edgekd_model"),
        ("arduino-cli", "upload", "-p", "/dev/ttyUSB0", "--fqbn", "esp32:esp32:esp32", "/work/proj/edgekd_model"),
    ]
