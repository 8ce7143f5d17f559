"""`edgekd fit --firmware`: the TFLM arena of each candidate is bisected once, and the firmware reuses it."""

from __future__ import annotations

import hashlib
import json
import sys

import edgekd.check.core  # noqa: F401  (imported before run_tflm is wrapped: it binds the name)
import edgekd.check.tflm
import edgekd.firmware.project  # noqa: F401


def test_fit_firmware_bisects_each_candidate_once(small_cnn_path, tmp_path, monkeypatch):
    real = edgekd.check.tflm.run_tflm
    bisected = []  # sha256 of each model whose arena was bisected

    def counting(model_bytes, **kwargs):  # the real measurement still runs
        if kwargs.get("bisect", True):  # bisect=False: the arena is known, TFLM only runs the inputs
            bisected.append(hashlib.sha256(bytes(model_bytes)).hexdigest())
        return real(model_bytes, **kwargs)

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("edgekd") and getattr(mod, "run_tflm", None) is real:
            monkeypatch.setattr(mod, "run_tflm", counting)
    from edgekd.cli import main

    out = tmp_path / "fit"
    main(["fit", "--teacher", small_cnn_path, "--dataset", "digits", "--board", "nano33ble", "--epochs", "1",
          "--arch", "small_cnn", "--no-prune", "--trials", "2", "--firmware", "arduino", "-o", str(out)])
    trials = json.loads((out / "trials.json").read_text())["trials"]
    measured = [t for t in trials if t["arena_bytes"] is not None and not t["note"].startswith("same as")]
    assert measured and (out / "firmware-arduino").is_dir()
    assert len(bisected) == len(set(bisected)) == len(measured), bisected  # one per candidate, none repeated
    assert hashlib.sha256((out / "model.tflite").read_bytes()).hexdigest() in bisected
