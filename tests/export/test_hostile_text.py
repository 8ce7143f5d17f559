"""Any text that reaches the generated C is escaped: hostile labels and names compile and round-trip byte for byte."""

from __future__ import annotations

import subprocess

import pytest

from edgekd.errors import InvalidArgumentError
from edgekd.export import c_arrays, c_comment_text, c_string_literal
from tests import _hostile

# Prints each label's bytes, then the constants an injected line would change.
LABELS_MAIN = _hostile.PRINT_LABELS % {
    "includes": "", "extra": 'printf("len %u classes %d\\n", g_model_data_len, kNumClasses);'}
# Every standard a firmware toolchain may use; C++11/C++14 and C99 read trigraphs (??/ is a backslash).
CXX_STANDARDS = ("c++11", "c++14", "gnu++17")


def test_string_literal_escapes_everything_but_plain_ascii():
    assert c_string_literal("plain text 123") == '"plain text 123"'
    assert c_string_literal('a"b\\c') == r'"a\042b\134c"'
    assert c_string_literal("??/") == r'"\077\077/"'
    assert c_string_literal("\U0001F600") == r'"\360\237\230\200"'  # UTF-8 bytes, never surrogate pairs
    assert c_string_literal("\x01F") == r'"\001F"'  # octal stops after 3 digits: 'F' stays a letter
    with pytest.raises(InvalidArgumentError, match="NUL"):
        c_string_literal("a\0b", argument="labels")
    with pytest.raises(InvalidArgumentError, match="lone surrogates"):
        c_string_literal("\ud800", argument="labels")


def test_comment_text_is_one_plain_line():
    for text in (_hostile.FILE_NAME, _hostile.TENSOR_NAME, _hostile.OP_NAME, "x\udcff"):  # surrogateescape
        out = c_comment_text(text)
        assert out.isascii() and out.isprintable()
        assert not any(bad in out for bad in ("*/", "/*", "\\", "?", '"', "\n"))


def test_nul_in_a_label_is_refused(small_cnn_tflite):
    with pytest.raises(InvalidArgumentError, match="`labels`.*NUL"):
        c_arrays(small_cnn_tflite[1], labels=["ok"] * 9 + ["bad\0"])


def test_hostile_labels_and_names_compile_and_round_trip(small_cnn_tflite, tmp_path):
    _, data = small_cnn_tflite
    model = _hostile.rename(data, custom_op=_hostile.OP_NAME)  # op names reach the banner comment too
    h, cc = c_arrays(model, labels=_hostile.LABELS, source_model="/models/" + _hostile.FILE_NAME,
                     mode=_hostile.OP_NAME)
    banner = h.split("\n\n")[0].splitlines()
    assert len(banner) == 8 and all(line.startswith("// ") for line in banner), banner  # no injected line
    assert "// Source model : evil%0A#define g_model_data_len 0%0A%22%3F%3F= %3F%3F' %2A%5C" in banner
    assert h.isascii() and cc.isascii()
    (tmp_path / "model_data.h").write_text(h)
    (tmp_path / "model_data.cc").write_text(cc)
    (tmp_path / "main.cc").write_text(LABELS_MAIN)
    want = _hostile.printed_labels(_hostile.LABELS) + [f"len {len(model)} classes 10"]
    for std in CXX_STANDARDS:
        exe = tmp_path / f"labels_{std}"
        proc = subprocess.run(["g++", f"-std={std}", "-Wall", "-Wextra", "-Werror", "-Wcomment", "-o", str(exe),
                               str(tmp_path / "main.cc"), str(tmp_path / "model_data.cc")],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, f"{std}:\n{proc.stderr[:3000]}"
        run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
        assert run.stdout.splitlines() == want, std
    # The header is also C: a C99 translation unit (trigraphs on) reads it unchanged.
    (tmp_path / "use.c").write_text('#include "model_data.h"\nint classes(void) { return kNumClasses; }\n')
    proc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-const-variable",
                           "-c", str(tmp_path / "use.c"), "-o", str(tmp_path / "use.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_cli_labels_file_with_hostile_labels(small_cnn_tflite, tmp_path):
    """`edgekd export --labels labels.json` (write_export): every label reaches model_data.cc exactly; NUL is
    a clean error."""
    import json

    from tests.conftest import assert_clean_error, run_cli

    path, _ = small_cnn_tflite
    (tmp_path / "labels.json").write_text(json.dumps(_hostile.LABELS))
    out = tmp_path / "out"
    proc = run_cli("export", path, "--labels", tmp_path / "labels.json", "-o", out)
    assert proc.returncode == 0, proc.stderr
    (out / "main.cc").write_text(LABELS_MAIN)
    exe = tmp_path / "labels"
    subprocess.run(["g++", "-std=c++14", "-Wall", "-Werror", "-o", str(exe), str(out / "main.cc"),
                    str(out / "model_data.cc")], check=True, cwd=out)
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[:10] == _hostile.printed_labels(_hostile.LABELS)
    (tmp_path / "nul.json").write_text(json.dumps(["nul\0"] + _hostile.LABELS[1:]))
    proc = run_cli("export", path, "--labels", tmp_path / "nul.json", "-o", tmp_path / "refused")
    assert_clean_error(proc, "`labels`", "NUL")
    assert not (tmp_path / "refused").exists()
