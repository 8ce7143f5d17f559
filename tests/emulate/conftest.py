"""Fixtures of the emulation tests: the firmware tests' tiny int8 CNN, and the Chirale tree."""

from __future__ import annotations

import shutil

import pytest

from edgekd.boards import runtime as runtimes
from tests.firmware.conftest import tiny_tflite  # noqa: F401  (a fixture)
from tests.firmware.test_tflm_headers import TREES


def chirale_tree():
    """The Chirale_TensorFLowLite tree (CMSIS-NN kernels) of shared/tflm/, or None."""
    from edgekd.emulate import FirmwareRunError, find_tree

    try:
        return find_tree(runtimes.get("chirale-2.0.0"), extra=TREES).root
    except FirmwareRunError:
        return None


def missing_tools() -> list[str]:
    return [t for t in ("arm-none-eabi-g++", "arm-none-eabi-size", "qemu-system-arm") if shutil.which(t) is None]


@pytest.fixture(scope="session")
def chirale():
    tree = chirale_tree()
    if tree is None:
        pytest.skip("no Chirale_TensorFLowLite tree (shared/tflm/; docs/firmware.md)")
    if missing_tools():
        pytest.skip(f"{', '.join(missing_tools())} not installed (make sysdeps)")
    return tree
