"""Adding a board is one .toml file, for every verb, firmware included (``--board-file`` / ``board=<file>``)."""

from __future__ import annotations

import json

import pytest

from edgekd import boards
from edgekd.errors import BoardError
from edgekd.firmware import MARKER, render
from tests.conftest import assert_clean_error, run_cli

# A board edgekd does not ship: the Arduino Nano ESP32 (ESP32-S3), buildable by all three toolchains. The
# budgets are round test values; the toolchain ids are the real ones, each distinct from every shipped board's.
NANO_ESP32 = """
id = "nano-esp32"
name = "Arduino Nano ESP32"
mcu = "ESP32-S3"
core = "Xtensa LX7"
clock_hz = 240_000_000
flash_bytes = 16_777_216
ram_bytes = 524_288
usable_flash_fraction = 0.3
usable_ram_fraction = 0.6
optimized_kernels = "esp-nn"
per_op_overhead_cycles = 4000
fqbn = "arduino:esp32:nano_nora"
platformio_board = "arduino_nano_esp32"
platformio_platform = "espressif32"
idf_target = "esp32s3"

[firmware]
targets = ["arduino", "esp-idf", "platformio"]
baud = 9600
native_usb = true

[runtime]
flash_bytes = 65_536
ram_bytes = 8_192

[cycles_per_mac.optimized]
conv = 1.5
depthwise = 7.9
fully_connected = 1.5
other = 10.0

[cycles_per_mac.reference]
conv = 65
depthwise = 182
fully_connected = 65
other = 20
"""


@pytest.fixture
def board_file(tmp_path):
    path = tmp_path / "boards" / "nano-esp32.toml"
    path.parent.mkdir()
    path.write_text(NANO_ESP32)
    return path


def _main(files: dict) -> str:
    return next(text for rel, text in files.items() if rel.endswith((".ino", "main.cc", "main.cpp")))


def test_a_new_board_file_works_for_check_and_renders_all_three_targets(tiny_tflite, board_file, tmp_path):
    """The Done-means test: one .toml in a temporary folder, through --board-file, for check and firmware."""
    model = tiny_tflite[0]
    proc = run_cli("check", model, "--board-file", board_file, "--no-host-latency")
    assert proc.returncode == 0, proc.stderr
    assert "Arduino Nano ESP32" in proc.stdout and "esp-nn" in proc.stdout
    for target in ("arduino", "esp-idf", "platformio"):
        out = tmp_path / target
        proc = run_cli("firmware", model, "--board-file", board_file, "--target", target, "-o", out)
        assert proc.returncode == 0, (target, proc.stderr)
        assert f"{target} project 'edgekd_model' for nano-esp32 (Arduino Nano ESP32)" in proc.stdout
        files = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()}
        marker = json.loads(files[MARKER])
        assert (marker["board"], marker["fqbn"], marker["idf_target"]) == ("nano-esp32", "arduino:esp32:nano_nora",
                                                                           "esp32s3")
        if target == "arduino":
            assert "arduino-cli compile --fqbn arduino:esp32:nano_nora edgekd_model" in files["README.md"]
            assert "baudrate=9600" in files["README.md"]
        elif target == "esp-idf":
            assert files["sdkconfig.defaults"].splitlines()[1] == 'CONFIG_IDF_TARGET="esp32s3"'
        else:
            ini = files["platformio.ini"]
            assert "default_envs = nano-esp32" in ini and "monitor_speed = 9600" in ini
            assert "[env:nano-esp32]\n; Arduino Nano ESP32\nplatform = espressif32\nboard = arduino_nano_esp32" in ini
        main = _main(files)
        if target != "esp-idf":  # the Arduino cores' Serial: the file's speed, the native-USB wait
            assert "Serial.begin(9600);" in main and "!Serial && millis() - start < 3000" in main


def test_python_api_takes_a_board_object_or_file(tiny_tflite, tiny_arena, board_file):
    board = boards.load_board_file(board_file)
    by_object = render(tiny_tflite[1], board=board, target="esp-idf", arena_size=tiny_arena)
    by_path = render(tiny_tflite[1], board=board_file, target="esp-idf", arena_size=tiny_arena)
    assert by_object.board == by_path.board == board
    assert by_object.files == by_path.files
    assert boards.get(board_file) == board and boards.get(str(board_file)) == board


def test_static_arena_limit_of_a_board_file_decides_static_or_heap(tiny_tflite, tiny_arena, board_file, tmp_path):
    small = tmp_path / "small.toml"
    small.write_text(NANO_ESP32.replace("[runtime]", "[arena]\nstatic_max_bytes = 1024\n\n[runtime]"))
    assert render(tiny_tflite[1], board=board_file, target="esp-idf", arena_size=tiny_arena).arena.allocation \
        == "static"
    project = render(tiny_tflite[1], board=small, target="esp-idf", arena_size=tiny_arena)
    assert project.arena.allocation == "heap" and project.arena.static_max == 1024


@pytest.mark.parametrize("edit, fragments", [
    # no [firmware] table: the fix names the table, its targets and the ids they need
    (lambda s: s.split("[firmware]")[0] + "[runtime]" + s.split("[runtime]")[1],
     ("has no [firmware] targets", "targets = [", "fqbn", "platformio_platform", "idf_target")),
    # a target without the id its toolchain needs
    (lambda s: s.replace('platformio_platform = "espressif32"\n', ""),
     ("'platformio'", "platformio_platform", "add it or drop the target")),
    (lambda s: s.replace('targets = ["arduino", "esp-idf", "platformio"]', 'targets = ["zephyr"]'),
     ("`targets`", "arduino, esp-idf, platformio", "zephyr")),
])
def test_board_file_without_firmware_facts_is_one_clean_error(tiny_tflite, tmp_path, edit, fragments):
    path = tmp_path / "b.toml"
    path.write_text(edit(NANO_ESP32))
    out = tmp_path / "fw"
    assert_clean_error(run_cli("firmware", tiny_tflite[0], "--board-file", path, "-o", out), *fragments)
    assert not out.exists()


def test_board_file_target_it_does_not_list(tiny_tflite, tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(NANO_ESP32.replace('targets = ["arduino", "esp-idf", "platformio"]', 'targets = ["esp-idf"]'))
    assert_clean_error(run_cli("firmware", tiny_tflite[0], "--board-file", path, "-t", "arduino", "-o", tmp_path / "x"),
                       "'nano-esp32' cannot be built with target 'arduino'", "targets: esp-idf", "--target")
    # an Arduino core Chirale_TensorFLowLite does not run on
    path.write_text(NANO_ESP32.replace('"arduino:esp32:nano_nora"', '"arduino:avr:uno"'))
    with pytest.raises(Exception, match="Arduino core avr"):
        render(tiny_tflite[1], board=path, target="arduino", arena_size=4096)


def test_board_options_of_every_verb(tiny_tflite, board_file, tmp_path):
    model = tiny_tflite[0]
    for verb, *rest in (("check",), ("firmware", "-o", tmp_path / "x"), ("emulate",)):
        assert_clean_error(run_cli(verb, model, "--board", "esp32", "--board-file", board_file, *rest),
                           "exactly one of --board ID or --board-file")
    # fit checks the board file's firmware targets before it loads the teacher or trains anything
    path = tmp_path / "b.toml"
    path.write_text(NANO_ESP32.replace('targets = ["arduino", "esp-idf", "platformio"]', 'targets = ["arduino"]'))
    assert_clean_error(run_cli("fit", "--teacher", "missing.keras", "--dataset", "digits", "--board-file", path,
                               "--firmware", "esp-idf", "-o", tmp_path / "fit"),
                       "--firmware esp-idf cannot build for board nano-esp32", "--firmware arduino")
    # emulate takes a board file too, and says when its profile names no emulator
    assert_clean_error(run_cli("emulate", model, "--board-file", board_file),
                       "'nano-esp32' cannot be emulated", "nucleo-l4r5zi")
    with pytest.raises(BoardError, match="not found"):
        boards.get(tmp_path / "missing.toml")
