"""tfmot is an optional extra: a clear error without it, and no global side effects with it.

Both run in a child process: one whose ``sitecustomize`` makes
``import tensorflow_model_optimization`` fail exactly as on a machine without
the package, one that checks what importing tfmot does to a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow_model_optimization" or name.startswith("tensorflow_model_optimization."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, _Block())
    """
)

_CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    import keras
    from edgekd.errors import MissingExtraError
    from edgekd.optimize import prune, quantize_aware, to_tf_keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp))
    data = (np.zeros((8, 4), "float32"), np.zeros(8, "int64"))
    out = {}
    for name, fn in [("quantize_aware", quantize_aware), ("prune", prune)]:
        try:
            fn(model, data=data, epochs=1)
            out[name] = None
        except MissingExtraError as e:
            out[name] = str(e)
    to_tf_keras(model)  # the bridge needs tf-keras only
    out["bridge"] = "ok"
    print("RESULT" + json.dumps(out))
    """
)


def _run(code: str, extra_path: str = "") -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, ROOT, env.get("PYTHONPATH", "")) if p)
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_missing_extra_gives_install_hint(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    out = _run(_CHILD, str(tmp_path))
    for name in ("quantize_aware", "prune"):
        msg = out[name]
        assert msg is not None, f"{name} ran without tfmot"
        assert "pip install 'edgekd[tfmot]'" in msg and "\n" not in msg, msg
        assert "tensorflow_model_optimization" in msg
    assert out["bridge"] == "ok"


def test_tfmot_import_is_confined():
    """tfmot sets TF_USE_LEGACY_KERAS=1 on import; edgekd undoes it and keeps tf.keras on Keras 3."""
    code = textwrap.dedent(
        """
        import json, os
        import tensorflow as tf
        from edgekd.optimize._compat import import_tfmot
        tfmot = import_tfmot()
        from tensorflow_model_optimization.python.core.keras import compat
        print("RESULT" + json.dumps({
            "env": os.environ.get("TF_USE_LEGACY_KERAS"),
            "tf_keras_version": tf.keras.version(),
            "tfmot_keras": compat.keras.__version__,
        }))
        """
    )
    out = _run(code)
    assert out["env"] is None
    assert out["tf_keras_version"].startswith("3.")
    assert out["tfmot_keras"].startswith("2.")
