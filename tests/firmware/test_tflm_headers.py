"""The generated firmware compiles against a real TFLM source tree.

No package registry this project's machines reach ships TFLM's C++ headers
(docs/firmware.md), so this test runs where a tree is present and is skipped
elsewhere. Trees are taken from, in order:

- ``EDGEKD_TFLM_TREES``: directories separated by ``os.pathsep``;
- ``shared/tflm/*/`` inside the checkout, then ``../shared/tflm/*/`` beside it
  (where CI finds the shared files);
- ``~/Arduino/libraries/Chirale_TensorF[Ll]owLite`` (arduino-cli's default library
  folder; the library index spells the name ``Chirale_TensorFLowLite``).

A tree is any folder holding ``tensorflow/lite/micro/micro_interpreter.h`` and
the third-party headers it includes (flatbuffers, gemmlowp, ruy): the
Chirale_TensorFlowLite library, an esp-tflite-micro component, or the output
of tflite-micro's ``create_tflm_tree.py``. Compiled with ``-fsyntax-only``,
host ``g++`` (and ``arm-none-eabi-g++`` for the Cortex-M4 sketch): each
generated main file (Arduino sketch, ESP-IDF ``main.cc``, PlatformIO
``main.cpp``), code using the exported ``model_ops.h``, and one resolver
calling every ``Add…()`` method edgekd may emit for the tree's runtime (its
data file, ``edgekd/boards/runtimes/``; the whole table for a tree no data
file describes), so that the op set edgekd accepts is checked against the tree.
TFLM is real; the board-SDK calls (``Serial``, ``esp_timer_get_time``,
``vTaskDelay``, and the ``Wire.h`` Chirale's entry header includes) come from
``edgekd/emulate/sdk/include/``.
``make test-tflm TFLM=DIR`` runs this file alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekd.boards.runtime import tree_facts
from tests.firmware.conftest import SHIMS, every_op_source, resolver_methods, syntax_check_command

REPO = Path(__file__).resolve().parents[2]
ARM_M4F = ["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# Headers whose folder a TFLM tree's own includes expect on the include path.
_INCLUDE_MARKERS = ("tensorflow/lite/micro/micro_interpreter.h", "flatbuffers/flatbuffers.h",
                    "fixedpoint/fixedpoint.h", "ruy/profiler/instrumentation.h")


def tflm_trees() -> list[Path]:
    """The TFLM source trees this machine has (see the module docstring)."""
    found: list[Path] = []
    env = os.environ.get("EDGEKD_TFLM_TREES", "")
    found += [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    for shared in (REPO / "shared" / "tflm", REPO.parent / "shared" / "tflm"):
        if shared.is_dir():
            found += sorted(p for p in shared.iterdir() if p.is_dir())
    for name in ("Chirale_TensorFLowLite", "Chirale_TensorFlowLite"):
        chirale = Path.home() / "Arduino" / "libraries" / name
        if chirale.is_dir():
            found.append(chirale)
    return list(dict.fromkeys(p.resolve() for p in found))


def include_dirs(tree: Path) -> list[Path]:
    """Folders to put on the include path for ``tree``: the root of each marker header's path."""
    dirs: list[Path] = []
    for marker in _INCLUDE_MARKERS:
        depth = marker.count("/") + 1
        for hit in sorted(tree.rglob(Path(marker).name)):
            if hit.as_posix().endswith("/" + marker):
                root = hit.parents[depth - 1]
                if root not in dirs:
                    dirs.append(root)
    return dirs


TREES = tflm_trees()
pytestmark = pytest.mark.skipif(
    not TREES, reason="no TFLM source tree (set EDGEKD_TFLM_TREES, or put Chirale_TensorFlowLite / "
                      "esp-tflite-micro in shared/tflm/; docs/firmware.md)")


def _syntax_check(cxx: list[str], tree: Path, kind: str, src: Path) -> None:
    tflm = include_dirs(tree)
    assert tflm, f"{tree} has no tensorflow/lite/micro/micro_interpreter.h"
    chirale = any((d / "Chirale_TensorFlowLite.h").is_file() for d in tflm)
    cmd = syntax_check_command(cxx, kind, src, [] if chirale else [SHIMS / "fallback"], tflm)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode and kind == "all_ops":
        missing = sorted(set(re.findall(r"has no member named .(Add\w+).", proc.stderr)))
        if missing:
            pytest.fail(f"{tree.name} has no {', '.join(missing)}: edgekd would accept models using "
                        f"those ops and render projects that do not build against this tree")
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[:6000]}"


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
@pytest.mark.parametrize("kind", ["arduino", "esp-idf", "platformio", "model_ops"])
def test_generated_code_compiles_against_tflm_with_host_gpp(tree, kind, generated_sources):
    _syntax_check(["g++"], tree, kind, generated_sources[kind])


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_every_op_edgekd_accepts_for_the_runtime_registers(tree, tmp_path):
    runtime = tree_facts(tree).runtime()
    src = tmp_path / "all_ops.cc"
    src.write_text(every_op_source(resolver_methods(runtime)))
    _syntax_check(["g++"], tree, "all_ops", src)


@pytest.mark.arm
@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_arduino_sketch_compiles_against_tflm_for_cortex_m4(tree, generated_sources):
    if shutil.which(ARM_M4F[0]) is None:
        pytest.skip("arm-none-eabi-g++ is not installed (make sysdeps installs it)")
    _syntax_check(ARM_M4F, tree, "arduino", generated_sources["arduino"])
