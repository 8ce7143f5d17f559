"""edgekd check --engine compiled: the flash and RAM budgets hold the compiled engine's linked sizes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from edgekd.check import check
from edgekd.engine import supported_ops
from edgekd.flatbuffer import read_tflite
from tests.conftest import assert_clean_error, run_cli
from tests.engine.conftest import int8, tree_path

pytestmark = pytest.mark.skipif(not shutil.which("arm-none-eabi-g++") or tree_path("chirale") is None,
                                reason="needs arm-none-eabi-g++ and shared/tflm/Chirale_TensorFLowLite")
BOARDS = Path(__file__).resolve().parents[2] / "edgekd" / "boards"


@pytest.fixture(scope="module")
def cnn_tflite(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((16, 16, 2)), keras.layers.Conv2D(12, 3, strides=2, activation="relu"),
                          keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(), keras.layers.Dense(4)])
    path = tmp_path_factory.mktemp("compiled") / "cnn.tflite"
    path.write_bytes(bytes(int8(m, per_channel_dense=False)))
    return path


@pytest.fixture(scope="module")
def reports(cnn_tflite):
    """check's reports of the model on the NUCLEO-L4R5ZI for both engines."""
    tree = str(tree_path("chirale"))
    return {e: check(str(cnn_tflite), board="nucleo-l4r5zi", host_latency=False, engine=e, tflm=tree)
            for e in ("interpreter", "compiled")}


def _rows(report) -> dict:
    return {r.name: r for r in report.rows}


def test_compiled_budgets_use_the_linked_engine(reports):
    interp, comp = reports["interpreter"], reports["compiled"]
    assert interp.engine == "interpreter" and comp.engine == "compiled" and interp.compiled is None
    c = comp.compiled
    assert c.kernels == "cmsis-nn" and c.activation_bytes > 0
    # the RAM row: the engine's static RAM (its activation buffer in .bss + the kernels' data), no arena
    assert _rows(comp)["ram"].value == c.size.model_ram + c.size.tflm_ram >= c.activation_bytes
    assert _rows(comp)["flash"].value == c.size.model_flash + c.size.tflm_flash
    assert "arena" not in _rows(comp)
    # less than the interpreter's arena + runtime and flatbuffer + runtime
    assert _rows(comp)["ram"].value < _rows(interp)["ram"].value
    assert _rows(comp)["flash"].value < _rows(interp)["flash"].value
    d = comp.to_dict()
    assert d["engine"] == "compiled" and d["compiled_engine"]["ram_bytes"] == _rows(comp)["ram"].value
    assert interp.to_dict()["engine"] == "interpreter" and interp.to_dict()["compiled_engine"] is None


def test_a_model_that_fits_only_compiled(reports, cnn_tflite, tmp_path):
    """A board whose RAM budget lies between the two engines' figures: the CLI passes it compiled only."""
    low, high = _rows(reports["compiled"])["ram"].value, _rows(reports["interpreter"])["ram"].value
    text = (BOARDS / "nucleo-l4r5zi.toml").read_text()
    text = re.sub(r"(?m)^ram_bytes = [0-9_]+$", f"ram_bytes = {(low + high) // 2}", text, count=1)
    text = re.sub(r"(?m)^usable_ram_fraction = .*$", "usable_ram_fraction = 1.0", text, count=1)
    text = re.sub(r'(?m)^id = ".*"$', 'id = "tight-m4"', text).replace("aliases = [\"nucleo_l4r5zi\"]", "aliases = []")
    board = tmp_path / "tight.toml"
    board.write_text(text)
    args = ("check", str(cnn_tflite), "--board-file", str(board), "--no-host-latency", "--json",
            "--tflm", str(tree_path("chirale")))
    compiled = run_cli(*args, "--engine", "compiled")
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    out = json.loads(compiled.stdout)
    assert out["engine"] == "compiled" and out["passed"] and out["board"]["id"] == "tight-m4"
    interpreter = run_cli(*args)
    assert interpreter.returncode == 1, interpreter.stderr[-2000:]
    out = json.loads(interpreter.stdout)
    assert out["engine"] == "interpreter" and "ram" in out["failed"]


def model_the_engine_lacks(tmp_path: Path) -> tuple[Path, str]:
    """An int8 model TFLM runs with an op the compiled engine does not (LEAKY_RELU), and that op."""
    import keras

    m = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1), keras.layers.LeakyReLU(0.2),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "leaky.tflite"
    path.write_bytes(bytes(int8(m, per_channel_dense=False)))
    lacking = [op for op in read_tflite(path.read_bytes()).op_names if op not in supported_ops()]
    if not lacking:
        pytest.skip("the compiled engine runs LEAKY_RELU now: pick another op it lacks")
    return path, lacking[0]


def test_an_op_the_engine_lacks_is_a_clean_error(tmp_path):
    path, op = model_the_engine_lacks(tmp_path)
    proc = run_cli("check", str(path), "--board", "nucleo-l4r5zi", "--engine", "compiled", "--no-host-latency",
                   "--tflm", str(tree_path("chirale")))
    assert_clean_error(proc, op, "--engine interpreter")


def test_an_esp_nn_board_counts_the_variant_its_build_allocates(cnn_tflite):
    """On an ESP32-S3 the ESP-IDF build compiles the engine's ESP-NN assembly variant, whose convolutions ask for
    scratch the linked reference variant does not: RAM counts that variant's activation buffer (an ESP32 runs the
    generic variant), from the same link."""
    from edgekd import boards
    from edgekd.check.compiled import CompiledMeasurement
    from edgekd.engine import compile_model
    from edgekd.emulate.qemu import ImageSize

    engine = compile_model(cnn_tflite.read_bytes(), runtime="esp-tflite-micro-1.4.0")
    s3, generic = engine.esp_nn_plans["optimized"].total_bytes, engine.esp_nn_plans["generic"].total_bytes
    assert engine.activation_bytes_on(boards.get("esp32s3").idf_target) == s3 > engine.activation_bytes
    assert engine.activation_bytes_on(boards.get("esp32").idf_target) == generic
    assert engine.activation_bytes_on(None) == generic  # ESP-NN without an IDF target: its portable C
    fields = {f: 0 for f in ImageSize.__dataclass_fields__}
    size = ImageSize(**{**fields, "model_ram": engine.activation_bytes + 40, "tflm_ram": 8})
    m = CompiledMeasurement("esp-tflite-micro-1.4.0", "esp-nn", s3, 5, size, engine.activation_bytes)
    assert m.ram_bytes == s3 + 40 + 8 and m.to_dict()["linked_activation_bytes"] == engine.activation_bytes
    assert f"activation buffer {s3:,} B (the board's ESP-NN variant" in m.how("ram")
