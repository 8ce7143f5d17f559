"""`edgekd.distill` imports TensorFlow only when a trainer is used, as the other stages do."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("statement", [
    "import edgekd.distill.losses",
    "import edgekd.distill",
    "import edgekd; edgekd.distill",
    "from edgekd.distill import distill, distillation_terms, DistillResult",
])
def test_importing_distill_does_not_import_tensorflow(statement):
    code = f"import sys; {statement}; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_the_trainers_are_still_there():
    import edgekd.distill as d

    assert d.Distiller.__name__ == "Distiller" and "Distiller" in dir(d)
    assert callable(d.adapt_inputs) and d.MultiStudentDistiller.__module__ == "edgekd.distill.distiller"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        d.nope
