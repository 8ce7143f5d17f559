"""Firmware targets and the board facts a firmware project needs.

A *target* is a toolchain (``arduino``, ``esp-idf``, ``platformio``); a
*board* says how each toolchain names it: the Arduino FQBN, the PlatformIO
platform/board/framework and the ESP-IDF ``IDF_TARGET``. Board ids are those
of :mod:`edgekd.boards` when that registry knows them (its ``fqbn``,
``platformio_board`` and ``idf_target`` fields win); this module keeps the
firmware-only facts (PlatformIO platform, serial speed) for the boards whose
toolchains edgekd renders projects for.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Optional

from edgekd.boards import runtime as runtimes
from edgekd.errors import BoardError, invalid_value

TARGETS = ("arduino", "esp-idf", "platformio")

# Versions the generated projects are written and tested against: the runtimes' data files
# (edgekd/boards/runtimes/*.toml), whose facts a test checks against the real source trees.
CHIRALE_LIBRARY = "Chirale_TensorFlowLite"
# The name in the Arduino library index and the PlatformIO registry (library.properties' name,
# with a capital L in "FLow"); the sketch includes the library's header Chirale_TensorFlowLite.h.
CHIRALE_INDEX_NAME = runtimes.for_target("arduino").distribution
CHIRALE_VERSION = runtimes.for_target("arduino").version
# The floor of idf_component.yml's "^" range. 1.3.5 (at least) hands ESP-NN's conv and depthwise
# kernels a filter with channels = 0, which sends them down the generic path; 1.3.7 fixed that,
# and 1.4.0 is the version the generated app is tested against.
ESP_TFLITE_MICRO_VERSION = runtimes.for_target("esp-idf").version
ESP_IDF_MIN_VERSION = "5.0"
# Arduino cores Chirale_TensorFlowLite runs on ("all Arduino boards with mbed or ESP32 architecture").
CHIRALE_CORES = ("mbed_nano", "mbed_nicla", "mbed_portenta", "mbed_rp2040", "mbed_giga", "esp32")
# PlatformIO platform of a PlatformIO board id, for registry boards not in the table below.
_PIO_PLATFORMS = {"pico": "raspberrypi", "portenta_h7_m7": "ststm32", "nano33ble": "nordicnrf52",
                  "esp32dev": "espressif32", "esp32-s3-devkitc-1": "espressif32", "nucleo_l4r5zi": "ststm32"}


@dataclasses.dataclass(frozen=True)
class FirmwareBoard:
    """How the three toolchains name one board.

    Attributes:
        id: edgekd board id (``edgekd boards`` lists them).
        name: Human-readable name.
        fqbn: Arduino fully qualified board name, or ``None``.
        platformio_platform: PlatformIO platform (``espressif32``, ``nordicnrf52``).
        platformio_board: PlatformIO board id.
        idf_target: ESP-IDF ``IDF_TARGET`` (``esp32``, ``esp32s3``) or ``None``
            for boards ESP-IDF cannot build for.
        baud: Serial monitor speed the generated firmware uses.
        native_usb: The board's serial port is native USB CDC (the sketch
            waits briefly for the host to open it).
    """

    id: str
    name: str
    fqbn: Optional[str]
    platformio_platform: str
    platformio_board: str
    idf_target: Optional[str] = None
    baud: int = 115200
    native_usb: bool = False

    @property
    def platformio_env(self) -> str:
        """The ``[env:…]`` name of this board in the generated ``platformio.ini``."""
        return self.id

    @property
    def arduino_core(self) -> Optional[str]:
        """Architecture of the board's Arduino core (``mbed_nano``, ``esp32``…), from its FQBN."""
        parts = (self.fqbn or "").split(":")
        return parts[1] if len(parts) >= 3 else None

    def supports(self, target: str) -> bool:
        """Whether a project for ``target`` can be built for this board."""
        if target == "esp-idf":
            return self.idf_target is not None
        # Arduino and PlatformIO projects use Chirale_TensorFlowLite (mbed and ESP32 Arduino cores).
        return self.arduino_core in CHIRALE_CORES


_BOARDS: dict[str, FirmwareBoard] = {
    b.id: b
    for b in (
        FirmwareBoard("nano33ble", "Arduino Nano 33 BLE / BLE Sense (nRF52840, Cortex-M4F 64 MHz)",
                      "arduino:mbed_nano:nano33ble", "nordicnrf52", "nano33ble", None, native_usb=True),
        FirmwareBoard("esp32", "ESP32 DevKit (Xtensa LX6 240 MHz)",
                      "esp32:esp32:esp32", "espressif32", "esp32dev", "esp32"),
        FirmwareBoard("esp32s3", "ESP32-S3 DevKitC-1 (Xtensa LX7 240 MHz, ESP-NN SIMD)",
                      "esp32:esp32:esp32s3", "espressif32", "esp32-s3-devkitc-1", "esp32s3"),
    )
}

# Other spellings of the same boards.
_ALIASES = {
    "nano33blesense": "nano33ble", "nano33ble_sense": "nano33ble", "nano-33-ble": "nano33ble",
    "nano_33_ble": "nano33ble", "nano33ble-sense": "nano33ble", "esp32dev": "esp32",
    "esp32-s3": "esp32s3", "esp32_s3": "esp32s3", "esp32-s3-devkitc-1": "esp32s3",
}

# The boards every generated platformio.ini has an environment for.
PLATFORMIO_ENVS = ("esp32", "esp32s3", "nano33ble")


def _from_registry(board_id: str) -> Optional[Any]:
    """The :mod:`edgekd.boards` profile of ``board_id``, or ``None`` when absent."""
    try:
        boards = importlib.import_module("edgekd.boards")
    except ModuleNotFoundError:
        return None
    get = getattr(boards, "get", None)
    if get is None:
        return None
    try:
        return get(board_id)
    except Exception:  # unknown there: fall back to the firmware table
        return None


def get_board(board: str) -> FirmwareBoard:
    """Look up a board by id (case-insensitive; a few aliases are accepted).

    Args:
        board: A board id such as ``"nano33ble"``, ``"esp32"`` or ``"esp32s3"``.

    Returns:
        The board's :class:`FirmwareBoard`.

    Raises:
        BoardError: Unknown board; the message lists the valid ids.
    """
    if not isinstance(board, str) or not board.strip():
        raise invalid_value("board", "a board id such as 'nano33ble' or 'esp32s3'", board)
    key = board.strip().lower()
    key = _ALIASES.get(key, key)
    base = _BOARDS.get(key)
    prof = _from_registry(board.strip()) or (_from_registry(key) if key != board else None)
    if prof is not None and getattr(prof, "tflm_supported", True) is False:
        raise BoardError(f"TFLM cannot run on board {board!r}: {getattr(prof, 'tflm_unsupported_reason', '')}")
    if base is None and prof is None:
        valid = ", ".join(list_boards())
        raise BoardError(f"Unknown board {board!r} for firmware. Valid boards: {valid} "
                         "(run `edgekd boards` for the full list).")
    if prof is None:
        return base
    fields = {
        "fqbn": getattr(prof, "fqbn", None),
        "platformio_board": getattr(prof, "platformio_board", None),
        "idf_target": getattr(prof, "idf_target", None),
    }
    if base is None:
        pio_board = fields["platformio_board"]
        if not pio_board:
            raise BoardError(f"Board {board!r} has no toolchain ids (FQBN / PlatformIO board); "
                             f"edgekd renders firmware for: {', '.join(sorted(_BOARDS))}.")
        platform = "espressif32" if fields["idf_target"] else _PIO_PLATFORMS.get(pio_board)
        if not platform:
            raise BoardError(f"Board {board!r} has no PlatformIO platform; "
                             f"edgekd renders firmware for: {', '.join(sorted(_BOARDS))}.")
        fw = FirmwareBoard(key, getattr(prof, "name", key), fields["fqbn"], platform, pio_board,
                           fields["idf_target"])
        # mbed Arduino cores print over native USB CDC: the sketch waits briefly for the host.
        return dataclasses.replace(fw, native_usb=(fw.arduino_core or "").startswith("mbed"))
    return dataclasses.replace(base, **{k: v for k, v in fields.items() if v})


def list_boards() -> list[str]:
    """Ids of the boards edgekd renders firmware for (for at least one target)."""
    ids = set(_BOARDS)
    try:
        from edgekd.boards import list_boards as registry_ids
    except ImportError:
        return sorted(ids)
    for b in registry_ids():
        try:
            fw = get_board(b)
        except Exception:  # e.g. TFLM cannot run on it
            continue
        if any(fw.supports(t) for t in TARGETS):
            ids.add(b)
    return sorted(ids)


def platformio_envs() -> list[FirmwareBoard]:
    """The boards the generated ``platformio.ini`` always has environments for."""
    return [_BOARDS[b] for b in PLATFORMIO_ENVS]


def check_target(target: str) -> str:
    """Validate a target name."""
    if target not in TARGETS:
        raise invalid_value("target", "one of " + ", ".join(repr(t) for t in TARGETS), target)
    return target
