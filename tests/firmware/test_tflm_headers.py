"""The generated firmware compiles against a real TFLM source tree.

No package registry this project's machines reach ships TFLM's C++ headers
(docs/firmware.md), so this test runs where a tree is present and is skipped
elsewhere. Trees are taken from, in order:

- ``EDGEKD_TFLM_TREES``: directories separated by ``os.pathsep``;
- ``../shared/tflm/*/`` beside the checkout (where CI finds shared files);
- ``~/Arduino/libraries/Chirale_TensorF[Ll]owLite`` (arduino-cli's default library folder; the
  library index spells the name ``Chirale_TensorFLowLite``).

A tree is any folder holding ``tensorflow/lite/micro/micro_interpreter.h``: the
Chirale_TensorFlowLite library (``src/`` inside), an esp-tflite-micro
component, or a tflite-micro checkout or ``create_tflm_tree.py`` output. Each
generated main file (Arduino sketch, ESP-IDF ``main.cc``, PlatformIO
``main.cpp``) and the exported ``model_ops.h`` are compiled with
``-fsyntax-only`` by the host ``g++`` and, for the Cortex-M4 board, by
``arm-none-eabi-g++``. TFLM is real; the board SDK calls (``Serial``,
``esp_timer_get_time``, ``vTaskDelay``) come from ``host_shims/``.
``make test-tflm TFLM=DIR`` runs this file alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekd.export import op_resolver_header
from edgekd.firmware import render, write_project

REPO = Path(__file__).resolve().parents[2]
SHIMS = Path(__file__).resolve().parent / "host_shims"
ARM_M4F = ["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# Headers whose folder a TFLM tree's own includes expect on the include path.
_INCLUDE_MARKERS = ("tensorflow/lite/micro/micro_interpreter.h", "flatbuffers/flatbuffers.h",
                    "fixedpoint/fixedpoint.h", "ruy/profiler/instrumentation.h")


def tflm_trees() -> list[Path]:
    """The TFLM source trees this machine has (see the module docstring)."""
    found: list[Path] = []
    env = os.environ.get("EDGEKD_TFLM_TREES", "")
    found += [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    shared = REPO.parent / "shared" / "tflm"
    if shared.is_dir():
        found += sorted(p for p in shared.iterdir() if p.is_dir())
    for name in ("Chirale_TensorFLowLite", "Chirale_TensorFlowLite"):
        chirale = Path.home() / "Arduino" / "libraries" / name
        if chirale.is_dir():
            found.append(chirale)
    return list(dict.fromkeys(p.resolve() for p in found))


def include_dirs(tree: Path) -> list[Path]:
    """Folders to put on the include path for ``tree``: the parent of each marker header's path."""
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
                      "esp-tflite-micro in ../shared/tflm/; docs/firmware.md)")


@pytest.fixture(scope="module")
def projects(tiny_tflite, tiny_arena, digits, tmp_path_factory):
    """The three targets' main files, and model_ops.h, rendered for the tiny model."""
    out = tmp_path_factory.mktemp("fw_tflm")
    mains = {}
    for target, board, main in (("arduino", "nano33ble", "edgekd_model/edgekd_model.ino"),
                                ("esp-idf", "esp32s3", "main/main.cc"),
                                ("platformio", "nano33ble", "src/main.cpp")):
        project = render(tiny_tflite[1], board=board, target=target, samples=digits.val,
                         arena_size=tiny_arena, num_samples=2, labels=[str(i) for i in range(10)])
        write_project(project, out / target)
        mains[target] = out / target / main
    ops = out / "ops" / "model_ops.h"
    ops.parent.mkdir()
    ops.write_text(op_resolver_header(tiny_tflite[1]))
    # Firmware code using the header; inside edgekd_tflm, TFLM's names resolve with either namespace layout.
    (ops.parent / "use_ops.cc").write_text(
        '#include "model_ops.h"\n\nnamespace edgekd_tflm {\n\nbool RegisterAll() {\n'
        "  static ModelOpResolver resolver;\n  return RegisterModelOps(resolver) == kTfLiteOk;\n}\n\n"
        "}  // namespace edgekd_tflm\n")
    mains["model_ops"] = ops.parent / "use_ops.cc"
    return mains


def _syntax_check(cxx: list[str], tree: Path, src: Path, defines: list[str]) -> None:
    tflm = include_dirs(tree)
    assert tflm, f"{tree} has no tensorflow/lite/micro/micro_interpreter.h"
    chirale = [d for d in tflm if (d / "Chirale_TensorFlowLite.h").is_file()]
    flags = ["-I", str(src.parent), "-I", str(SHIMS)]
    for d in tflm:  # TFLM's own warnings are not ours: -isystem
        flags += ["-isystem", str(d)]
    if not chirale:
        flags += ["-I", str(SHIMS / "fallback")]
    cmd = [*cxx, "-std=gnu++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", *defines, *flags,
           "-x", "c++", str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-6000:]}"


ARDUINO_DEFINES = ["-DARDUINO=10819", "-include", "Arduino.h"]  # arduino-cli prepends Arduino.h to a sketch
IDF_DEFINES = ["-DTF_LITE_STATIC_MEMORY", "-DESP_PLATFORM"]  # as esp-tflite-micro's CMakeLists sets


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
@pytest.mark.parametrize("target", ["arduino", "esp-idf", "platformio", "model_ops"])
def test_generated_code_compiles_against_tflm_with_host_gpp(tree, target, projects):
    defines = IDF_DEFINES if target == "esp-idf" else ARDUINO_DEFINES if target != "model_ops" else []
    _syntax_check(["g++"], tree, projects[target], defines)


@pytest.mark.arm
@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_arduino_sketch_compiles_against_tflm_for_cortex_m4(tree, projects):
    if shutil.which(ARM_M4F[0]) is None:
        pytest.skip("arm-none-eabi-g++ is not installed (make sysdeps installs it)")
    _syntax_check(ARM_M4F, tree, projects["arduino"], ARDUINO_DEFINES)
