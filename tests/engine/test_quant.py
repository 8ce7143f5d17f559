"""edgekd.engine.quant against TFLM's own routines, compiled from each tree and run on thousands of inputs.

A C++ probe (written here into ``tmp_path``) includes the tree's
``quantization_util.h``, ``kernel_util.h`` and ``padding.h``, links the tree's
host library, reads one request per line, runs each in a forked child (a
``TFLITE_CHECK`` aborts: the child dies, the probe prints ``abort``) and prints
the results; the Python ports must print the same lines.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from edgekd.engine import quant

PROBE = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>

#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/kernels/padding.h"

namespace {

void Report(TfLiteContext*, const char*, ...) {}

double NextDouble(char** cursor) { return std::strtod(*cursor, cursor); }
long NextInt(char** cursor) { return std::strtol(*cursor, cursor, 10); }

TfLiteTensor Quantized(TfLiteType type, float scale, long zero_point) {
  TfLiteTensor t;
  std::memset(&t, 0, sizeof(t));
  t.type = type;
  t.params.scale = scale;
  t.params.zero_point = static_cast<int32_t>(zero_point);
  return t;
}

// "conv TYPE IN_SCALE OUT_SCALE OUT_ZP ACT N S1..SN": PopulateConvolutionQuantizationParams (per-channel
// when N > 1, else the one filter scale broadcast over 3 channels).
void Conv(char* p, TfLiteContext* ctx) {
  TfLiteType type = static_cast<TfLiteType>(NextInt(&p));
  float in_scale = static_cast<float>(NextDouble(&p));
  float out_scale = static_cast<float>(NextDouble(&p));
  long zp = NextInt(&p);
  TfLiteFusedActivation act = static_cast<TfLiteFusedActivation>(NextInt(&p));
  int n = static_cast<int>(NextInt(&p));
  int channels = n > 1 ? n : 3;
  TfLiteFloatArray* scales = static_cast<TfLiteFloatArray*>(std::malloc(sizeof(int) + sizeof(float) * n));
  scales->size = n;
  for (int i = 0; i < n; ++i) scales->data[i] = static_cast<float>(NextDouble(&p));
  TfLiteIntArray* dims = static_cast<TfLiteIntArray*>(std::malloc(sizeof(int) * 5));
  dims->size = 4;
  dims->data[0] = channels; dims->data[1] = 1; dims->data[2] = 1; dims->data[3] = 1;
  TfLiteAffineQuantization affine;
  affine.scale = scales;
  affine.zero_point = nullptr;
  affine.quantized_dimension = 0;
  TfLiteTensor input = Quantized(type, in_scale, 0), output = Quantized(type, out_scale, zp);
  TfLiteTensor filter = Quantized(kTfLiteInt8, scales->data[0], 0);
  input.quantization.type = kTfLiteAffineQuantization;
  filter.quantization.type = kTfLiteAffineQuantization;
  filter.quantization.params = &affine;
  filter.dims = dims;
  int32_t mult = 0, mults[64], act_min = 0, act_max = 0;
  int shift = 0, shifts[64];
  TfLiteStatus s = tflite::PopulateConvolutionQuantizationParams(
      ctx, &input, &filter, nullptr, &output, act, &mult, &shift, &act_min, &act_max, mults, shifts, channels);
  if (s != kTfLiteOk) { std::printf("error\n"); return; }
  for (int i = 0; i < channels; ++i) std::printf("%ld %d ", static_cast<long>(mults[i]), shifts[i]);
  std::printf("%ld %ld\n", static_cast<long>(act_min), static_cast<long>(act_max));
}

void One(char* line) {
  char kind[16] = {0};
  int used = 0;
  if (std::sscanf(line, "%15s%n", kind, &used) != 1) return;
  char* p = line + used;
  TfLiteContext ctx;
  std::memset(&ctx, 0, sizeof(ctx));
  ctx.ReportError = Report;
  int32_t m = 0;
  int s = 0;
  if (!std::strcmp(kind, "qm")) {
    tflite::QuantizeMultiplier(NextDouble(&p), &m, &s);
  } else if (!std::strcmp(kind, "qs")) {
    tflite::QuantizeMultiplierSmallerThanOneExp(NextDouble(&p), &m, &s);
  } else if (!std::strcmp(kind, "qg")) {
    tflite::QuantizeMultiplierGreaterThanOne(NextDouble(&p), &m, &s);
  } else if (!std::strcmp(kind, "cm")) {
    TfLiteTensor in = Quantized(kTfLiteInt8, static_cast<float>(NextDouble(&p)), 0);
    TfLiteTensor f = Quantized(kTfLiteInt8, static_cast<float>(NextDouble(&p)), 0);
    TfLiteTensor out = Quantized(kTfLiteInt8, static_cast<float>(NextDouble(&p)), 0);
    double real = 0;
    if (tflite::GetQuantizedConvolutionMultipler(&ctx, &in, &f, &out, &real) != kTfLiteOk) {
      std::printf("error\n");
      return;
    }
    tflite::QuantizeMultiplier(real, &m, &s);
  } else if (!std::strcmp(kind, "act")) {
    TfLiteFusedActivation a = static_cast<TfLiteFusedActivation>(NextInt(&p));
    TfLiteType type = static_cast<TfLiteType>(NextInt(&p));
    float scale = static_cast<float>(NextDouble(&p));
    TfLiteTensor out = Quantized(type, scale, NextInt(&p));
    int32_t hi = 0;
    if (tflite::CalculateActivationRangeQuantized(&ctx, a, &out, &m, &hi) != kTfLiteOk) {
      std::printf("error\n");
      return;
    }
    s = static_cast<int>(hi);
  } else if (!std::strcmp(kind, "pad")) {
    int v[9];
    for (int i = 0; i < 9; ++i) v[i] = static_cast<int>(NextInt(&p));
    int oh = 0, ow = 0;
    TfLitePaddingValues pv = tflite::ComputePaddingHeightWidth(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                                                              static_cast<TfLitePadding>(v[8]), &oh, &ow);
    std::printf("%d %d %d %d %d %d\n", oh, ow, pv.height, pv.width, pv.height_offset, pv.width_offset);
    return;
  } else if (!std::strcmp(kind, "conv")) {
    Conv(p, &ctx);
    return;
  } else if (!std::strcmp(kind, "sm")) {
    double beta = NextDouble(&p), scale = NextDouble(&p);
    int bits = static_cast<int>(NextInt(&p));
    tflite::PreprocessSoftmaxScaling(beta, scale, bits, &m, &s);
  } else if (!std::strcmp(kind, "rad")) {
    int bits = static_cast<int>(NextInt(&p)), shift = static_cast<int>(NextInt(&p));
    std::printf("%d\n", tflite::CalculateInputRadius(bits, shift, static_cast<int>(NextInt(&p))));
    return;
  } else {
    std::printf("unknown\n");
    return;
  }
  std::printf("%ld %d\n", static_cast<long>(m), s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  FILE* in = std::fopen(argv[1], "r");
  if (in == nullptr) return 2;
  char line[4096];
  while (std::fgets(line, sizeof(line), in) != nullptr) {
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      One(line);
      std::fflush(stdout);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::printf("abort\n");
  }
  std::fclose(in);
  return 0;
}
"""

# TfLiteType numbers of the output types CalculateActivationRangeQuantized handles, and quant's names.
TYPES = {9: "INT8", 3: "UINT8", 7: "INT16"}
# TfLitePadding: 1 SAME, 2 VALID (0 unknown: ComputeOutSize returns 0).
PADS = {1: "SAME", 2: "VALID", 0: "UNKNOWN"}


def _hex(x: float) -> str:
    return float(x).hex()


def _f32s(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """float32 values log-uniform in [2**lo, 2**hi]."""
    return np.exp2(rng.uniform(lo, hi, n)).astype(np.float32)


def _multipliers(rng: np.random.Generator) -> list[float]:
    """Doubles that stress QuantizeMultiplier: every binade in use, exact powers of two, values that round
    to 2**31 (just under a power of two), tiny ones below 2**-31, huge ones, negatives."""
    vals = [0.0, 1.0, 0.5, 0.25, 2.0, 1e-300, 5e-324, 1e300, -0.5, -1.0, -0.75, 0.9999999999, 1.0000000001]
    vals += list(np.exp2(rng.uniform(-60.0, 60.0, 1500)))
    vals += list(np.exp2(rng.uniform(-8.0, 8.0, 1500)))
    vals += [math.ldexp(1.0, e) for e in range(-70, 70)]
    ulp = 2.0 ** -33  # half a step of the Q31 significand at [0.5, 1): these round up to 2**31
    for e in range(-40, 40):
        vals += [math.ldexp(1.0 - ulp * k, e) for k in (0.25, 0.5, 1.0, 1.0001, 0.9999, 2.0)]
        vals += [math.ldexp(0.5 + ulp * k, e) for k in (0.5, 1.0, 1.5)]
    vals += list(-np.exp2(rng.uniform(-20.0, 5.0, 100)))
    return [float(v) for v in vals]


def _requests(rng: np.random.Generator, softmax: bool) -> list[tuple]:
    """Every request: (kind, args...)."""
    reqs: list[tuple] = []
    for v in _multipliers(rng):
        reqs.append(("qm", v))
        if 0.0 < v < 1.0:
            reqs.append(("qs", v))
        if v > 1.0:
            reqs.append(("qg", v))
    # Per-channel triples as a conv's Prepare sees them: float32 scales of realistic and extreme ranges.
    n = 800
    ins, outs = _f32s(rng, n, -12, 2), _f32s(rng, n, -12, 2)
    for i in range(n):
        k = int(rng.integers(1, 9))
        filt = _f32s(rng, k, -14, 0)
        reqs.append(("conv", 9, float(ins[i]), float(outs[i]), int(rng.integers(-128, 128)),
                     int(rng.integers(0, 4)), k, *map(float, filt)))
        reqs.append(("cm", float(ins[i]), float(filt[0]), float(outs[i])))
    reqs += [("cm", 2.0 ** -70, 2.0 ** -70, 1.0), ("cm", 1e-38, 1e-38, 3e-38), ("cm", 1.0, 1.0, 1e-38)]
    for _ in range(1500):
        t = int(rng.choice(list(TYPES)))
        scale = float(_f32s(rng, 1, -40, 10)[0])
        reqs.append(("act", int(rng.integers(0, 4)), t, scale, int(rng.integers(-300, 300))))
    for scale in (1e-45, 1e-40, 1e-38, 2.0 ** -126, 3e-9, 1.0 / 3.0, 6.0 / 255.0, 2.0 / 255.0):
        for a in range(4):
            reqs.append(("act", a, 9, float(np.float32(scale)), 0))
    reqs += [("act", a, 9, float(np.float32(s)), 0) for a in (1, 3) for s in (12.0 / 255, 1.0 / 255, 0.047058824)]
    for _ in range(3000):
        sh, sw, dh, dw = (int(x) for x in rng.integers(1, 5, 4))
        ih, iw, fh, fw = (int(x) for x in rng.integers(1, 40, 4))
        reqs.append(("pad", sh, sw, dh, dw, ih, iw, fh % 8 + 1, fw % 8 + 1, int(rng.choice([1, 2, 0]))))
    reqs += [("pad", 2, 2, 1, 1, 2, 2, 5, 5, 2), ("pad", 3, 1, 2, 1, 1, 3, 4, 7, 2), ("pad", 0, 0, 1, 1, 5, 5, 3, 3, 1)]
    if softmax:
        for _ in range(1000):
            beta = float(rng.choice([1.0, 0.5, 2.0, float(rng.uniform(0.01, 10))]))
            reqs.append(("sm", beta, float(_f32s(rng, 1, -12, 4)[0]), int(rng.integers(1, 31))))
        for bits in range(1, 31):
            for shift in range(0, 31):
                reqs.append(("rad", bits, shift, 31))
            if bits <= 15:  # int16 softmax's total_signed_bits: larger bits would shift by a negative amount
                reqs.append(("rad", bits, int(rng.integers(0, 31)), 15))
    return reqs


def _line(req: tuple) -> str:
    return " ".join(str(a) if isinstance(a, (int, str)) else _hex(a) for a in req)


def _call(kind: str, args: tuple) -> str:
    """What the probe prints for one request, from the Python ports."""
    if kind in ("qm", "qs", "qg"):
        fn = {"qm": quant.quantize_multiplier, "qs": quant.quantize_multiplier_smaller_than_one_exp,
              "qg": quant.quantize_multiplier_greater_than_one}[kind]
        return "%d %d" % fn(args[0])
    if kind == "cm":
        return "%d %d" % quant.conv_multiplier(*args)
    if kind == "act":
        a, t, scale, zp = args
        return "%d %d" % quant.activation_range(a, TYPES[t], scale, zp)
    if kind == "pad":
        p = quant.padding_hw(*args[:8], PADS[args[8]])
        return " ".join(str(p[k]) for k in ("out_height", "out_width", "height", "width", "height_offset",
                                            "width_offset"))
    if kind == "conv":
        _t, in_scale, out_scale, zp, act, n, *filt = args
        mults, shifts = quant.per_channel_multipliers(in_scale, tuple(filt), out_scale, n if n > 1 else 3)
        lo, hi = quant.activation_range(act, "INT8", out_scale, zp)
        return "".join(f"{m} {s} " for m, s in zip(mults, shifts)) + f"{lo} {hi}"
    if kind == "sm":
        return "%d %d" % quant.preprocess_softmax_scaling(*args)
    if kind == "rad":
        return str(quant.calculate_input_radius(*args))
    raise ValueError(kind)


def _expected(req: tuple) -> str:
    kind, *args = req
    try:
        return _call(kind, tuple(args))
    except ValueError:
        # TFLM aborts (TFLITE_CHECK) or reports an error (TF_LITE_ENSURE); the port raises.
        return "abort" if kind in ("qm", "qs", "qg", "sm") else "error"


@pytest.mark.parametrize("tree", ["chirale", "esp"])
def test_quant_is_bit_identical_to_tflm(tree, request, tmp_path):
    from edgekd.emulate.build import HOST, build_library, link_program

    facts = request.getfixturevalue(tree)
    softmax = hasattr(quant, "preprocess_softmax_scaling") and hasattr(quant, "calculate_input_radius")
    reqs = _requests(np.random.default_rng(15), softmax)
    (tmp_path / "requests.txt").write_text("\n".join(_line(r) for r in reqs) + "\n")
    (tmp_path / "probe.cc").write_text(PROBE)
    library = build_library(facts, HOST, ops=[])
    exe = link_program([tmp_path / "probe.cc"], library=library, includes=[tmp_path], out=tmp_path / "probe")
    proc = subprocess.run([str(exe), str(tmp_path / "requests.txt")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = proc.stdout.splitlines()
    assert len(got) == len(reqs)
    # Guard against a probe that never reaches the interesting branches.
    assert sum(g == "abort" for g in got) > 0 and sum(g == "error" for g in got) > 0
    assert any(g.endswith(" 0") and g.startswith("0 ") for g, r in zip(got, reqs) if r[0] == "qm" and r[1] != 0)
    bad = [(_line(r), g, _expected(r)) for r, g in zip(reqs, got) if g != _expected(r)]
    kinds = sorted({b[0].split()[0] for b in bad})
    assert not bad, f"{len(bad)} of {len(reqs)} differ ({kinds}), e.g. (request, TFLM, edgekd): {bad[:8]}"
