"""Adding a student architecture touches students/ only: the CLI's choices and `fit` come from the registry."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap

import pytest

from edgekd import students
from edgekd.errors import InvalidArgumentError
from edgekd.students import registry
from tests.conftest import main_output as _run

PLUGIN = '''
import keras

from edgekd import students


def tiny_mlp(*, input_shape, num_classes, width=1.0, resolution=1.0, depth=1):
    """A flatten + dense student: depth hidden layers of 32 * width units."""
    inp = keras.Input(input_shape)
    x = keras.layers.Flatten()(inp)
    for _ in range(depth):
        x = keras.layers.Dense(max(4, int(32 * width)), activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes)(x), name="tiny_mlp")


students.register("tiny_mlp", tiny_mlp, depth=(1, 3))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A module outside edgekd registering one architecture (the registry restored afterwards)."""
    monkeypatch.setattr(registry, "BUILDERS", dict(registry.BUILDERS))
    monkeypatch.setattr(registry, "_DEPTH", dict(registry._DEPTH))
    (tmp_path / "my_students.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_students", raising=False)
    return importlib.import_module("my_students")


def test_a_registered_architecture_is_in_every_cli_choice(plugin, capsys):
    assert "tiny_mlp" in students.names()
    code, out, _ = _run(capsys, "fit", "--help")
    assert code in (0, None) and "tiny_mlp" in out and "shrink" in out
    code, out, _ = _run(capsys, "distill", "--help")
    assert code in (0, None) and "tiny_mlp" in " ".join(out.split())
    # fit's own check of `arch` reads the registry too
    code, _, err = _run(capsys, "fit", "--teacher", "missing.keras", "--dataset", "digits", "--board", "nano33ble",
                        "--arch", "tiny_mlp", "-o", "out")
    assert "tiny_mlp" not in err and "--arch" not in err, err


def test_a_registered_architecture_distills_from_the_cli(plugin, capsys, tmp_path, small_cnn_path):
    out_path = str(tmp_path / "student.keras")
    code, out, err = _run(capsys, "distill", "--teacher", str(small_cnn_path), "--student-arch", "tiny_mlp:depth=2",
                          "--dataset", "digits", "--epochs", "1", "-o", out_path)
    assert code in (0, None), err
    assert os.path.isfile(out_path)
    import keras

    assert keras.models.load_model(out_path).name == "tiny_mlp"


def test_register_refuses_what_cannot_be_searched(monkeypatch):
    monkeypatch.setattr(registry, "BUILDERS", dict(registry.BUILDERS))
    with pytest.raises(InvalidArgumentError, match="already registered"):
        students.register("ds_cnn", students.ds_cnn)
    with pytest.raises(InvalidArgumentError, match="missing: .*width"):
        students.register("bare", lambda *, input_shape, num_classes: None)
    with pytest.raises(InvalidArgumentError, match="`name`"):
        students.register("not a name", students.ds_cnn)


def test_unregister_removes_only_what_was_added(plugin):
    students.unregister("tiny_mlp")
    assert "tiny_mlp" not in students.names()
    with pytest.raises(InvalidArgumentError, match="added with register"):
        students.unregister("ds_cnn")
    with pytest.raises(InvalidArgumentError, match="`name`"):
        students.unregister("tiny_mlp")
