"""`--engine compiled` in exports and firmware: the projects run on the host and compute the interpreter's bytes.

A small int8 model (Conv2D, Flatten, Dense: ops the compiled engine covers) is
rendered twice per target, with TFLM's interpreter and with the compiled engine;
both projects are compiled unchanged with -Wall -Wextra -Werror against the real
TFLM tree of the target's runtime (Chirale_TensorFLowLite with CMSIS-NN for
Arduino, esp-tflite-micro with the reference kernels for ESP-IDF), run on the
host, and their output bytes compared.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgekd.boards import runtime as runtimes
from tests.conftest import assert_clean_error, run_cli
from tests.firmware.test_tflm_headers import TREES

TARGETS = [("arduino", "nano33ble"), ("esp-idf", "esp32s3"), ("platformio", "esp32")]


def _keras_model():
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(7, 7, 2), name="image")
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", name="conv2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(7, name="logits")(x)
    return keras.Model(inputs, outputs, name="engine_fw")


@pytest.fixture(scope="module")
def engine_model():
    """The model as full-int8 TFLite (per-tensor Dense: Chirale's FULLY_CONNECTED), and float samples."""
    from edgekd.convert import convert
    from edgekd.engine import supported_ops

    rng = np.random.default_rng(0)
    model = _keras_model()
    data = convert(model, mode="int8", representative_data=rng.uniform(-1, 1, (32, 7, 7, 2)).astype("float32"),
                   per_channel_dense=False)
    missing = set(data.parsed.op_names) - set(supported_ops())
    if missing:  # the emitters land one module at a time (edgekd/engine/ops/)
        pytest.skip(f"the compiled engine has no emitter for {sorted(missing)} in this tree")
    return data, rng.uniform(-1.2, 1.2, (6, 7, 7, 2)).astype("float32")


def _tree_for(target):
    from edgekd.emulate import FirmwareRunError, find_tree

    try:
        return find_tree(runtimes.for_target(target), extra=TREES).root
    except FirmwareRunError:
        pytest.skip(f"no {runtimes.for_target(target).label} tree (shared/tflm/; docs/firmware.md)")


@pytest.mark.parametrize("target,board", TARGETS, ids=[t for t, _ in TARGETS])
def test_compiled_project_prints_the_interpreter_projects_bytes(target, board, engine_model):
    from edgekd.emulate import run_on_host
    from edgekd.firmware import render

    tree = _tree_for(target)
    data, x = engine_model
    labels = [f"c{i}" for i in range(7)]
    interp = render(data, board=board, target=target, samples=x, num_samples=6, labels=labels)
    compiled = render(data, board=board, target=target, samples=x, num_samples=6, labels=labels, engine="compiled")
    assert compiled.engine == "compiled" and compiled.marker["engine"] == "compiled"
    assert compiled.ops == interp.ops  # the library is built with the model's kernels either way
    np.testing.assert_array_equal(compiled.inputs, interp.inputs)

    main = next(t for rel, t in compiled.files.items() if rel.endswith((".ino", "main.cc", "main.cpp")))
    assert "model_init()" in main and "model_invoke()" in main
    assert "MicroInterpreter" not in main and "tensorflow/lite" not in main and "kTensorArenaSize" not in main
    assert ("#include <Chirale_TensorFlowLite.h>" in main) == (target != "esp-idf")
    names = {os.path.basename(p) for p in compiled.files}
    ext = ".cc" if target == "esp-idf" else ".cpp"
    assert {"model_engine.h", f"model_engine{ext}", "model_data.h", f"model_data{ext}"} <= names
    assert "model_ops.h" not in names
    assert "g_model_data" not in "".join(compiled.files.values())
    assert "Engine: **compiled**" in compiled.files["README.md"]
    if target == "esp-idf":
        assert '"model_data.cc" "model_engine.cc"' in compiled.files["main/CMakeLists.txt"]

    run_i = run_on_host(interp, tflm=tree)
    run_c = run_on_host(compiled, tflm=tree)  # compiles model_engine with -Wall -Wextra -Werror
    np.testing.assert_array_equal(run_c.outputs, run_i.outputs)
    assert run_c.predicted == run_i.predicted and all(run_c.device_match)
    from edgekd import boards
    from edgekd.engine import compile_model

    engine = compile_model(data, runtime=compiled.runtime)
    assert run_c.arena_used_bytes == engine.activation_bytes > 0  # the host build: no ESP_NN, the reference plan
    # the project states what the board's build allocates: on an ESP32-S3 (ESP-IDF) the ESP-NN assembly variant's
    # plan, with the scratch its kernels ask for
    assert compiled.arena.size == (engine.activation_bytes_on(boards.get(board).idf_target) if target == "esp-idf"
                                   else engine.activation_bytes)
    if target == "esp-idf":
        assert compiled.arena.size == engine.esp_nn_plans["optimized"].total_bytes > engine.activation_bytes
    print(f"{target}: {run_c.kernels}, {len(run_c.predicted)} samples identical; activation buffer "
          f"{compiled.arena.size} B vs interpreter arena used {run_i.arena_used_bytes} B")


def test_render_refuses_an_arena_size_or_an_unknown_engine(engine_model):
    from edgekd.errors import InvalidArgumentError
    from edgekd.firmware import render

    data, _ = engine_model
    with pytest.raises(InvalidArgumentError, match="arena_size"):
        render(data, board="nano33ble", engine="compiled", arena_size=4096)
    with pytest.raises(InvalidArgumentError, match="engine"):
        render(data, board="nano33ble", engine="jit")


def test_cli_export_and_firmware_with_the_compiled_engine(engine_model, tmp_path):
    data, _ = engine_model
    path = tmp_path / "m.tflite"
    path.write_bytes(data.data)
    out = tmp_path / "out"
    proc = run_cli("export", path, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "model_ops.h" in os.listdir(out)
    proc = run_cli("export", path, "--engine", "compiled", "--target", "esp-idf", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["export.json", "model.tflite", "model_data.h", "model_engine.cc",
                                       "model_engine.h"]
    assert (out / "model.tflite").read_bytes() == data.data
    summary = json.loads((out / "export.json").read_text())
    c = summary["compiled"]
    assert summary["engine"] == "compiled" and c["runtime"] == "esp-tflite-micro-1.4.0" and c["kernels"] == "esp-nn"
    assert {o["op"] for o in c["ops"]} == set(data.parsed.op_names) and len(c["ops"]) == len(data.parsed.operators)
    assert c["activation_bytes"] == c["plan"]["total_bytes"] > 0 and c["weights_bytes"] > 0
    header = (out / "model_data.h").read_text()
    assert "kInputScale" in header and "g_model_data" not in header
    assert "Engine" in proc.stdout and f"{c['activation_bytes']:,} B" in proc.stdout

    fw = tmp_path / "fw"
    proc = run_cli("firmware", path, "--board", "esp32s3", "--target", "esp-idf", "--engine", "compiled", "-o", fw)
    assert proc.returncode == 0, proc.stderr
    s3 = c["esp_nn_activation_bytes"]["optimized"]
    assert s3 > c["activation_bytes"] and c["esp_nn_activation_bytes"]["generic"] >= c["activation_bytes"]
    assert f"static activation buffer {s3} B" in proc.stdout  # what the ESP32-S3's ESP-NN build allocates
    assert (fw / "main" / "model_engine.cc").read_text() == (out / "model_engine.cc").read_text()
    assert not (fw / "main" / "model_ops.h").exists() and not (fw / "main" / "model_data.cc").exists()
    proc = run_cli("firmware", path, "--board", "esp32s3", "--engine", "compiled", "--arena-size", "9000",
                   "-o", tmp_path / "fw2")
    assert_clean_error(proc, "--arena-size", "compiled engine")
    assert not (tmp_path / "fw2").exists()


def _unsupported_model():
    """An int8 model with an op TFLM runs and no compiled-engine emitter covers (the first of a few)."""
    import keras

    from edgekd.convert import convert
    from edgekd.engine import supported_ops

    layers = [("MEAN", lambda: keras.layers.GlobalAveragePooling2D()), ("LEAKY_RELU", lambda: keras.layers.LeakyReLU()),
              ("HARD_SWISH", lambda: keras.layers.Activation("hard_swish"))]
    op, layer = next(((op, f) for op, f in layers if op not in supported_ops()), (None, None))
    if op is None:
        pytest.skip("the compiled engine covers every candidate op")
    inputs = keras.Input(shape=(4, 4, 2))
    x = layer()(keras.layers.Conv2D(3, 3, padding="same")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    rep = np.random.default_rng(0).uniform(-1, 1, (16, 4, 4, 2)).astype("float32")
    data = convert(model, mode="int8", representative_data=rep, per_channel_dense=False)
    assert op in data.parsed.op_names
    return op, data


def test_an_op_the_engine_lacks_is_one_line_exit_2_and_nothing_written(tmp_path):
    from edgekd.errors import UnsupportedOpError
    from edgekd.export import write_export

    op, data = _unsupported_model()
    path = tmp_path / "m.tflite"
    path.write_bytes(data.data)
    out = tmp_path / "out"
    proc = run_cli("export", path, "--engine", "compiled", "-o", out)
    assert_clean_error(proc, op, "--engine interpreter")
    assert not out.exists()
    with pytest.raises(UnsupportedOpError, match=op):
        write_export(out, data, engine="compiled")
    assert not out.exists()
    proc = run_cli("firmware", path, "--board", "nano33ble", "--engine", "compiled", "-o", out)
    assert_clean_error(proc, op, "--engine interpreter")
    assert not out.exists()
