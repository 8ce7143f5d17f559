"""``edgekd distill`` end to end in a child process: happy path and bad inputs (exit 2, nothing written)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_cli
from tests.distill._models import mlp, trained_teacher


@pytest.fixture(scope="module")
def files(digits, tmp_path_factory):
    d = tmp_path_factory.mktemp("distill_cli")
    trained_teacher(digits, softmax=True, epochs=4).save(d / "teacher.h5")  # a softmax .h5, the common case
    trained_teacher(digits, epochs=2, name="teacher_b", seed=3).save(d / "teacher_b.keras")
    mlp(16, name="student").save(d / "student.keras")
    mlp(16, name="student5", classes=5).save(d / "student5.keras")
    np.savez(d / "small.npz", x=np.zeros((10, 4, 4, 1), np.float32), y=np.zeros(10, np.int64))
    np.savez(d / "transfer.npz", x=digits.train.x[:300], y=digits.train.y[:300],
             x_val=digits.val.x, y_val=digits.val.y)
    np.save(d / "unlabeled.npy", digits.train.x[300:])
    return d


def test_happy_path_ensemble_baseline(files):
    out = files / "out" / "student.keras"
    proc = run_cli("distill", "--teacher", files / "teacher.h5", "--teacher", files / "teacher_b.keras",
                   "--student", files / "student.keras", "--dataset", "digits", "--epochs", "2", "--baseline",
                   "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "with activation='softmax'" in proc.stderr  # the detection is reported
    for row in ("teacher ensemble ×2", "student from scratch", "distilled student"):
        assert row in proc.stdout, proc.stdout
    assert "the labels alone, 2 epochs, constant learning rate, augmentation none" in proc.stdout
    assert "Epoch 2/2" in proc.stderr + proc.stdout  # Keras' progress output
    import keras

    model = keras.saving.load_model(out)  # a plain Keras model
    assert model.name == "student" and model.outputs[0].shape[-1] == 10
    assert not [f for f in os.listdir(out.parent) if f.startswith(".edgekd-")]  # no temp files left


def test_data_file_unlabeled_and_student_arch(files):
    out = files / "data_student.keras"
    proc = run_cli("distill", "--teacher", files / "teacher.h5", "--student-arch",
                   "small_cnn:width=0.25,resolution=0.75", "--data", files / "transfer.npz", "--unlabeled",
                   files / "unlabeled.npy", "--epochs", "1", "--temperature", "2", "--alpha", "0.5", "--no-cache",
                   "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists() and "distilled student" in proc.stdout
    # which splits it used, and the input the lower-resolution student (and so the device) takes
    data = files / "transfer.npz"
    assert f"Training on x of {data} (300 samples); validating on x_val of {data} (" in proc.stderr, proc.stderr
    assert "Student input: (6, 6, 1): the (8, 8, 1) data is resized to it" in proc.stderr, proc.stderr
    assert "the device must feed it (6, 6, 1)" in proc.stderr


def _bad_args(files, case):
    return {
        "missing_teacher": ["--teacher", files / "nope.keras", "--student", files / "student.keras",
                            "--dataset", "digits"],
        "class_mismatch": ["--teacher", files / "teacher.h5", "--student", files / "student5.keras",
                           "--dataset", "digits"],
        "wrong_shape": ["--teacher", files / "teacher.h5", "--student", files / "student.keras",
                        "--data", files / "small.npz"],
        "both_students": ["--teacher", files / "teacher.h5", "--student", files / "student.keras",
                          "--student-arch", "ds_cnn", "--dataset", "digits"],
        "bad_arch": ["--teacher", files / "teacher.h5", "--student-arch", "ds_cnn:width", "--dataset", "digits"],
        "unknown_arch": ["--teacher", files / "teacher.h5", "--student-arch", "resnet", "--dataset", "digits"],
        "no_data": ["--teacher", files / "teacher.h5", "--student", files / "student.keras"],
    }[case]


def test_baseline_row_is_the_same_for_the_same_seed(files, capsys):
    """Two runs with one --seed in one process: the from-scratch student's initial weights come from the seed."""
    from edgekd.cli import main

    rows = []
    for i in (1, 2):
        args = ["distill", "--teacher", files / "teacher.h5", "--student-arch", "small_cnn:width=0.25",  # unseeded init
                "--data", files / "transfer.npz", "--epochs", "1", "--baseline", "--seed", "5",
                "-o", files / f"seeded{i}.keras"]
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            assert exc.code in (0, None)
        rows.append([ln for ln in capsys.readouterr().out.splitlines() if "student from scratch" in ln][0])
    assert rows[0] == rows[1] and "%" in rows[0]


@pytest.mark.parametrize("case,fragments", [
    ("class_mismatch", ("10 classes", "5")),
    ("wrong_shape", ("shape", "(4, 4, 1)")),
    ("both_students", ("exactly one of --student",)),
    ("bad_arch", ("key=value", "ds_cnn:width")),
    ("unknown_arch", ("unknown student", "ds_cnn")),
    ("no_data", ("--dataset digits", "--data")),
    ("bad_output", (".keras",)),
])
def test_bad_inputs_in_process(files, case, fragments, capsys):
    """Bad input: exit 2, one error line naming the problem, nothing written (in-process: no TF start-up)."""
    from edgekd.cli import main

    out = files / ("student.h5" if case == "bad_output" else f"bad_{case}.keras")
    args = _bad_args(files, "class_mismatch" if case == "bad_output" else case)
    with pytest.raises(SystemExit) as exc:
        main(["distill", "--epochs", "1", "-o", str(out), *map(str, args)])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])
    assert not out.exists()
    assert not [f for f in os.listdir(files) if f.startswith(".edgekd-")]


def test_missing_teacher_subprocess(files):
    out = files / "bad_missing.keras"
    proc = run_cli("distill", "--epochs", "1", "-o", out, *_bad_args(files, "missing_teacher"))
    assert_clean_error(proc, "not found", "nope.keras")
    assert not out.exists()
