"""ESP-NN in the compiled engine (esp-tflite-micro): the engine calls what ESP-IDF's build of the interpreter calls.

esp-tflite-micro compiles its kernels with ``-DESP_NN`` and ``kernels/esp_nn/*.cc`` in place of TFLM's add,
conv, depthwise_conv, fully_connected, mul, pooling and softmax. The engine's source holds three variants
(``edgekd.engine.esp_nn``): ESP-NN's ESP32-S3/P4 functions, its ANSI C / generic functions, and the reference
kernels without ``ESP_NN``.

Always run: the source holds the ESP-NN calls under the right conditions and none in the reference variant (the
reference variant's bit-exactness is the esp-tree tests of test_conv.py, test_fc_pool.py, test_elementwise.py,
test_overlap.py). With an ESP-NN source tree (``EDGEKD_ESP_NN=/path/to/esp-nn``, a checkout of
github.com/espressif/esp-nn, or ``shared/tflm/esp-nn``): esp-tflite-micro's interpreter is built on the host
*with* its ESP-NN kernels and ESP-NN's ANSI C or generic sources, the engine with ``ESP_NN``, and every output
byte is compared; the ESP32-S3 scratch sizes the engine plans are compared with ESP-NN's own size functions.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from edgekd.engine import compile_model, esp_nn, read_graph
from tests.engine.conftest import ROOT, int8, random_inputs
from tests.engine.test_overlap import MODELS as OVERLAP_MODELS

keras = pytest.importorskip("keras")

ESP = "esp-tflite-micro-1.4.0"
L = keras.layers


def esp_nn_tree() -> Optional[Path]:
    """ESP-NN's sources: ``$EDGEKD_ESP_NN``, else ``shared/tflm/esp-nn`` in or beside the checkout; None."""
    env = os.environ.get("EDGEKD_ESP_NN")
    candidates = [Path(env)] if env else [base / "shared" / "tflm" / "esp-nn" for base in (ROOT, ROOT.parent)]
    return next((c for c in candidates if (c / "include" / "esp_nn.h").is_file()), None)


needs_esp_nn = pytest.mark.skipif(
    esp_nn_tree() is None,
    reason="no ESP-NN source tree: set EDGEKD_ESP_NN=/path/to/esp-nn (github.com/espressif/esp-nn) or lay it at "
           "shared/tflm/esp-nn")


def _model(shape, *layers, seed: int = 0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input(shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x)


def _conv():
    # 3x3 SAME conv, 3x3 depthwise on 16 channels (ESP32-S3's 3x3 mult-1 path), VALID stride-2 conv,
    # depthwise with multiplier 2, pointwise conv, dilated conv (reference fallback), 2x2 depthwise on 8
    # channels, then FC and softmax.
    return _model((10, 10, 3), L.Conv2D(16, 3, padding="same", activation="relu"), L.DepthwiseConv2D(3, padding="same"),
                  L.Conv2D(12, 3, strides=2, padding="valid"), L.DepthwiseConv2D(3, depth_multiplier=2),
                  L.Conv2D(8, 1, activation="relu"), L.Conv2D(8, 3, dilation_rate=2, padding="same"),
                  L.DepthwiseConv2D(2, padding="same"), L.Flatten(), L.Dense(10), L.Softmax())


def _feature_map():
    # The model's output is a feature map (8x8x8 bytes per input): no FC/softmax between the kernels and the bytes
    # compared.
    return _model((8, 8, 3), L.Conv2D(16, 3, padding="same", activation="relu"), L.DepthwiseConv2D(3, padding="same"),
                  L.Conv2D(8, 1), L.AveragePooling2D(3, 1, "same"), L.MaxPooling2D(2, 1, "same"))


def _fc_pool():
    # Pools on 8 channels (esp_nn_avg/max_pool_s8) and 6 (their _ansi versions), a rank-3 FC (several batches),
    # FC with ReLU, softmax over 5.
    return _model((9, 9, 8), L.AveragePooling2D(2, 2, "same"), L.MaxPooling2D(3, 1, "same"), L.Conv2D(6, 1),
                  L.AveragePooling2D(2, 1, "valid"), L.MaxPooling2D(2, 2, "same"), L.Reshape((4, -1)),
                  L.Dense(6, activation="relu"), L.Flatten(), L.Dense(5), L.Softmax())


def _elementwise():
    # ADD (fused ReLU) and MUL of same shapes (esp_nn_add/mul_elementwise_s8, 5*7*4 = 140 elements), then ADD and
    # MUL with a broadcast constant (reference Broadcast*4DSlow, as kernels/esp_nn/add.cc and mul.cc).
    c = np.random.default_rng(3).uniform(-1.0, 1.0, (1, 1, 4)).astype("float32")
    keras.utils.set_random_seed(1)
    i = keras.Input((5, 7, 4))
    a, b = L.Conv2D(4, 1)(i), L.Conv2D(4, 1, activation="tanh")(i)
    x = L.Multiply()([L.ReLU()(L.Add()([a, b])), a])
    x = L.Lambda(lambda t: c * (t + c))(x)
    return keras.Model(i, x)


# test_overlap.py's DS-CNN-, ResNet-like and raster models: their plans put outputs over inputs.
MODELS = {"conv": _conv, "feature_map": _feature_map, "fc_pool": _fc_pool, "elementwise": _elementwise,
          **{f"overlap_{name}": build for name, (build, _) in OVERLAP_MODELS.items()}}
OVERLAPPING = ("overlap_dscnn", "overlap_resnet", "overlap_raster")
# The ESP-NN entry points each model's engine must call (after esp_nn.h's mapping: _ansi or _opt suffixes).
CALLS = {"conv": {"conv_s8", "depthwise_conv_s8", "fully_connected_s8", "softmax_s8"},
         "feature_map": {"conv_s8", "depthwise_conv_s8", "avg_pool_s8", "max_pool_s8"},
         "overlap_dscnn": {"conv_s8", "depthwise_conv_s8", "avg_pool_s8", "fully_connected_s8"},
         "overlap_resnet": {"conv_s8", "add_elementwise_s8", "avg_pool_s8", "fully_connected_s8"},
         "overlap_raster": {"conv_s8", "depthwise_conv_s8", "avg_pool_s8", "max_pool_s8", "fully_connected_s8"},
         "fc_pool": {"avg_pool_s8", "max_pool_s8", "conv_s8", "fully_connected_s8", "softmax_s8"},
         "elementwise": {"add_elementwise_s8", "mul_elementwise_s8", "conv_s8"},
         "fc_pool_per_channel": {"avg_pool_s8", "max_pool_s8", "conv_s8", "fully_connected_per_ch_s8", "softmax_s8"}}


@pytest.fixture(scope="module")
def models():
    """The converted models: per-tensor FC, and the FC model with per-channel FC weights too."""
    out = {}
    for name, build in MODELS.items():
        keras.utils.set_random_seed(7)
        out[name] = int8(build(), per_channel_dense=False)
    out["fc_pool_per_channel"] = int8(_fc_pool(), per_channel_dense=True)
    return out


def _sections(source: str) -> dict[str, str]:
    """The variants of an esp-nn engine's source: condition of its #if/#elif/#else -> its text."""
    parts = re.split(r"^#(if|elif|else)\b(.*)$", source, flags=re.MULTILINE)
    sections, i = {}, 1  # parts: text, then (kind, condition, text) per directive
    while i < len(parts):
        kind, cond, text = parts[i], parts[i + 1].strip(), parts[i + 2]
        if kind != "if" or "ESP_NN" in cond:  # the variants (not the sdkconfig.h include)
            sections["else" if kind == "else" else cond] = text
        i += 3
    return sections


def test_source_calls_esp_nn_under_the_guards_and_the_reference_kernels_without(models):
    for name in ("conv", "fc_pool", "elementwise"):
        engine = compile_model(models[name], runtime=ESP)
        assert engine.kernels == "esp-nn" and set(engine.esp_nn_plans) == set(esp_nn.VARIANTS)
        source = engine.files["model_engine.cc"]
        assert source.index('#include "sdkconfig.h"') < source.index('#include "esp_nn.h"')
        sections = _sections(source)
        ref, opt = esp_nn.REFERENCE_CONDITION, esp_nn.CONDITIONS[esp_nn.OPTIMIZED]
        assert list(sections) == [ref, opt, "else"]  # the reference variant first, as engine.plan
        for cond in (opt, "else"):
            calls = set(re.findall(r"\besp_nn_(\w+?)(?:_ansi)?\(", sections[cond]))
            assert CALLS[name] <= calls, (name, cond, calls)
            assert "reference_integer_ops::ConvPerChannel" not in sections[cond] or name == "conv"
        assert "esp_nn" not in sections[ref]
        assert "tflite::reference_integer_ops::" in sections[ref]
    # The dilated convolution falls back to the reference kernel under ESP_NN, as kernels/esp_nn/conv.cc.
    conv = _sections(compile_model(models["conv"], runtime=ESP).files["model_engine.cc"])
    assert conv["else"].count("tflite::reference_integer_ops::ConvPerChannel(") == 1


def test_esp_nn_plans(models):
    """The ESP32-S3/P4 variant plans ESP-NN's scratch and no output over its input; the generic one the same
    overlaps as the reference kernels (ESP-NN's C kernels are raster-order) and one row of int32 for softmax."""
    for name in ("conv", *OVERLAPPING):
        engine = compile_model(models[name], runtime=ESP)
        opt, gen = engine.esp_nn_plans[esp_nn.OPTIMIZED], engine.esp_nn_plans[esp_nn.GENERIC]
        names = dict(engine.ops)
        # Only a dilated convolution (the reference kernel under ESP_NN too) may overlap in the optimized variant.
        dilated = {op.index for op in read_graph(models[name]).ops
                   if max(op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)) > 1}
        assert set(opt.overlaps) <= dilated and gen.overlaps.keys() == engine.plan.overlaps.keys()
        convs = {names[k] for k in opt.scratch_offsets} & {"CONV_2D", "DEPTHWISE_CONV_2D"}
        assert convs == set(names.values()) & {"CONV_2D", "DEPTHWISE_CONV_2D"}
        assert {names[k] for k in gen.scratch_offsets} <= {"SOFTMAX"}
        assert opt.total_bytes > gen.total_bytes
        if name in OVERLAPPING:
            assert gen.overlapped(), name
        else:
            assert {names[k] for k in gen.scratch_offsets} == {"SOFTMAX"}


def test_esp_idf_project_builds_the_engine_with_esp_nn(models):
    """The compiled ESP-IDF project defines ESP_NN for its main component (as esp-tflite-micro does for its
    kernels, PRIVATE to that component) and depends on espressif/esp-nn."""
    from edgekd.firmware import render

    model = models["elementwise"]
    x = np.zeros((2, *model.parsed.input_tensors[0].shape[1:]), np.float32)
    compiled = render(model, board="esp32s3", target="esp-idf", samples=x, num_samples=2, engine="compiled")
    cmake, manifest = compiled.files["main/CMakeLists.txt"], compiled.files["main/idf_component.yml"]
    assert "target_compile_options(${COMPONENT_LIB} PRIVATE -DESP_NN)" in cmake
    assert re.search(r"^  espressif/esp-nn:\n    version: \">=1\.1\.1\"$", manifest, re.MULTILINE)
    interp = render(model, board="esp32s3", target="esp-idf", samples=x, num_samples=2)
    assert "ESP_NN" not in interp.files["main/CMakeLists.txt"]
    assert "esp-nn" not in interp.files["main/idf_component.yml"]


def _symbols(exe: Path) -> set[str]:
    out = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    return {ln.split()[-1] for ln in out.splitlines() if ln.strip()}


@needs_esp_nn
@pytest.mark.parametrize("optimized", [False, True], ids=["ansi", "generic"])
@pytest.mark.parametrize("name", sorted([*MODELS, "fc_pool_per_channel"]))
def test_bit_exact_with_the_interpreter_built_with_esp_nn(models, esp, name, optimized, tmp_path):
    """Engine (ESP_NN) vs esp-tflite-micro's interpreter with its ESP-NN kernels, both on ESP-NN's ANSI C or
    generic functions: every output byte; both programs link the ESP-NN functions of ``CALLS``."""
    from edgekd.emulate.build import EspNn
    from edgekd.engine.build import run_engine, run_interpreter

    nn = EspNn(esp_nn_tree(), optimized=optimized)
    model = models[name]
    engine = compile_model(model, runtime=ESP)
    x = random_inputs(model, 8)
    got = run_engine(engine, x, facts=esp, esp_nn=nn, workdir=tmp_path / "engine")
    want = run_interpreter(model, x, facts=esp, esp_nn=nn, workdir=tmp_path / "interpreter")
    np.testing.assert_array_equal(got.outputs, want.outputs)
    suffix = "_opt" if optimized else "_ansi"
    for run in (got, want):
        linked = {s[len("esp_nn_"):] for s in _symbols(run.executable) if s.startswith("esp_nn_")}
        linked = {s[:-len(suffix)] if s.endswith(suffix) else s[:-len("_ansi")] if s.endswith("_ansi") else s
                  for s in linked}
        assert CALLS[name] <= linked, (run.executable, linked)
    plan = engine.esp_nn_plans[esp_nn.GENERIC]
    assert name not in OVERLAPPING or plan.overlapped()  # overlapping plans run ESP-NN's C kernels too
    print(f"{name} ({'generic' if optimized else 'ansi'}): {got.outputs.size} output bytes identical; activation "
          f"buffer {plan.total_bytes} B (reference variant {engine.plan.total_bytes} B)")


def _geometries(seed: int = 0, n: int = 300) -> list[tuple[int, ...]]:
    """(ih, iw, c, fh, fw, ch_mult, sh, sw, ph, pw, oh, ow, oc) covering the size functions' branches: pointwise,
    im2col-sized windows, padded or not, channels multiple of 8/16 or not, multipliers 1/2/4, inputs above the
    ESP32-S3 depthwise functions' 40 KB / 48 KB thresholds."""
    rng = np.random.default_rng(seed)
    out = [(64, 64, 16, 3, 3, 1, 1, 1, 1, 1, 64, 64, 16), (64, 64, 8, 5, 5, 1, 1, 1, 2, 2, 64, 64, 8),
           (64, 64, 16, 3, 3, 1, 2, 2, 0, 0, 31, 31, 16), (8, 8, 16, 1, 1, 1, 1, 1, 0, 0, 8, 8, 32)]
    while len(out) < n:
        ih, iw = (int(v) for v in rng.choice([1, 2, 3, 5, 7, 10, 16], 2))
        c = int(rng.choice([1, 2, 3, 4, 8, 12, 16, 20, 24, 32, 48]))
        fh, fw = (int(v) for v in rng.choice([1, 2, 3, 4, 5], 2))
        mult, (sh, sw) = int(rng.choice([1, 1, 2, 3, 4])), (int(v) for v in rng.choice([1, 2], 2))
        ph, pw = (int(v) for v in rng.choice([0, 0, 1, 2], 2))
        oh, ow = (ih + 2 * ph - fh) // sh + 1, (iw + 2 * pw - fw) // sw + 1
        if oh >= 1 and ow >= 1:
            out.append((ih, iw, c, fh, fw, mult, sh, sw, ph, pw, oh, ow, int(rng.choice([1, 4, 8, 10, 16, 32]))))
    return out


_SIZE_DRIVER = """#include <stdio.h>
#include "esp_nn_defs.h"
int esp_nn_get_conv_scratch_size_esp32s3(const data_dims_t*, const data_dims_t*, const data_dims_t*,
                                         const conv_params_t*);
int esp_nn_get_depthwise_conv_scratch_size_esp32s3(const data_dims_t*, const data_dims_t*, const data_dims_t*,
                                                   const dw_conv_params_t*);
static const int kCases[][13] = {%s};
int main(void) {
  for (unsigned i = 0; i < sizeof(kCases) / sizeof(kCases[0]); ++i) {
    const int* g = kCases[i];
    data_dims_t in = {g[1], g[0], g[2], 1}, filt = {g[4], g[3], g[2], 0}, out = {g[11], g[10], g[12], 1};
    data_dims_t dw_filt = {g[4], g[3], g[2] * g[5], 0}, dw_out = {g[11], g[10], g[2] * g[5], 1};
    conv_params_t cp = {0, 0, {g[7], g[6]}, {g[9], g[8]}, {0, 0}, {-128, 127}};
    dw_conv_params_t dp = {0, 0, g[5], {g[7], g[6]}, {g[9], g[8]}, {0, 0}, {-128, 127}};
    printf("%%d %%d\\n", esp_nn_get_conv_scratch_size_esp32s3(&in, &filt, &out, &cp),
           esp_nn_get_depthwise_conv_scratch_size_esp32s3(&in, &dw_filt, &dw_out, &dp));
  }
  return 0;
}
"""


@needs_esp_nn
def test_s3_scratch_sizes_match_esp_nn(tmp_path):
    """edgekd.engine.esp_nn's ESP32-S3 sizes equal ESP-NN's own esp_nn_get_(depthwise_)conv_scratch_size_esp32s3,
    compiled on the host from the given tree (only those two functions are called; the Xtensa kernels in the same
    files are never reached), over 300 geometries. With another ESP-NN release they may differ: model_init()
    then checks on the device."""
    root = esp_nn_tree()
    cases = _geometries()
    driver = tmp_path / "sizes.c"
    driver.write_text(_SIZE_DRIVER % ",\n".join("{" + ", ".join(map(str, g)) + "}" for g in cases))
    srcs = [root / "src" / "convolution" / f for f in ("esp_nn_conv_esp32s3.c", "esp_nn_depthwise_conv_s8_esp32s3.c")]
    exe = tmp_path / "sizes"
    subprocess.run(["gcc", "-O1", "-w", "-ffunction-sections", "-fdata-sections", "-I", str(root / "include"), "-I",
                    str(root / "src" / "common"), str(driver), *map(str, srcs), "-Wl,--gc-sections",
                    "-Wl,--unresolved-symbols=ignore-all", "-o", str(exe)], check=True)
    got = [tuple(map(int, ln.split())) for ln in subprocess.run([str(exe)], capture_output=True, text=True,
                                                                check=True).stdout.splitlines()]
    want = [(esp_nn.s3_conv_scratch((ih, iw, c), (fh, fw), (oh, ow, oc), (sh, sw), (ph, pw)),
             esp_nn.s3_depthwise_scratch((ih, iw, c), (fh, fw), mult, (oh, ow), (sh, sw), (ph, pw)))
            for ih, iw, c, fh, fw, mult, sh, sw, ph, pw, oh, ow, oc in cases]
    assert got == want


@needs_esp_nn
def test_a_shift_off_by_one_in_the_esp_nn_variant_breaks_bit_exactness(models, esp, tmp_path):
    """The comparison above can fail: the first convolution's first output shift, edited in the variant the host
    build with ESP_NN compiles (the last one), changes the engine's output bytes."""
    import dataclasses

    from edgekd.emulate.build import EspNn
    from edgekd.engine.build import run_engine, run_interpreter

    nn = EspNn(esp_nn_tree())
    model = models["conv"]
    engine = compile_model(model, runtime=ESP)
    source = engine.files["model_engine.cc"]
    m = re.compile(r"const int32_t (g_op\d+_shift)\[\d+\] = \{\s*(-?\d+)").search(source, source.index("\n#else\n"))
    edited = source[:m.start(2)] + str(int(m.group(2)) + 1) + source[m.end(2):]
    broken = dataclasses.replace(engine, files={**engine.files, "model_engine.cc": edited})
    x = random_inputs(model, 8)
    want = run_interpreter(model, x, facts=esp, esp_nn=nn).outputs
    np.testing.assert_array_equal(run_engine(engine, x, facts=esp, esp_nn=nn).outputs, want)
    assert not np.array_equal(run_engine(broken, x, facts=esp, esp_nn=nn).outputs, want), m.group(1)


@needs_esp_nn
@pytest.mark.parametrize("target", ["ESP32S3", "ESP32P4"])
def test_optimized_variant_compiles_against_esp_nn_chip_headers(models, esp, target, tmp_path):
    """The optimized variant, which no host can run, is what the preprocessor keeps with CONFIG_NN_OPTIMIZED and
    an ESP32-S3/P4 target (esp_nn.h maps the calls to ESP-NN's _esp32s3/_esp32p4 functions), and it compiles
    warning-free (-Wall -Wextra -Werror, syntax only) against those functions' declarations."""
    from edgekd.emulate.build import EspNn, include_dirs
    from edgekd.export import c_arrays

    flags = ["-std=gnu++17", "-DTF_LITE_STATIC_MEMORY", *EspNn(esp_nn_tree(), optimized=True).flags(),
             f"-DCONFIG_IDF_TARGET_{target}=1", *(a for d in include_dirs(esp) for a in ("-isystem", str(d)))]
    for name in ("conv", "fc_pool_per_channel", "elementwise"):
        engine = compile_model(models[name], runtime=ESP)
        work = tmp_path / name
        work.mkdir()
        for fname, text in {**engine.files, "model_data.h": c_arrays(engine.model).header}.items():
            (work / fname).write_text(text)
        src = str(work / "model_engine.cc")
        expanded = subprocess.run(["g++", *flags, "-I", str(work), "-E", src], capture_output=True, text=True,
                                  check=True).stdout
        assert f"esp_nn_conv_s8_{target.lower()}(" in expanded
        planned = engine.esp_nn_plans[esp_nn.OPTIMIZED].total_bytes
        assert f"kActivationBytes = {planned};" in expanded
        subprocess.run(["g++", *flags, "-I", str(work), "-Wall", "-Wextra", "-Werror", "-fsyntax-only", src],
                       capture_output=True, text=True, check=True)
