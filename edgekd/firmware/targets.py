"""Firmware targets: the toolchains edgekd renders projects for, and what each needs of a board.

A *target* is a toolchain (``arduino``, ``esp-idf``, ``platformio``). What a
project needs to know about a board (its Arduino FQBN, PlatformIO platform and
board, ESP-IDF ``IDF_TARGET``, serial speed, native USB, the targets it
supports, its arena limits) is in the board's profile (:mod:`edgekd.boards`,
one ``.toml`` file per board): this module reads it from there and checks that
the toolchain can build for the board, so a board file passed with
``--board-file`` gets a firmware project like a shipped board.
"""

from __future__ import annotations

import os

from edgekd import boards as registry
from edgekd.boards import FIRMWARE_TARGETS, Board
from edgekd.boards import runtime as runtimes
from edgekd.errors import BoardError, InvalidArgumentError, invalid_value

TARGETS = FIRMWARE_TARGETS

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
# The boards every generated platformio.ini has an environment for (besides the project's own).
PLATFORMIO_ENVS = ("esp32", "esp32s3", "nano33ble")


def unsupported_reason(board: Board, target: str) -> str:
    """Why ``target`` cannot build a project for ``board`` ("" when it can)."""
    if target not in board.firmware_targets:
        listed = ", ".join(board.firmware_targets) or "none"
        if target == "esp-idf" and not board.idf_target:
            reason = "ESP-IDF builds for Espressif chips only"
        else:
            reason = f"its profile's [firmware] targets: {listed}"
        return f"Board {board.id!r} cannot be built with target {target!r} ({reason})"
    if target in ("arduino", "platformio") and board.arduino_core not in CHIRALE_CORES:
        return (f"Board {board.id!r} (Arduino core {board.arduino_core or 'unknown'}) cannot run {CHIRALE_LIBRARY}, "
                "which supports the mbed and ESP32 Arduino cores")
    return ""


def supported_targets(board: Board) -> tuple[str, ...]:
    """The targets edgekd can render a project for on ``board``, in :data:`TARGETS` order."""
    return tuple(t for t in TARGETS if not unsupported_reason(board, t))


def get_board(board: str | os.PathLike | Board) -> Board:
    """The profile of a board edgekd renders firmware for.

    Args:
        board: A board id or alias (``"nano33ble"``, ``"esp32s3"``), a board
            profile ``.toml`` path, or a :class:`edgekd.boards.Board`.

    Returns:
        The board's :class:`edgekd.boards.Board`.

    Raises:
        BoardError: Unknown board (the message lists those edgekd renders
            firmware for), a bad board file, or a board TFLM cannot run on.
        InvalidArgumentError: A board no target can build for.
    """
    if isinstance(board, str) and not board.strip():
        raise invalid_value("board", "a board id such as 'nano33ble' or 'esp32s3'", board)
    try:
        profile = registry.get(board)
    except BoardError:
        if not isinstance(board, str) or board.endswith(".toml"):
            raise  # a board file's own problem
        raise BoardError(f"Unknown board {board!r} for firmware. Valid boards: {', '.join(list_boards())} "
                         "(run `edgekd boards` for the full list).") from None
    if not profile.tflm_supported:
        raise BoardError(f"TFLM cannot run on board {profile.id!r}: {profile.tflm_unsupported_reason}")
    if supported_targets(profile):
        return profile
    shipped = profile.id in registry.list_boards() and registry.get(profile.id).path == profile.path
    if not profile.firmware_targets and not shipped:
        raise BoardError(f"Board file {profile.path} has no [firmware] targets, so edgekd cannot render firmware "
                         "for it. Add a [firmware] table with targets = [\"arduino\", \"platformio\", \"esp-idf\"] "
                         "(those that build for the board) and the ids each needs: fqbn; platformio_board and "
                         "platformio_platform; idf_target (docs/boards.md).")
    why = (profile.sources.get("firmware.targets") or "its profile lists no [firmware] targets"
           if not profile.firmware_targets
           else "; ".join(unsupported_reason(profile, t) for t in profile.firmware_targets))
    raise InvalidArgumentError(f"edgekd renders no firmware for board {profile.id!r} ({why}). Pick one of "
                               f"{', '.join(list_boards())}.")


def board_for_target(board: str | os.PathLike | Board, target: str) -> Board:
    """:func:`get_board`, checked for ``target`` (InvalidArgumentError naming the targets that work)."""
    check_target(target)
    profile = get_board(board)
    reason = unsupported_reason(profile, target)
    if reason:
        raise InvalidArgumentError(f"{reason}. Use `target` {' or '.join(supported_targets(profile))}.")
    return profile


def list_boards() -> list[str]:
    """Ids of the shipped boards edgekd renders firmware for (for at least one target)."""
    return [b.id for b in registry.all_boards() if b.tflm_supported and supported_targets(b)]


def platformio_envs() -> list[Board]:
    """The boards the generated ``platformio.ini`` always has environments for."""
    return [registry.get(b) for b in PLATFORMIO_ENVS]


def check_target(target: str) -> str:
    """Validate a target name."""
    if target not in TARGETS:
        raise invalid_value("target", "one of " + ", ".join(repr(t) for t in TARGETS), target)
    return target
