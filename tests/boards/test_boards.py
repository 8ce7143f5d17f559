"""Board registry and profile validation."""

import dataclasses

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
