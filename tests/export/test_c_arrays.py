"""edgekd.export: the C arrays compile (host and Cortex-M4) and reproduce the model byte for byte."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from edgekd.errors import InvalidArgumentError, UnsupportedOpError
from edgekd.export import _hex_body, c_arrays, op_resolver_header, validate_c_name, write_export
from edgekd.export.ops import TFLM_RESOLVER, resolver_calls, unsupported_ops
from edgekd.flatbuffer import read_tflite

ARM = shutil.which("arm-none-eabi-g++")


def test_hex_body_matches_xxd(tmp_path):
    if not shutil.which("xxd"):
        pytest.skip("xxd not installed")
    for n in (0, 1, 11, 12, 13, 1000):
        data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
        f = tmp_path / "blob"
        f.write_bytes(data)
        xxd = subprocess.run(["xxd", "-i"], input=data, capture_output=True).stdout
        # xxd -i omits the comma after the last byte; edgekd keeps it (valid C, simpler to generate).
        ours = _hex_body(data)
        assert ours.replace(b",\n", b"\n").rstrip(b"\n") == xxd.replace(b",\n", b"\n").rstrip(b"\n")


def test_header_and_source_shape(small_cnn_tflite):
    _, data = small_cnn_tflite
    fb = read_tflite(data)
    h, cc = c_arrays(data, name="digits_cnn", labels=[str(i) for i in range(10)], source_model="m.keras")
    assert "#ifndef EDGEKD_DIGITS_CNN_DATA_H_" in h and 'extern "C"' in h
    assert "extern const unsigned char g_digits_cnn_data[];" in h
    assert "extern const unsigned int g_digits_cnn_data_len;" in h
    assert re.search(r"alignas\(16\) EDGEKD_SECTION const unsigned char g_digits_cnn_data\[\] = \{", cc)
    assert f"g_digits_cnn_data_len = {len(data)};" in cc
    assert fb.sha256 in h and "Source model : m.keras" in h
    q = fb.input_tensors[0].quantization
    assert f"kDigitsCnnInputZeroPoint = {q.zero_point[0]};" in h
    assert max(len(line) for line in cc.splitlines()) <= 100
    # deterministic
    assert c_arrays(data, name="digits_cnn", labels=[str(i) for i in range(10)], source_model="m.keras") == (h, cc)


@pytest.mark.parametrize("bad", ["", "1model", "my-model", "int", "class", "a b", "__x", None])
def test_invalid_c_names(bad):
    with pytest.raises(InvalidArgumentError, match="Invalid value for argument `name`"):
        validate_c_name(bad)


def test_labels_must_match_classes(small_cnn_tflite):
    with pytest.raises(InvalidArgumentError, match="10 labels"):
        c_arrays(small_cnn_tflite[1], labels=["a", "b"])


_ROUNDTRIP = r"""
#include <stdio.h>
#include "model_data.h"
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "wb");
  if (!f) return 2;
  if (fwrite(g_model_data, 1, g_model_data_len, f) != g_model_data_len) return 3;
  fclose(f);
  if (((unsigned long)g_model_data) % 16 != 0) return 4;
  printf("%.9g %d %.9g %d %d %d %s\n", kInputScale, kInputZeroPoint, kOutputScale, kOutputZeroPoint,
         kInputSize, kNumClasses, kClassLabels[9]);
  return 0;
}
"""


def test_host_compiled_array_reproduces_model(small_cnn_tflite, tmp_path):
    path, data = small_cnn_tflite
    write_export(tmp_path, data, labels=[f"digit{i}" for i in range(10)], source_model=path)
    (tmp_path / "main.cc").write_text(_ROUNDTRIP)
    exe = tmp_path / "roundtrip"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-o", str(exe), str(tmp_path / "main.cc"),
                    str(tmp_path / "model_data.cc")], check=True, cwd=tmp_path)
    out = subprocess.run([str(exe), str(tmp_path / "back.tflite")], check=True, capture_output=True, text=True)
    assert (tmp_path / "back.tflite").read_bytes() == data
    fb = read_tflite(data)
    iq, oq = fb.input_tensors[0].quantization, fb.output_tensors[0].quantization
    s_in, z_in, s_out, z_out, size, ncls, label = out.stdout.split()
    assert float(s_in) == pytest.approx(iq.scale[0], rel=1e-6) and int(z_in) == iq.zero_point[0]
    assert float(s_out) == pytest.approx(oq.scale[0], rel=1e-6) and int(z_out) == oq.zero_point[0]
    assert (int(size), int(ncls), label) == (64, 10, "digit9")


@pytest.mark.arm
@pytest.mark.skipif(ARM is None, reason="arm-none-eabi-g++ not installed (make test installs it)")
def test_cortex_m4_object_keeps_array_read_only_and_aligned(small_cnn_tflite, tmp_path):
    _, data = small_cnn_tflite
    write_export(tmp_path, data)
    obj = tmp_path / "model_data.o"
    subprocess.run([ARM, "-mcpu=cortex-m4", "-mthumb", "-Os", "-fdata-sections", "-c",
                    str(tmp_path / "model_data.cc"), "-o", str(obj)], check=True, cwd=tmp_path)
    readelf = shutil.which("arm-none-eabi-readelf") or "readelf"
    syms = subprocess.run([readelf, "-sW", str(obj)], capture_output=True, text=True, check=True).stdout
    sym = next(line.split() for line in syms.splitlines() if line.rstrip().endswith(" g_model_data"))
    size, ndx = int(sym[2]), int(sym[6])
    assert size == len(data)
    secs = subprocess.run([readelf, "-SW", str(obj)], capture_output=True, text=True, check=True).stdout
    row = next(line for line in secs.splitlines() if re.match(rf"\s*\[\s*{ndx}\]", line))
    fields = row.split("]", 1)[1].split()
    name, flags, align = fields[0], fields[6], int(fields[-1])
    assert name.startswith(".rodata"), row
    assert "A" in flags and "W" not in flags, row  # allocated, read-only: stays in flash
    assert align == 16, row


def test_op_resolver_lists_exactly_the_models_ops(small_cnn_tflite):
    fb = read_tflite(small_cnn_tflite[1])
    calls = resolver_calls(fb)
    assert calls == [TFLM_RESOLVER[op] for op in fb.op_names]
    text = op_resolver_header(fb)
    assert f"constexpr int kModelNumOps = {len(calls)};" in text
    assert [m for m in re.findall(r"resolver\.(Add\w+)\(\)", text)] == calls


def test_unsupported_op_is_named():
    import dataclasses

    from edgekd.flatbuffer import Operator, TFLiteModel

    base = TFLiteModel(0, "", 3, "", (), (
        Operator(0, "CONV_2D", 3, None, (), (), {}),
        Operator(1, "CUSTOM", 32, "FlexErf", (), (), {}),
        Operator(2, "RFFT2D", 130, None, (), (), {}),
    ), (), (), 1)
    assert unsupported_ops(base) == ["CUSTOM:FlexErf", "RFFT2D"]
    with pytest.raises(UnsupportedOpError, match="CUSTOM:FlexErf.*SELECT_TF_OPS"):
        resolver_calls(base)
    assert dataclasses.is_dataclass(base)
