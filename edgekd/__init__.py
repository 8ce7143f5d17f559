"""edgekd: take a Keras model to a microcontroller.

Distil a large teacher into a small student, compress it, profile it,
convert it to full-integer int8 TFLite, export C arrays, check it against a
board's flash/RAM/latency budgets with the real LiteRT and TFLM interpreters,
and render firmware projects.

Stage functions are imported lazily, so ``import edgekd`` does not import
TensorFlow until a stage is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "datasets": "edgekd.datasets",
    "errors": "edgekd.errors",
    "load_model": "edgekd.convert",
    "convert": "edgekd.convert",
    "ConversionReport": "edgekd.convert",
    "ConvertedModel": "edgekd.model",
    "evaluate_conversion": "edgekd.convert",
    "c_arrays": "edgekd.export",
    "read_tflite": "edgekd.flatbuffer",
    "distill": "edgekd.distill",
    "students": "edgekd.students",
    "shrink": "edgekd.students",
    "profile": "edgekd.profile",
    "check": "edgekd.check",
    "boards": "edgekd.boards",
    "firmware": "edgekd.firmware",
    "optimize": "edgekd.optimize",
    "quantize_aware": "edgekd.optimize",
    "qat_then_convert": "edgekd.optimize",
    "Distiller": "edgekd.distill",
    "MultiStudentDistiller": "edgekd.distill",
    "distill_chain": "edgekd.distill",
    "train_from_scratch": "edgekd.distill",
    "fit": "edgekd.fit",
    "write_export": "edgekd.export",
    "quiet_tensorflow": "edgekd._io",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
    mod = importlib.import_module(module)
    # A stage package named like its function (edgekd.convert) is itself callable.
    return mod if module == f"edgekd.{name}" else getattr(mod, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
