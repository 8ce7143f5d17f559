"""edgekd.firmware.targets: toolchains only; every board fact comes from the board registry (edgekd.boards)."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from edgekd import boards
from edgekd.errors import BoardError, InvalidArgumentError
from edgekd.firmware import targets

# The boards edgekd rendered firmware for before their facts moved into the .toml files.
FIRMWARE_BOARDS = ["esp32", "esp32s3", "nano33ble", "pico", "portenta-h7"]


def test_targets_keeps_no_board_table():
    for name in ("_BOARDS", "_ALIASES", "_PIO_PLATFORMS", "FirmwareBoard", "importlib"):
        assert not hasattr(targets, name), name
    assert targets.list_boards() == FIRMWARE_BOARDS
    for bid in FIRMWARE_BOARDS:
        assert targets.get_board(bid) is boards.get(bid)


@pytest.mark.parametrize("bid, supported", [
    ("esp32", ("arduino", "esp-idf", "platformio")), ("esp32s3", ("arduino", "esp-idf", "platformio")),
    ("nano33ble", ("arduino", "platformio")), ("pico", ("arduino", "platformio")),
    ("portenta-h7", ("arduino", "platformio")), ("nucleo-l4r5zi", ()), ("uno", ()),
])
def test_supported_targets_come_from_the_profile(bid, supported):
    assert targets.supported_targets(boards.get(bid)) == supported


def test_lookup_errors():
    with pytest.raises(BoardError, match="Unknown board 'teensy99' for firmware. Valid boards: "
                       + ", ".join(FIRMWARE_BOARDS)):
        targets.get_board("teensy99")
    with pytest.raises(BoardError, match="TFLM cannot run on board 'uno'"):
        targets.get_board("uno")
    with pytest.raises(InvalidArgumentError, match="renders no firmware for board 'nucleo-l4r5zi'"):
        targets.get_board("nucleo-l4r5zi")
    with pytest.raises(InvalidArgumentError, match=r"\(ESP-IDF builds for Espressif chips only\). Use `target` "
                       "arduino or platformio"):
        targets.board_for_target("pico", "esp-idf")
    assert targets.board_for_target("Nano33BLE-Sense", "arduino").id == "nano33ble"  # aliases, any case


def _help() -> str:
    from edgekd.cli.firmware_cmd import firmware

    result = CliRunner().invoke(firmware, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_firmware_help_lists_every_firmware_board_from_the_registry(monkeypatch, tmp_path):
    assert f"Board id (or alias): {', '.join(FIRMWARE_BOARDS)};" in _help()
    # one more .toml in the registry's folder is one more board in --help (and for every verb)
    for bid in boards.list_boards():
        shutil.copy(boards.get(bid).path, tmp_path)
    text = open(boards.get("esp32s3").path).read().replace('id = "esp32s3"', 'id = "esp32s3-copy"')
    (tmp_path / "esp32s3-copy.toml").write_text(text.replace("aliases = [", "aliases = [] # ["))
    monkeypatch.setattr(boards, "_DIR", str(tmp_path))
    monkeypatch.setattr(boards, "_CACHE", {})
    monkeypatch.setattr(boards, "_NAMES", {})
    assert f"Board id (or alias): {', '.join(sorted(FIRMWARE_BOARDS + ['esp32s3-copy']))};" in _help()
    assert targets.board_for_target("esp32s3-copy", "esp-idf").idf_target == "esp32s3"
