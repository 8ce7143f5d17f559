"""`edgekd fit` bad input: storage URLs are checked before anything is created, and bad-input
errors never leave an output folder or a study database behind (nor delete a study that was there)."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("fit_storage")
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x))).save(d / "teacher.keras")
    y = keras.layers.Conv2DTranspose(4, 3)(inputs)  # a layer `--arch shrink` cannot transform
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(y))).save(d / "transpose.keras")
    return d


def _fit(capsys, *args):
    from edgekd.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fit", "--dataset", "digits", "--board", "nano33ble", "--trials", "1", "--epochs", "1",
              *map(str, args)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert exc.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("storage, fragment", [
    ("bogus://x", "Unknown database 'bogus'"),
    ("not a url", "Expected an Optuna storage URL"),
    ("mysql://user:s3cret@localhost/db", "needs the database driver MySQLdb"),
    ("postgresql+pg8000://user:s3cret@localhost/db", "needs the database driver"),
    ("sqlite://", "in-memory"),
    ("sqlite:///{tmp}/no_such_dir/study.db", "does not exist"),
    ("sqlite:///{tmp}/a_file/study.db", "a_file is not a writable directory"),
    ("sqlite:///{tmp}", "is a directory"),
    ("sqlite:///{tmp}/text.db", "not an sqlite database"),
])
def test_bad_storage_is_refused_before_anything_is_created(teachers, tmp_path, capsys, storage, fragment):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "text.db").write_text("not a database")
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / "fitout"
    line = _fit(capsys, "--teacher", teachers / "teacher.keras", "--storage", storage.format(tmp=tmp_path), "-o", out)
    assert fragment in line, line
    assert "s3cret" not in line  # a password is never shown
    assert sorted(os.listdir(tmp_path)) == before  # no fitout/, no study.db
    assert (tmp_path / "text.db").read_text() == "not a database"


def test_later_bad_input_leaves_nothing_behind(teachers, tmp_path, capsys):
    out = tmp_path / "fitout"
    line = _fit(capsys, "--teacher", teachers / "transpose.keras", "--arch", "shrink", "-o", out)
    assert "cannot transform layer" in line and "Conv2DTranspose" in line
    line = _fit(capsys, "--teacher", teachers / "teacher.keras", "--firmware", "esp-idf", "-o", out)
    assert "--firmware esp-idf cannot build for board nano33ble" in line
    np.savez(tmp_path / "labels.npz", x=np.zeros((40, 8, 8, 1), np.float32), y=np.arange(40))
    line = _fit(capsys, "--teacher", teachers / "teacher.keras", "--data", tmp_path / "labels.npz",
                "--dataset", "", "-o", out)
    assert "span 0..39" in line and "10 classes" in line, line
    assert os.listdir(tmp_path) == ["labels.npz"], os.listdir(tmp_path)


def test_study_with_other_settings_is_kept(teachers, tmp_path, capsys):
    """Resuming with different settings is bad input (exit 2): the earlier study must survive it untouched."""
    import optuna

    out = tmp_path / "fitout"
    out.mkdir()
    db = out / "study.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its handler holds the stderr of the first import
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="edgekd-fit", directions=["maximize"])
    study.set_user_attr("config", {"arch": "small_cnn"})
    size = db.stat().st_size
    line = _fit(capsys, "--teacher", teachers / "teacher.keras", "-o", out)
    assert "different settings" in line
    assert db.is_file() and db.stat().st_size == size
    assert sorted(os.listdir(out)) == ["study.db"]


def test_api_checks_storage_first(digits):
    from edgekd.errors import InvalidArgumentError
    from edgekd.fit import fit

    with pytest.raises(InvalidArgumentError, match="Unknown database 'bogus'"):
        fit("missing-teacher.keras", train=(digits.train.x, digits.train.y), val=(digits.val.x, digits.val.y),
            board="nano33ble", storage="bogus://x")
