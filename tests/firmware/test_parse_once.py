"""One model object from convert to firmware: the flatbuffer is parsed once, the arena measured once."""

from __future__ import annotations

import numpy as np

import edgekd
from edgekd.export import write_export
from edgekd.firmware import render


def _counting(monkeypatch, owner, attr):
    """Wrap ``owner.attr`` (the real function) so that its calls are counted; returns the list of calls."""
    calls = []
    real = getattr(owner, attr)

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, counted)
    return calls


def _model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x), name="walk")


def test_convert_export_firmware_parse_the_flatbuffer_once(monkeypatch, tmp_path):
    from tflite_micro.python.tflite_micro import runtime

    import edgekd.firmware.project as project_module

    x = np.random.default_rng(0).random((8, 8, 8, 1), np.float32)
    # Every Python parse of a .tflite goes through the schema's ModelT.InitFromPackedBuf (edgekd.flatbuffer).
    parses = _counting(monkeypatch, runtime.schema_fb.ModelT, "InitFromPackedBuf")
    # The real edgekd.check.tflm.run_tflm, wrapped where firmware looks it up (its module-top import).
    tflm_runs = _counting(monkeypatch, project_module, "run_tflm")

    model = edgekd.convert(_model(), representative_data=x, labels=["a", "b", "c"])
    exported = write_export(tmp_path / "export", model)
    project = render(exported.model, board="esp32", target="esp-idf", samples=x[:2])
    assert len(parses) == 1
    assert [c["bisect"] for c in tflm_runs] == [True]  # the arena: measured once (no check ran before)

    # The firmware includes the exported files, byte for byte.
    for f in ("model_data.h", "model_data.cc", "model_ops.h"):
        assert project.files[f"main/{f}"] == (tmp_path / "export" / f).read_text()
    assert 'kClassLabels[3] = {"a", "b", "c"}' in project.files["main/model_data.cc"]

    # A model whose arena is known (edgekd check measured it) is not bisected again.
    again = render(model.with_(arena_bytes=project.arena.measured), board="esp32", target="esp-idf",
                   samples=x[:2])
    assert [c["bisect"] for c in tflm_runs] == [True, False] and len(parses) == 1
    assert again.arena == project.arena
    np.testing.assert_array_equal(again.expected_outputs, project.expected_outputs)
    assert again.files == project.files
