"""Make a stage's package callable as its main function.

``edgekd.convert`` is both a subpackage and the function users call
(``edgekd.convert(model, mode="int8", ...)``); once the subpackage is
imported, Python binds the module to the package attribute. Giving the
module a ``__call__`` that forwards to the function makes both spellings work.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from typing import Any, Callable


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Let ``module_name`` be called like ``fn`` (docstring and signature included)."""
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        @functools.wraps(fn)
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    module.__class__ = _CallableModule
    # inspect.signature (IDE tooltips, help) of the module reads this; the bound __call__ would hide the first parameter
    module.__signature__ = inspect.signature(fn)
