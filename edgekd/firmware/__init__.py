"""Firmware projects for a model: Arduino sketch, ESP-IDF app, PlatformIO project, and flashing.

``render`` computes a complete project (relative path -> text) for a full-int8
``.tflite`` model and a board; ``write_project`` writes it atomically;
``flash_plan`` / ``run_plan`` build and flash a written project with the
toolchain it was made for.
"""

from __future__ import annotations

from edgekd.firmware.flash import (
    PROJECT_TYPES, FlashPlan, check_tool, detect_project, flash_plan, list_serial_ports, run_plan,
)
from edgekd.firmware.project import (
    DEFAULT_ARENA_MARGIN, MARKER, Arena, Project, dequantize, measure_arena, quantize, render,
    templates_root, write_project,
)
from edgekd.firmware.targets import TARGETS, board_for_target, get_board, list_boards, supported_targets

__all__ = [
    "Arena", "DEFAULT_ARENA_MARGIN", "FlashPlan", "MARKER", "PROJECT_TYPES", "Project", "TARGETS",
    "board_for_target", "check_tool", "dequantize", "detect_project", "flash_plan", "get_board", "list_boards",
    "list_serial_ports", "measure_arena", "quantize", "render", "run_plan", "supported_targets", "templates_root",
    "write_project",
]
