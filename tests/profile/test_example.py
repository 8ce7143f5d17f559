"""examples/profile_and_shrink.py runs and its numbers hold together."""

from __future__ import annotations

import importlib.util
import os

from tests.conftest import ROOT


def test_profile_and_shrink_example_runs(capsys):
    spec = importlib.util.spec_from_file_location(
        "profile_and_shrink", os.path.join(ROOT, "examples", "profile_and_shrink.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(epochs=3)
    printed = capsys.readouterr().out
    assert "teacher → teacher_student" in printed and "CONV_2D" in printed
    t, s, q = out["teacher"], out["student"], out["int8"]
    assert s.params < t.params / 4 and s.macs < t.macs / 4
    assert abs(s.macs - q.macs) <= 0.01 * q.macs
    assert out["student_acc"] > 0.5  # three short epochs on digits: far above chance (0.1)
