"""Board registry and profile validation."""

import dataclasses
import re

import pytest

from edgekd import boards
from edgekd.errors import BoardError

DATASHEET_BOARDS = {"nano33ble", "pico", "esp32", "esp32s3", "nucleo-l4r5zi", "portenta-h7", "uno"}


def test_registry_has_the_datasheet_boards_each_fully_sourced():
    assert DATASHEET_BOARDS <= set(boards.list_boards())
    for bid in DATASHEET_BOARDS:
        b = boards.get(bid)  # shipped profiles are loaded with require_sources=True
        assert b.id == bid
        for key in ("flash_bytes", "ram_bytes", "clock_hz"):
            assert b.sources.get(key, "").strip(), (bid, key)
        if b.tflm_supported:
            for key in boards.SOURCED_FIGURES:
                assert b.sources.get(key, "").strip(), (bid, key)
            # optimized kernels are never slower than the reference ones
            for c in boards.OP_CLASSES:
                assert b.cycles_per_mac["optimized"][c] <= b.cycles_per_mac["reference"][c]


def test_datasheet_figures():
    # datasheet figures
    nano = boards.get("nano33ble")
    assert (nano.clock_hz, nano.flash_bytes, nano.ram_bytes) == (64_000_000, 1 << 20, 256 * 1024)
    assert boards.get("pico").ram_bytes == 264 * 1024
    assert boards.get("portenta-h7").clock_hz == 480_000_000
    assert boards.get("esp32").ram_budget_bytes == pytest.approx(320 * 1024, rel=0.05)
    assert boards.get("nano33ble").fqbn == "arduino:mbed_nano:nano33ble"
    assert boards.get("esp32s3").idf_target == "esp32s3"


def test_uno_is_not_tflm_capable_with_reason():
    uno = boards.get("uno")
    assert not uno.tflm_supported
    assert "32-bit" in uno.tflm_unsupported_reason


def test_unknown_board_lists_known_ones():
    with pytest.raises(BoardError) as e:
        boards.get("nano34")
    for bid in DATASHEET_BOARDS:
        assert bid in str(e.value)


def test_board_is_frozen():
    b = boards.get("pico")
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.clock_hz = 1


def _write(tmp_path, text, name="b.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
id = "mine"
name = "My board"
mcu = "X"
core = "Cortex-M4F"
clock_hz = 100_000_000
flash_bytes = 524288
ram_bytes = 131072
usable_flash_fraction = 0.9
usable_ram_fraction = 0.8
optimized_kernels = "cmsis-nn"
per_op_overhead_cycles = 1000
[runtime]
flash_bytes = 40000
ram_bytes = 2000
[cycles_per_mac.optimized]
conv = 5
depthwise = 20
fully_connected = 5
other = 3
[cycles_per_mac.reference]
conv = 25
depthwise = 90
fully_connected = 25
other = 6
"""


def test_user_board_file_loads(tmp_path):
    b = boards.load_board_file(_write(tmp_path, GOOD))
    assert b.id == "mine" and b.flash_budget_bytes == int(524288 * 0.9)
    assert b.coefficient("conv") == 5 and b.coefficient("conv", optimized=False) == 25
    with pytest.raises(BoardError, match="no source"):
        boards.load_board_file(_write(tmp_path, GOOD), require_sources=True)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda s: s.replace("clock_hz = 100_000_000\n", ""), "clock_hz"),
    (lambda s: s.replace("usable_ram_fraction = 0.8", "usable_ram_fraction = 1.5"), "usable_ram_fraction"),
    (lambda s: s.replace("ram_bytes = 131072", "ram_bytes = -1"), "ram_bytes"),
    (lambda s: s.replace('optimized_kernels = "cmsis-nn"', 'optimized_kernels = "magic"'),
     "optimized_kernels"),
    (lambda s: s.replace("depthwise = 20\n", ""), "depthwise"),
    (lambda s: s + "\nthis is not toml ===\n", "TOML"),
])
def test_bad_board_file(tmp_path, mutate, fragment):
    with pytest.raises(BoardError, match=fragment):
        boards.load_board_file(_write(tmp_path, mutate(GOOD)))


def _sourced(text: str) -> str:
    return text + "[sources]\n" + "".join(f'"{k}" = "somewhere"\n' for k in boards.SOURCED_FIGURES)


CPI = "[cycles_per_instruction]\nconv = 1.2\ndepthwise = 1.3\nfully_connected = 1.1\nother = 1.4\n"


def test_cycles_per_instruction_needs_a_source_only_when_present(tmp_path):
    b = boards.load_board_file(_write(tmp_path, _sourced(GOOD)), require_sources=True)
    assert b.cycles_per_instruction == {}
    with pytest.raises(BoardError, match="no source given for cycles_per_instruction"):
        boards.load_board_file(_write(tmp_path, GOOD + CPI + _sourced("")), require_sources=True)
    b = boards.load_board_file(_write(tmp_path, GOOD + CPI + _sourced("") + '"cycles_per_instruction" = "mine"\n'),
                               require_sources=True)
    assert dict(b.cycles_per_instruction) == {"conv": 1.2, "depthwise": 1.3, "fully_connected": 1.1, "other": 1.4}
    with pytest.raises(BoardError, match="depthwise"):
        boards.load_board_file(_write(tmp_path, GOOD + CPI.replace("depthwise = 1.3\n", "")))


def test_emulated_cortex_m4_boards_carry_a_sourced_cpi():
    nucleo, nano = boards.get("nucleo-l4r5zi"), boards.get("nano33ble")
    assert set(nucleo.cycles_per_instruction) == set(boards.OP_CLASSES)
    # a Cortex-M4 retires at most one instruction per cycle; flash wait states and loads add a little
    assert all(1.0 <= v <= 3.0 for v in nucleo.cycles_per_instruction.values())
    assert "emulate_latency" in nucleo.sources["cycles_per_instruction"]
    assert "tiny_results_v1.0" in nucleo.sources["cycles_per_instruction"]
    assert dict(nano.cycles_per_instruction) == dict(nucleo.cycles_per_instruction)
    assert "carried over from nucleo-l4r5zi" in nano.sources["cycles_per_instruction"]
    assert boards.get("esp32").cycles_per_instruction == {}  # not emulated, not calibrated


def test_missing_board_file(tmp_path):
    with pytest.raises(BoardError, match="not found"):
        boards.load_board_file(tmp_path / "nope.toml")


def test_boards_cli(cli):
    import json

    proc = cli("boards", "--json")
    assert proc.returncode == 0, proc.stderr
    ids = {b["id"] for b in json.loads(proc.stdout)}
    assert DATASHEET_BOARDS <= ids
    proc = cli("boards")
    assert proc.returncode == 0 and "nano33ble" in proc.stdout


# What edgekd.firmware.targets held in its own tables before the facts moved into the board files.
FIRMWARE_FACTS = {
    "nano33ble": ("arduino:mbed_nano:nano33ble", "nordicnrf52", "nano33ble", None, True),
    "esp32": ("esp32:esp32:esp32", "espressif32", "esp32dev", "esp32", False),
    "esp32s3": ("esp32:esp32:esp32s3", "espressif32", "esp32-s3-devkitc-1", "esp32s3", False),
    "pico": ("arduino:mbed_rp2040:pico", "raspberrypi", "pico", None, True),
    "portenta-h7": ("arduino:mbed_portenta:envie_m7", "ststm32", "portenta_h7_m7", None, True),
}


@pytest.mark.parametrize("bid", sorted(FIRMWARE_FACTS))
def test_firmware_facts_live_in_the_board_files_with_sources(bid):
    b = boards.get(bid)
    assert (b.fqbn, b.platformio_platform, b.platformio_board, b.idf_target, b.native_usb) == FIRMWARE_FACTS[bid]
    assert b.baud == 115200
    for target in b.firmware_targets:
        assert all(getattr(b, key) for key in boards.TARGET_FACTS[target]), (bid, target)
    for key in ("fqbn", "platformio_board", "platformio_platform", "firmware.targets", "firmware.native_usb"):
        assert b.sources[key].strip(), (bid, key)


def test_aliases_resolve_in_any_case_and_name_one_board():
    seen: dict[str, str] = {}
    for b in boards.all_boards():
        for name in (b.id, *b.aliases):
            assert name.lower() not in seen, (name, b.id, seen.get(name.lower()))
            seen[name.lower()] = b.id
            assert boards.get(name).id == b.id and boards.get(name.upper()).id == b.id
    # the spellings edgekd firmware accepted before its alias table moved into the board files
    for alias, bid in (("nano33blesense", "nano33ble"), ("nano33ble_sense", "nano33ble"), ("nano-33-ble", "nano33ble"),
                       ("nano_33_ble", "nano33ble"), ("nano33ble-sense", "nano33ble"), ("esp32dev", "esp32"),
                       ("esp32-s3", "esp32s3"), ("esp32_s3", "esp32s3"), ("esp32-s3-devkitc-1", "esp32s3")):
        assert boards.get(alias).id == bid


def test_get_loads_a_board_file_path(tmp_path):
    path = _write(tmp_path, GOOD, name="mine.toml")
    assert boards.get(path).id == boards.get(str(path)).id == "mine"


FIRMWARE = '\n[firmware]\ntargets = ["arduino", "platformio"]\nbaud = 9600\nnative_usb = true\n'
IDS = 'fqbn = "arduino:mbed_nano:nano33ble"\nplatformio_board = "nano33ble"\nplatformio_platform = "nordicnrf52"\n'


def test_user_board_file_firmware_table(tmp_path):
    b = boards.load_board_file(_write(tmp_path, IDS + GOOD + FIRMWARE))
    assert (b.firmware_targets, b.baud, b.native_usb) == (("arduino", "platformio"), 9600, True)
    assert b.arduino_core == "mbed_nano" and b.platformio_env == "mine"
    plain = boards.load_board_file(_write(tmp_path, GOOD))  # no [firmware]: fine for every verb but firmware
    assert (plain.firmware_targets, plain.baud, plain.native_usb) == ((), 115200, False)


@pytest.mark.parametrize("text, fragment", [
    (GOOD + FIRMWARE, "targets lists 'arduino', which needs `fqbn`"),
    (IDS.replace('platformio_platform = "nordicnrf52"\n', "") + GOOD + FIRMWARE,
     "'platformio', which needs `platformio_platform`"),
    (IDS + GOOD + FIRMWARE.replace('"platformio"', '"zephyr"'), "`targets` must be a list of arduino, esp-idf"),
    (IDS + GOOD + FIRMWARE.replace("native_usb = true", 'native_usb = "yes"'), "`native_usb` must be true or false"),
    (IDS + GOOD + FIRMWARE.replace("baud = 9600", "baud = -1"), "`baud` must be"),
    ('aliases = "mine2"\n' + GOOD, "`aliases` must be a list of names"),
])
def test_bad_firmware_facts(tmp_path, text, fragment):
    with pytest.raises(BoardError, match=re.escape(fragment)):
        boards.load_board_file(_write(tmp_path, text))
