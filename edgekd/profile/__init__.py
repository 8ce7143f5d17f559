"""Model profiler: params, MACs, weight bytes, activation bytes and peak RAM.

:func:`profile` computes a :class:`ModelProfile` (frozen dataclasses) for a
Keras model or a ``.tflite`` flatbuffer; rendering is separate
(:func:`print_profile`, :func:`print_comparison`, :meth:`ModelProfile.to_json`,
:meth:`ModelProfile.to_csv`).

Example:
    >>> from edgekd.profile import profile, print_profile
    >>> p = profile(model)                  # or profile("model.tflite")
    >>> p.macs, p.params, p.peak_ram_bytes
    >>> print_profile(p, print_fn=print)
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from edgekd.errors import invalid_value
from edgekd.model import ConvertedModel
from edgekd.profile._types import MAC_KINDS, LayerProfile, ModelProfile, live_bytes, mac_kind, peak_live_bytes
from edgekd.profile.render import comparison_table, print_comparison, print_profile, profile_table
from edgekd.profile._keras import profile_keras
from edgekd.profile._tflite import profile_tflite

__all__ = [
    "MAC_KINDS", "LayerProfile", "ModelProfile", "comparison_table", "live_bytes", "mac_kind", "peak_live_bytes",
    "print_comparison", "print_profile", "profile", "profile_table",
]


def _check_input_shape(input_shape: Any) -> Optional[tuple[int, ...]]:
    if input_shape is None:
        return None
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(d < 1 for d in shape) or any(not float(d).is_integer() for d in input_shape):
        raise invalid_value("input_shape", "a tuple of positive ints without the batch, e.g. (96, 96, 1)",
                            input_shape)
    return shape


def profile(
    model_or_tflite: Any,
    *,
    input_shape: Optional[Sequence[int]] = None,
) -> ModelProfile:
    """Profile a model: per-layer params, MACs, weight and activation bytes; totals and peak RAM.

    Args:
        model_or_tflite: A ``keras.Model`` (Sequential or Functional; nested
            models are expanded), the bytes of a ``.tflite`` flatbuffer (a
            :class:`edgekd.ConvertedModel` is profiled from its parsed
            flatbuffer), or the path of a ``.tflite`` file. (Load ``.keras``/``.h5`` files first,
            e.g. with ``edgekd.convert.load_model``.)
        input_shape: Input shape without the batch, needed only for a
            Sequential model that has no Input layer.

    Returns:
        A :class:`ModelProfile` (batch 1). ``layers[i].op_type`` is the Keras
        layer class or the TFLite builtin op name; ``macs_by_kind`` splits MACs
        into conv / depthwise / fully_connected / other; ``peak_ram_bytes`` is
        the peak of live int8 activation bytes over tensor lifetimes.

    Raises:
        InvalidArgumentError: ``model_or_tflite`` is none of the above, or
            ``input_shape`` is malformed.
        TFLiteFileError: The TFLite bytes/file are corrupt or truncated.
    """
    shape = _check_input_shape(input_shape)
    if isinstance(model_or_tflite, ConvertedModel):  # its flatbuffer, parsed once

        return profile_tflite(model_or_tflite.parsed)
    if isinstance(model_or_tflite, (bytes, bytearray, memoryview)):
        return profile_tflite(bytes(model_or_tflite))
    if isinstance(model_or_tflite, (str, os.PathLike)):
        path = os.fspath(model_or_tflite)
        if not path.lower().endswith(".tflite"):
            raise invalid_value(
                "model_or_tflite", "a keras.Model, .tflite bytes, or a .tflite path (load .keras/.h5 files "
                "with edgekd.convert.load_model first)", path,
            )

        return profile_tflite(path)
    if hasattr(model_or_tflite, "layers") and hasattr(model_or_tflite, "count_params"):
        if type(model_or_tflite).__module__.split(".")[0] == "tf_keras":  # its layers' attributes differ
            raise invalid_value("model_or_tflite", "a Keras 3 model, not a tf-keras one: load the file with "
                                "edgekd.convert.load_model, which builds it in Keras 3",
                                type(model_or_tflite).__name__)

        return profile_keras(model_or_tflite, input_shape=shape)
    raise invalid_value("model_or_tflite", "a keras.Model, .tflite bytes, or a .tflite path",
                        type(model_or_tflite).__name__)


from edgekd._callable import make_callable  # noqa: E402

make_callable(__name__, profile)
