"""Bad input across every command: exit 2, one ``error:`` line naming the problem and the fix, nothing written.

The cases run in-process (one TensorFlow start-up) in a scratch folder; their messages make the table in
docs/errors.md, which this test checks is current. Regenerate it with

    EDGEKD_REGEN_DOCS=1 .venv/bin/python -m pytest tests/cli/test_errors_doc.py
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.cli._payloads import legacy_lambda_h5
from tests.conftest import ROOT, main_output, run_cli

DOC = os.path.join(ROOT, "docs", "errors.md")

_DIGITS = ["--dataset", "digits"]
_OK = ["--board", "nano33ble"]
_DISTILL = ["--epochs", "1", "-o", "s.keras"]
_FIT = ["--dataset", "digits", "--board", "nano33ble", "-o", "fitout"]

# (what is wrong, command line after `edgekd`, fragments the message must contain)
CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("unknown command", ["nope"], ("No such command 'nope'", "edgekd --help")),
    ("missing argument", ["export"], ("Missing argument 'MODEL'", "edgekd export --help")),
    ("bad choice", ["export", "m.keras", "--mode", "int4", "-o", "out"], ("'--mode'", "'int4'", "int8")),
    # export
    ("model file missing", ["export", "missing.keras", *_DIGITS, "-o", "out"], ("not found", "missing.keras")),
    ("corrupt .keras", ["export", "corrupt.keras", *_DIGITS, "-o", "out"], ("not a valid .keras archive", "Re-save")),
    ("weights-only .h5", ["export", "weights.h5", *_DIGITS, "-o", "out"], ("holds no model", "model.save()")),
    ("unknown model format", ["export", "model.onnx", *_DIGITS, "-o", "out"], ("extension .onnx", ".keras")),
    ("a directory that is no SavedModel", ["export", "folder", *_DIGITS, "-o", "out"],
     ("directory without saved_model.pb", "SavedModel")),
    ("model that runs code (Lambda)", ["export", "lambda.h5", *_DIGITS, "-o", "out"],
     ("needs code to load", "Lambda layer", "--unsafe")),
    ("empty output path", ["export", "m.keras", *_DIGITS, "-o", ""], ("-o/--output", "use . for")),
    ("output under a file", ["export", "m.keras", *_DIGITS, "-o", "afile/out"], ("Cannot write", "afile")),
    ("C name not an identifier", ["export", "m.keras", *_DIGITS, "--name", "my-model", "-o", "out"],
     ("`--name`", "my-model")),
    ("int8 without calibration data", ["export", "m.keras", "-o", "out"], ("representative data", "--rep-data")),
    ("both data options", ["export", "m.keras", *_DIGITS, "--rep-data", "x.npz", "-o", "out"],
     ("either --dataset or --rep-data",)),
    ("text file named .npz", ["export", "m.keras", "--rep-data", "text.npz", "-o", "out"],
     ("not a .npz archive", "numpy.savez")),
    ("pickled object arrays", ["export", "m.keras", "--rep-data", "objects.npz", "-o", "out"],
     ("Python objects", "numeric arrays")),
    ("NaN in the data", ["export", "m.keras", "--rep-data", "nan.npz", "-o", "out"], ("NaN or Inf", "example 3")),
    ("empty data", ["export", "m.keras", "--rep-data", "empty.npz", "-o", "out"], ("empty", "at least one")),
    ("data of the wrong shape", ["export", "m.keras", "--rep-data", "small.npz", "-o", "out"],
     ("(4, 4, 1)", "(8, 8, 1)")),
    ("labels outside the classes", ["export", "m.keras", "--rep-data", "labels.npz", "-o", "out"],
     ("span 5..14", "10 classes", "0..9")),
    ("corrupt .tflite", ["export", "corrupt.tflite", "-o", "out"], ("corrupt.tflite",)),
    # profile and shrink
    ("model file missing", ["profile", "missing.keras"], ("not found",)),
    ("unknown model format", ["profile", "model.txt"], ("extension .txt", ".tflite")),
    ("two output formats", ["profile", "m.tflite", "--json", "--csv"], ("either --json or --csv",)),
    ("a directory that is no SavedModel", ["profile", "folder"], ("directory without saved_model.pb",)),
    ("bad --input-shape", ["profile", "m.keras", "--input-shape", "8,a"], ("--input-shape", "8,8,1")),
    ("model that runs code (Lambda)", ["profile", "lambda.h5"], ("needs code to load", "--unsafe")),
    ("corrupt .tflite", ["profile", "corrupt.tflite"], ("corrupt.tflite",)),
    ("student not .keras", ["shrink", "m.keras", "-o", "student.h5"], ("must end with .keras",)),
    ("TFLite teacher", ["shrink", "m.tflite", "-o", "s.keras"], ("Keras teacher",)),
    ("width 0", ["shrink", "m.keras", "--width", "0", "-o", "s.keras"], ("width",)),
    ("directory teacher", ["shrink", "folder", "-o", "s.keras"], ("is a directory", ".keras/.h5")),
    ("model that runs code (Lambda)", ["shrink", "lambda.h5", "-o", "s.keras"], ("needs code to load", "--unsafe")),
    # check
    ("no board", ["check", "m.tflite"], ("exactly one of --board", "nano33ble")),
    ("unknown board", ["check", "m.tflite", "--board", "nope"], ("Unknown board", "nano33ble")),
    ("board TFLM cannot run on", ["check", "m.tflite", "--board", "uno"], ("uno", "TFLM")),
    ("sub-byte RAM budget", ["check", "m.tflite", *_OK, "--max-ram", "0.0001KB"], ("--max-ram", "at least 1")),
    ("fractional byte budget", ["check", "m.tflite", *_OK, "--max-ram", "0.5"], ("--max-ram", "whole number")),
    ("unknown size unit", ["check", "m.tflite", *_OK, "--max-flash", "12parsecs"], ("--max-flash", "512KB")),
    ("bad --max-samples", ["check", "m.tflite", *_OK, "--max-samples", "abc"], ("--max-samples", "integer")),
    ("NaN in the data", ["check", "m.tflite", *_OK, "--data", "nan.npz"], ("NaN or Inf",)),
    ("text file named .npz", ["check", "m.tflite", *_OK, "--data", "text.npz"], ("not a .npz archive",)),
    ("text file named .npy", ["check", "m.tflite", *_OK, "--data", "fake.npy"], ("not a .npy file", "numpy.save")),
    ("labels outside the classes", ["check", "m.tflite", *_OK, "--data", "labels.npz"], ("span 5..14", "0..9")),
    ("both data options", ["check", "m.tflite", *_OK, "--data", "nan.npz", *_DIGITS], ("not both",)),
    ("directory as model", ["check", "folder", *_OK], ("is a directory", ".tflite")),
    ("model file missing", ["check", "missing.tflite", *_OK], ("not found",)),
    ("float model that runs code", ["check", "m.tflite", *_OK, "--float-model", "lambda.h5"],
     ("needs code to load", "--unsafe")),
    ("no board, with --json", ["check", "m.tflite", "--json"], ("exactly one of --board",)),
    # firmware and flash
    ("unknown board", ["firmware", "m.tflite", "-b", "nope", "-o", "fw"], ("Unknown board", "nano33ble")),
    ("board the target cannot build", ["firmware", "m.tflite", "-b", "nano33ble", "-t", "esp-idf", "-o", "fw"],
     ("esp-idf", "arduino")),
    ("directory as model", ["firmware", "folder", "-b", "nano33ble", "-o", "fw"], ("is a directory",)),
    ("empty output path", ["firmware", "m.tflite", "-b", "nano33ble", "-o", ""], ("-o/--output",)),
    ("data file missing", ["firmware", "m.tflite", "-b", "nano33ble", "-o", "fw", "--data", "missing.npz"],
     ("missing.npz", "digits")),
    ("NaN in the data", ["firmware", "m.tflite", "-b", "nano33ble", "-o", "fw", "--data", "nan.npz"], ("NaN",)),
    ("not a project", ["flash", "folder", "--dry-run"], ("not a firmware project", "edgekd firmware")),
    # distill
    ("teacher missing", ["distill", "--teacher", "missing.keras", "--student-arch", "ds_cnn", *_DIGITS, *_DISTILL],
     ("not found", "missing.keras")),
    ("two students", ["distill", "--teacher", "m.keras", "--student", "m.keras", "--student-arch", "ds_cnn",
                      *_DIGITS, *_DISTILL], ("exactly one of --student",)),
    ("output not .keras", ["distill", "--teacher", "m.keras", "--student-arch", "ds_cnn", *_DIGITS, "--epochs", "1",
                           "-o", "s.h5"], (".keras",)),
    ("unknown student", ["distill", "--teacher", "m.keras", "--student-arch", "resnet", *_DIGITS, *_DISTILL],
     ("Unknown student", "ds_cnn")),
    ("no data", ["distill", "--teacher", "m.keras", "--student-arch", "ds_cnn", *_DISTILL], ("--dataset digits",)),
    ("teacher that runs code", ["distill", "--teacher", "lambda.h5", "--student-arch", "ds_cnn", *_DIGITS,
                                *_DISTILL], ("needs code to load", "--unsafe")),
    ("labels outside the classes", ["distill", "--teacher", "m.keras", "--student-arch", "ds_cnn", "--data",
                                    "labels.npz", *_DISTILL], ("10 classes",)),
    # fit
    ("unknown board", ["fit", "--teacher", "m.keras", *_DIGITS, "--board", "nope", "-o", "fitout"],
     ("Unknown board",)),
    ("unknown database", ["fit", "--teacher", "m.keras", *_FIT, "--storage", "bogus://x"],
     ("Unknown database 'bogus'", "sqlite:///PATH")),
    ("sqlite file under a file", ["fit", "--teacher", "m.keras", *_FIT, "--storage", "sqlite:///afile/study.db"],
     ("sqlite storage afile/study.db", "afile is not a writable directory")),
    ("sqlite folder missing", ["fit", "--teacher", "m.keras", *_FIT, "--storage", "sqlite:///nodir/study.db"],
     ("does not exist", "Create it")),
    ("sqlite file that is no database", ["fit", "--teacher", "m.keras", *_FIT, "--storage", "sqlite:///text.npz"],
     ("not an sqlite database",)),
    ("fractional byte budget", ["fit", "--teacher", "m.keras", *_FIT, "--max-ram", "0.5"], ("--max-ram",)),
    ("empty output path", ["fit", "--teacher", "m.keras", *_DIGITS, "--board", "nano33ble", "-o", ""],
     ("-o/--output",)),
    ("firmware target the board lacks", ["fit", "--teacher", "m.keras", *_FIT, "--firmware", "esp-idf"],
     ("--firmware esp-idf", "arduino")),
    ("text file named .npz", ["fit", "--teacher", "m.keras", "--data", "text.npz", "--board", "nano33ble",
                              "-o", "fitout"], ("not a .npz archive",)),
    ("teacher that runs code", ["fit", "--teacher", "lambda.h5", *_FIT], ("needs code to load", "--unsafe")),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder of bad inputs, named as in the table (the commands run with it as the working directory)."""
    import keras

    from edgekd.convert import convert

    d = tmp_path_factory.mktemp("bad_inputs")
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    model.save(d / "m.keras")
    rng = np.random.default_rng(0)
    (d / "m.tflite").write_bytes(convert(model, representative_data=rng.random((16, 8, 8, 1), np.float32)))
    model.save_weights(d / "w.weights.h5")
    os.rename(d / "w.weights.h5", d / "weights.h5")
    legacy_lambda_h5(str(d / "lambda.h5"), str(d / "MARKER"))
    (d / "corrupt.keras").write_bytes(b"not a zip")
    (d / "corrupt.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8)
    (d / "model.onnx").write_bytes(b"onnx")
    (d / "text.npz").write_text("1,2,3\n4,5,6\n")
    (d / "fake.npy").write_text("1 2 3\n")
    (d / "afile").write_text("x")
    (d / "folder").mkdir()
    x = rng.random((10, 8, 8, 1), np.float32)
    nan = x.copy()
    nan[3, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=nan, y=np.arange(10))
    np.savez(d / "empty.npz", x=np.zeros((0, 8, 8, 1), np.float32))
    np.savez(d / "small.npz", x=np.zeros((10, 4, 4, 1), np.float32))
    np.savez(d / "labels.npz", x=x, y=np.arange(10) + 5)
    np.savez(d / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    return d


def _listing(d) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, dirs, files in os.walk(d) for f in files + dirs)


def _run(capsys, args: list[str]) -> tuple[int, str, str]:
    return main_output(capsys, *args)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _command(args: list[str]) -> str:
    return "edgekd " + " ".join(a if a and " " not in a else repr(a) for a in args)


def test_bad_inputs_table(scratch, capsys, monkeypatch):
    monkeypatch.chdir(scratch)
    assert len(CASES) >= 40
    rows = []
    for what, args, fragments in CASES:
        before = _listing(scratch)
        code, out, err = _run(capsys, args)
        assert code == 2, (args, out, err)
        assert "Traceback" not in err, (args, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)  # one line: no usage block
        assert "allow_pickle" not in lines[0] and "Traceback" not in out
        message = lines[0].replace(str(scratch) + os.sep, "").replace(str(scratch), ".")
        for fragment in fragments:
            assert fragment in message, (args, fragment, message)
        assert _listing(scratch) == before, (args, "wrote something")  # nothing half-written, MARKER never
        rows.append(f"| `{_cell(_command(args))}` | {what} | {code} | {_cell(message)} |")
    text = (
        "# Bad input: what each command says\n\n"
        "Every bad input exits with status 2 and prints one line on stderr that names the problem and the fix; "
        "nothing is written (budget failures, by contrast, exit 1 with a report: see check.md). Each row below "
        "was run by `tests/cli/test_errors_doc.py`, which fails when this table is stale. Regenerate it with\n\n"
        "    EDGEKD_REGEN_DOCS=1 .venv/bin/python -m pytest tests/cli/test_errors_doc.py\n\n"
        "The files are small fixtures: `m.keras`/`m.tflite` a 10-class model of 8x8x1 inputs, `lambda.h5` a "
        "tf.keras 2 file whose Lambda layer would run code, `labels.npz` labels 5..14, `nan.npz` a NaN in "
        "example 3, `small.npz` 4x4x1 inputs, `text.npz`/`fake.npy` text files, `folder` an empty directory, "
        "`afile` a regular file. With `--json`, `check` also prints the error as JSON on stdout "
        "(`{\"error\": {\"type\", \"message\"}, \"exit_code\": 2, \"passed\": false}`).\n\n"
        f"{len(rows)} cases.\n\n"
        "| Command | What is wrong | Exit | Message (stderr) |\n"
        "| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )
    if os.environ.get("EDGEKD_REGEN_DOCS"):
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(text)
    with open(DOC, encoding="utf-8") as f:
        assert f.read() == text, "docs/errors.md is stale: rerun with EDGEKD_REGEN_DOCS=1"


def test_check_json_prints_an_error_object(scratch, capsys, monkeypatch):
    """`edgekd check … --json > check.json` never leaves an empty file: the error is JSON on stdout too."""
    monkeypatch.chdir(scratch)
    for args, kind in ((["check", "missing.tflite", *_OK, "--json"], "TFLiteFileError"),
                       (["check", "m.tflite", "--json", "--max-samples", "x"], "UsageError"),
                       (["check", "m.tflite", *_OK, "--max-ram", "0.5", "--json"], "InvalidArgumentError")):
        code, out, err = _run(capsys, args)
        doc = json.loads(out)
        assert code == 2 and doc["exit_code"] == 2 and doc["passed"] is False
        assert doc["error"]["type"] == kind
        (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert doc["error"]["message"] in line
    # without --json, stdout stays empty
    code, out, _ = _run(capsys, ["check", "missing.tflite", *_OK])
    assert code == 2 and out == ""


def test_check_json_through_the_console_script(scratch):
    proc = run_cli("check", "missing.tflite", "--board", "nano33ble", "--json", cwd=str(scratch))
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["message"].startswith("Model file not found: missing.tflite")
    assert proc.stderr.strip().startswith("error: Model file not found")
