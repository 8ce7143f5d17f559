"""Op emitters of the compiled engine: one function per TFLite builtin op.

An emitter gets the op and an :class:`edgekd.engine.codegen.Emitter` and
returns the C++ statements that run it inside ``model_invoke()``. Through the
emitter it declares what it needs: constant arrays (weights, biases, the
multipliers and shifts TFLM's ``Prepare`` would compute, precomputed with
:mod:`edgekd.engine.quant`), headers, and a scratch buffer. It calls the same
kernel entry point that the TFLM tree's own kernel calls for this op and these
parameters (CMSIS-NN in Chirale_TensorFLowLite; ESP-NN in esp-tflite-micro built
with ``ESP_NN``, the emitter's ``esp_nn`` variant; the reference
kernels elsewhere), so the output is bit-exact with the interpreter.

A module registers its ops with :func:`register`; :func:`get` finds them.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from edgekd.errors import UnsupportedOpError


@dataclasses.dataclass(frozen=True)
class OpEmitter:
    """How the engine runs one op.

    Attributes:
        name: The builtin op name.
        emit: ``emit(op, emitter) -> str``: the statements.
        in_place: The output may be written over the first input (element by element).
        alias: The output is the first input's bytes unchanged (RESHAPE): no code, no buffer.
    """

    name: str
    emit: Callable
    in_place: bool = False
    alias: bool = False


_REGISTRY: dict[str, OpEmitter] = {}
_MODULES = ("conv", "fully_connected", "pooling", "activations", "elementwise", "shape")


def register(*names: str, in_place: bool = False, alias: bool = False) -> Callable:
    """Decorator: ``emit`` runs ``names``."""
    def deco(fn: Callable) -> Callable:
        for n in names:
            _REGISTRY[n] = OpEmitter(n, fn, in_place, alias)
        return fn
    return deco


def _load() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{mod}":
                raise


def supported() -> list[str]:
    """The op names the compiled engine runs."""
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> OpEmitter:
    """The emitter of op ``name``.

    Raises:
        UnsupportedOpError: The compiled engine does not run it (the message names it and the fix).
    """
    _load()
    if name not in _REGISTRY:
        raise UnsupportedOpError(
            f"The compiled engine does not support op {name}; use the interpreter "
            f"(`--engine interpreter`, the default). It supports: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]
