"""edgekd.datasets: one file convention (x, y, x_val/y_val, x_test/y_test, -1 = unlabeled; .npz, .npy, a folder),
one validator, explicit resizing, and the verbs that say which split they used."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgekd import datasets
from edgekd.errors import DataError, ResizeNeededError
from tests.cli.test_errors_doc import _run


def _xy(n: int, seed: int = 0, shape=(8, 8, 1)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), np.float32), rng.integers(0, 10, n)


def test_npz_with_every_split(tmp_path):
    (x, y), (xv, yv), (xt, yt) = _xy(30), _xy(12, 1), _xy(9, 2)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    ds = datasets.load(tmp_path / "d.npz")
    assert [len(s) for s in ds.splits()] == [30, 12, 9]
    np.testing.assert_array_equal(ds.val.x, xv)
    np.testing.assert_array_equal(ds.test.y, yt)
    assert ds.train.x.dtype == np.float32 and ds.test.y.dtype == np.int64
    assert ds.evaluation is ds.test  # what check/export/emulate evaluate
    assert ds.evaluation.describe() == f"x_test of {tmp_path / 'd.npz'} (9 samples)"
    assert ds.with_validation() is ds  # the file's own validation split is kept


def test_the_evaluation_split_falls_back_to_x_val_then_x(tmp_path):
    (x, y), (xv, yv) = _xy(20), _xy(5, 1)
    np.savez(tmp_path / "v.npz", x=x, y=y, x_val=xv, y_val=yv)
    assert datasets.load(tmp_path / "v.npz").evaluation.name.startswith("x_val of ")
    np.savez(tmp_path / "x.npz", x=x, y=y)
    ds = datasets.load(tmp_path / "x.npz")
    assert ds.val is None and ds.test is None and ds.evaluation is ds.train


def test_npy_is_unlabeled_inputs(tmp_path):
    x, _ = _xy(7)
    np.save(tmp_path / "inputs.npy", x)
    ds = datasets.load(str(tmp_path / "inputs.npy"))
    assert ds.train.y is None and len(ds.train) == 7 and ds.val is None


def test_a_folder_reads_as_one_npz(tmp_path):
    (x, y), (xt, yt) = _xy(10), _xy(4, 1)
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.save(folder / "x_test.npy", xt)
    np.save(folder / "y_test.npy", yt)
    x2, y2 = _xy(3, 5)
    np.savez(folder / "z_more.npz", x=x2, y=y2)  # a shard: concatenated after x.npy (file-name order)
    (folder / "notes.txt").write_text("not data")
    ds = datasets.load(folder)
    np.testing.assert_array_equal(ds.train.x, np.concatenate([x, x2]))
    np.testing.assert_array_equal(ds.train.y, np.concatenate([y, y2]))
    np.testing.assert_array_equal(ds.test.x, xt)
    assert ds.evaluation.name == f"x_test of {folder}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .npy or .npz files"):
        datasets.load(empty)
    np.save(folder / "x_val.npy", xt)
    np.save(folder / "x_val2.npy", np.zeros((2, 4, 4, 1), np.float32))  # another x shard of another shape
    with pytest.raises(DataError, match="different example shapes"):
        datasets.load(folder)


def test_minus_one_marks_unlabeled_examples(tmp_path):
    x, y = _xy(10)
    y[[1, 4]] = -1
    np.savez(tmp_path / "semi.npz", x=x, y=y)
    ds = datasets.load(tmp_path / "semi.npz")
    assert (ds.train.y == -1).sum() == 2
    labeled = ds.train.labeled()
    assert len(labeled) == 8 and (labeled.y >= 0).all()
    np.testing.assert_array_equal(labeled.x, x[y >= 0])
    assert datasets.Split(x, np.full(10, -1)).labeled().y is None  # none labelled: inputs only
    y[0] = -2
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(DataError, match=r"span -2\.\.\d.*-1 for an unlabeled"):
        datasets.load(tmp_path / "bad.npz")
    with pytest.raises(DataError, match=r"y of .* span -1\.\.9 but the model predicts 5 classes.*0\.\.4"):
        ds.for_model((8, 8, 1), 5)


def test_an_all_zero_one_hot_row_is_unlabeled(tmp_path):
    x, y = _xy(10)
    one_hot = np.eye(10, dtype=np.float32)[y]
    one_hot[[2, 7]] = 0  # the one-hot form of label -1
    np.savez(tmp_path / "onehot.npz", x=x, y=one_hot, x_val=x[:4], y_val=one_hot[:4].astype(np.int64))
    ds = datasets.load(tmp_path / "onehot.npz")
    want = np.where(np.isin(np.arange(10), [2, 7]), -1, y)
    np.testing.assert_array_equal(ds.train.y, want)
    np.testing.assert_array_equal(ds.val.y, want[:4])
    assert len(ds.train.labeled()) == 8


def test_one_validator_names_the_split_and_the_fix(tmp_path):
    x, y = _xy(6)
    cases = {
        "nox.npz": (dict(inputs=x), "has no input array x (found inputs)"),
        "orphan.npz": (dict(x=x, y_val=y), "has y_val but no x_val"),
        "count.npz": (dict(x=x, y=y[:4]), "6 inputs but 4 labels"),
        "floaty.npz": (dict(x=x, y=y + 0.5), "must be integer class ids"),
        "nan.npz": (dict(x=np.where(np.arange(6)[:, None, None, None] == 3, np.nan, x)), "example 3"),
        "empty.npz": (dict(x=x[:0]), "is empty"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=re.escape(message)):
            datasets.load(tmp_path / name)
    with pytest.raises(DataError, match="Data not found: nope.npz.*digits"):
        datasets.load("nope.npz")
    (tmp_path / "text.npz").write_text("1,2\n")
    with pytest.raises(DataError, match="not a .npz archive"):
        datasets.load(tmp_path / "text.npz")
    np.savez(tmp_path / "train_keys.npz", x_train=x, y_train=y)  # read as x/y
    assert len(datasets.load(tmp_path / "train_keys.npz").train) == 6


def test_in_memory_specs_and_the_bundled_dataset():
    x, y = _xy(5)
    assert datasets.load((x, y)).train.y.tolist() == y.tolist()
    assert datasets.load({"x": x, "x_test": x}).evaluation.name == "x_test of data"
    ds = datasets.load("digits")
    assert ds.class_names == tuple("0123456789") and datasets.load(ds) is ds
    assert ds.evaluation.describe() == f"digits test split ({len(ds.test)} samples)"


def test_with_validation_holds_out_a_share_deterministically():
    x, y = _xy(40)
    ds = datasets.load((x, y))
    a, b = ds.with_validation(0.15, seed=3), ds.with_validation(0.15, seed=3)
    assert len(a.val) == 6 and len(a.train) == 34
    np.testing.assert_array_equal(a.val.x, b.val.x)
    rows = {r.tobytes() for r in a.train.x} | {r.tobytes() for r in a.val.x}
    assert len(rows) == 40  # disjoint, nothing lost
    assert a.val.name == "15% of x of data held out"
    with pytest.raises(DataError, match="at least 2"):
        datasets.load((x[:1], y[:1])).with_validation()


def test_resize_is_the_distillers_adapter_and_explicit():
    from edgekd.distill.distiller import adapt_inputs

    x, y = _xy(4)
    small = datasets.resize(x, (6, 6, 1))
    assert small.shape == (4, 6, 6, 1) and small.dtype == np.float32
    np.testing.assert_array_equal(small, np.asarray(adapt_inputs(x, (6, 6, 1))))
    assert datasets.resize(x, (8, 8, 1)) is x  # nothing to do: no TensorFlow
    split = datasets.Split(x, y, "x of d.npz")
    with pytest.raises(ResizeNeededError) as e:
        datasets.validate(split, input_shape=(6, 6, 1))
    message = str(e.value)
    assert "resize" in message and "reshape" not in message.lower() and "resize=True" in message
    assert "pass --resize" in str(e.value.with_opt_in("pass --resize"))
    np.testing.assert_array_equal(datasets.validate(split, input_shape=(6, 6, 1), resize=True).x, small)
    with pytest.raises(DataError, match=r"shape \(64,\), but the model takes \(8, 8, 1\)"):  # not images: no resize
        datasets.validate(datasets.Split(x.reshape(4, 64)), input_shape=(8, 8, 1), resize=True)


# --- the verbs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    """An 8x8 and a 6x6 (a lower-resolution student's input) int8 .tflite and a 6x6 .keras, with data files."""
    import keras

    from edgekd.convert import convert

    d = tmp_path_factory.mktemp("datasets_cli")
    for size in (8, 6):
        inputs = keras.Input((size, size, 1))
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
        rep = datasets.resize(digits.train.x[:32], (size, size, 1))
        (d / f"m{size}.tflite").write_bytes(convert(model, representative_data=rep))
        if size == 6:
            model.save(d / "m6.keras")
    np.savez(d / "xyt.npz", x=digits.train.x[:40], y=digits.train.y[:40], x_test=digits.test.x[:30],
             y_test=digits.test.y[:30])
    return d


def test_check_data_evaluates_x_test_and_says_so(models, capsys):
    args = ["check", str(models / "m8.tflite"), "--board", "nano33ble", "--no-host-latency",
            "--data", str(models / "xyt.npz")]
    code, out, err = _run(capsys, args)
    assert code in (0, 1), err
    assert f"Data: x_test of {models / 'xyt.npz'} (30 samples)" in out
    assert "Accuracy on 30 samples" in out  # not the 40 training examples
    code, out, err = _run(capsys, [*args, "--json"])
    assert json.loads(out)["data"] == f"x_test of {models / 'xyt.npz'} (30 samples)"


def test_a_lower_resolution_model_needs_resize(models, capsys):
    args = ["check", str(models / "m6.tflite"), "--board", "nano33ble", "--no-host-latency", "--dataset", "digits"]
    code, out, err = _run(capsys, args)
    assert code == 2, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "(8, 8, 1)" in line and "(6, 6, 1)" in line and "pass --resize" in line and "reshape" not in line.lower()
    code, out, err = _run(capsys, [*args, "--resize"])
    assert code in (0, 1), err
    assert "Resized digits from (8, 8, 1) to the model's input (6, 6, 1) (--resize)" in " ".join(err.split())
    assert f"Data: digits test split ({len(datasets.digits().test)} samples)" in out


def test_export_of_a_lower_resolution_student(models, tmp_path, capsys):
    args = ["export", str(models / "m6.keras"), "--dataset", "digits", "--max-accuracy-drop", "100",
            "-o", str(tmp_path / "out")]
    code, out, err = _run(capsys, args)
    assert code == 2 and "--resize" in err and not (tmp_path / "out").exists(), err
    code, out, err = _run(capsys, [*args, "--resize", "--json"])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["inputs"][0]["shape"][1:] == [6, 6, 1] and summary["source_shape"] == [8, 8, 1]
    assert summary["data"]["evaluation"] == f"digits test split ({len(datasets.digits().test)} samples)"
    # the exported model carries its adapter (export.json beside it): the next verbs resize without --resize
    exported = str(tmp_path / "out" / "model.tflite")
    code, out, err = _run(capsys, ["check", exported, "--board", "nano33ble", "--no-host-latency",
                                   "--dataset", "digits"])
    assert code in (0, 1) and "(the model's adapter: it was converted from data of that shape)" in " ".join(
        err.split()), err
    code, out, err = _run(capsys, ["firmware", exported, "--board", "nano33ble", "--data", "digits",
                                   "-o", str(tmp_path / "fw")])
    assert code == 0, err
    assert "made for 8x8x1 data resized to 6x6x1" in " ".join((tmp_path / "fw" / "README.md").read_text().split())


def test_firmware_resizes_the_samples_with_resize(models, tmp_path, capsys):
    args = ["firmware", str(models / "m6.tflite"), "--board", "nano33ble", "--data", "digits", "--samples", "3",
            "-o", str(tmp_path / "fw")]
    code, out, err = _run(capsys, args)
    assert code == 2 and "--resize" in err, err
    code, out, err = _run(capsys, [*args, "--resize"])
    assert code == 0, err
    assert "samples: the first 3 of digits validation split" in out
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert "3 embedded samples" in readme and "all-zeros" not in readme
    # the firmware engineer is told what the device must feed the 6x6 model, in the README and in model_io.h
    said = "The device must produce 6x6x1 float values per inference (the model's input), scaled as in training; " \
           "the model was made for 8x8x1 data resized to 6x6x1"
    assert said in " ".join(readme.split())
    (header,) = (tmp_path / "fw").rglob("model_io.h")
    assert said in " ".join(header.read_text().split())


def test_fit_data_honours_x_val_and_x_test(models, small_cnn_path, digits, tmp_path, capsys):
    np.savez(tmp_path / "fit.npz", x=digits.train.x, y=digits.train.y, x_val=digits.val.x[:50],
             y_val=digits.val.y[:50], x_test=digits.test.x[:20], y_test=digits.test.y[:20])
    np.savez(tmp_path / "xy.npz", x=digits.train.x[:100], y=digits.train.y[:100])
    said = {}
    for name in ("fit.npz", "xy.npz"):
        # a flash budget no candidate meets: every one is rejected by its profile, nothing trains (exit 1)
        code, out, err = _run(capsys, ["fit", "--teacher", small_cnn_path, "--data", str(tmp_path / name),
                                       "--board", "nano33ble", "--max-flash", "1KB", "--trials", "1",
                                       "-o", str(tmp_path / f"out_{name}")])
        assert code == 1, err
        said[name] = " ".join(out.split())
    assert (f"candidates ranked on x_val of {tmp_path / 'fit.npz'} (50 samples); the chosen one tested on "
            f"x_test of {tmp_path / 'fit.npz'} (20 samples)") in said["fit.npz"], said
    assert f"candidates ranked on 15% of x of {tmp_path / 'xy.npz'} held out (15 samples)." in said["xy.npz"], said
