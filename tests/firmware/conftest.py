"""Fixtures of the firmware tests: one tiny int8 digits model, rendered projects."""

from __future__ import annotations

from pathlib import Path

import pytest

# The ops of the tiny model below, as TFLite builtin names, in the order the converter emits them.
TINY_OPS = ("CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")


@pytest.fixture(scope="session")
def tiny_tflite(digits, tmp_path_factory):
    """(path, bytes) of a tiny full-int8 CNN (Conv2D, MaxPool, Flatten, Dense, Softmax) trained 2 epochs."""
    import keras

    from edgekd.convert import convert

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(digits.train.x, digits.train.y, epochs=2, batch_size=64, verbose=0)
    data = convert(model, mode="int8", representative_data=digits.val.x[:100])
    path = tmp_path_factory.mktemp("fw_model") / "tiny_int8.tflite"
    path.write_bytes(data)
    return str(path), data


@pytest.fixture(scope="session")
def tiny_arena(tiny_tflite):
    from edgekd.firmware import measure_arena

    return measure_arena(tiny_tflite[1])


# ---------------------------------------------------------------- compiling the generated main files

SHIMS = Path(__file__).resolve().parents[2] / "edgekd" / "emulate" / "sdk" / "include"
ARDUINO_DEFINES = ["-DARDUINO=10819", "-include", "Arduino.h"]  # arduino-cli prepends Arduino.h to a sketch
IDF_DEFINES = ["-DTF_LITE_STATIC_MEMORY"]  # esp-tflite-micro's CMakeLists gives its users this define


def resolver_methods(runtime=None) -> list[str]:
    """Every MicroMutableOpResolver method edgekd may emit (builtin and custom ops), for ``runtime``
    (an :class:`edgekd.boards.runtime.Runtime`: those it has) or for any runtime (``None``)."""
    from edgekd.export.ops import TFLM_CUSTOM, TFLM_RESOLVER

    methods = set(TFLM_RESOLVER.values()) | set(TFLM_CUSTOM.values())
    return sorted(methods if runtime is None else methods & runtime.resolver_methods)


def every_op_source(methods: list[str]) -> str:
    """A translation unit registering each of ``methods`` in one MicroMutableOpResolver."""
    from edgekd.export import TFLM_NAMESPACE_CLOSE, TFLM_NAMESPACE_OPEN

    calls = "\n".join(f"  ok = resolver.{m}() == kTfLiteOk && ok;" for m in methods)
    return ('#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n' + TFLM_NAMESPACE_OPEN
            + f"\nbool RegisterEveryOp() {{\n  static MicroMutableOpResolver<{len(methods)}> resolver;\n"
            f"  bool ok = true;\n{calls}\n  return ok;\n}}\n\n" + TFLM_NAMESPACE_CLOSE)


@pytest.fixture(scope="session")
def generated_sources(tiny_tflite, tiny_arena, digits, tmp_path_factory):
    """Translation units of generated code, by kind: the three targets' main files, code using the
    exported model_ops.h, and one resolver calling every Add…() method edgekd may emit (for any
    runtime; test_tflm_headers.py writes one per runtime)."""
    from edgekd.export import TFLM_NAMESPACE_CLOSE, TFLM_NAMESPACE_OPEN, op_resolver_header
    from edgekd.firmware import render, write_project

    out = tmp_path_factory.mktemp("fw_sources")
    files = {}
    for target, board, main in (("arduino", "nano33ble", "edgekd_model/edgekd_model.ino"),
                                ("esp-idf", "esp32s3", "main/main.cc"),
                                ("platformio", "esp32", "src/main.cpp")):
        project = render(tiny_tflite[1], board=board, target=target, samples=digits.val, arena_size=tiny_arena,
                         num_samples=2, labels=[str(i) for i in range(10)])
        write_project(project, out / target)
        files[target] = out / target / main
    ops = out / "ops"
    ops.mkdir()
    (ops / "model_ops.h").write_text(op_resolver_header(tiny_tflite[1]))
    # Firmware code of one's own: inside the same namespace, TFLM's names resolve with either layout.
    (ops / "use_ops.cc").write_text(
        '#include "model_ops.h"\n\n' + TFLM_NAMESPACE_OPEN + "\nbool RegisterAll() {\n"
        "  static ModelOpResolver resolver;\n  return RegisterModelOps(resolver) == kTfLiteOk;\n}\n\n"
        + TFLM_NAMESPACE_CLOSE)
    files["model_ops"] = ops / "use_ops.cc"
    (ops / "all_ops.cc").write_text(every_op_source(resolver_methods()))
    files["all_ops"] = ops / "all_ops.cc"
    return files


def syntax_check_command(cxx: list[str], kind: str, src: Path, include: list[Path],
                         system_include: list[Path] = ()) -> list[str]:
    """``cxx -fsyntax-only`` of one generated translation unit, warnings as errors in edgekd's code."""
    defines = IDF_DEFINES if kind == "esp-idf" else ARDUINO_DEFINES if kind in ("arduino", "platformio") else []
    flags = ["-I", str(src.parent), "-I", str(SHIMS)]
    for d in include:
        flags += ["-I", str(d)]
    for d in system_include:  # TFLM's own warnings are not edgekd's: -isystem
        flags += ["-isystem", str(d)]
    return [*cxx, "-std=gnu++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", *defines, *flags,
            "-x", "c++", str(src)]
