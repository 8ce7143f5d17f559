"""The host interpreter: LiteRT (``ai-edge-litert``), with fallbacks.

LiteRT is the maintained successor of ``tflite-runtime`` (last released as
2.14 in 2023). When it is missing, ``tflite_runtime`` and then ``tf.lite``
are used, in that order.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgekd._io import quiet_native_output
from edgekd.errors import DataError
from edgekd.flatbuffer import read_tflite


def interpreter_class() -> tuple[type, str]:
    """The interpreter class to use and the name of the package providing it."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:  # pragma: no cover - depends on the environment
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:  # pragma: no cover
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"


def make_interpreter(model_bytes: bytes, *, num_threads: int = 1) -> Any:
    """A LiteRT interpreter with tensors allocated.

    The flatbuffer is verified first (:func:`edgekd.flatbuffer.read_tflite`),
    so a corrupt file raises ``TFLiteFileError`` instead of crashing.
    """
    read_tflite(model_bytes)
    cls, _ = interpreter_class()
    with quiet_native_output():
        interp = cls(model_content=bytes(model_bytes), num_threads=num_threads)
        interp.allocate_tensors()
    return interp


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Affine-quantize real values as TFLite's QUANTIZE kernel does.

    ``q = clip(round(x / scale) + zero_point)`` with the division in float32
    and rounding half away from zero (``std::round``), not NumPy's half-to-even.
    """
    info = np.iinfo(dtype)
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    q = r.astype(np.float64) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``real = scale * (q - zero_point)`` as float32."""
    return ((np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def predict(
    model_bytes: bytes,
    x: np.ndarray,
    *,
    dequantize_output: bool = True,
    num_threads: int = 1,
    interpreter: Optional[Any] = None,
) -> np.ndarray:
    """Run a single-input TFLite model on a batch, one example at a time.

    Inputs are float; for an int8/uint8 input tensor they are quantized with
    the tensor's scale and zero point. Outputs are dequantized to float unless
    ``dequantize_output=False``.

    Args:
        model_bytes: The ``.tflite`` flatbuffer.
        x: Inputs of shape ``(N, *input_shape)``.
        dequantize_output: Return real values rather than raw quantized ones.
        num_threads: LiteRT threads.
        interpreter: An interpreter already made for ``model_bytes`` (reused).

    Returns:
        Outputs of shape ``(N, *output_shape[1:])``.
    """
    interp = interpreter or make_interpreter(model_bytes, num_threads=num_threads)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = np.asarray(x)
    want = tuple(int(d) for d in inp["shape"][1:])
    if tuple(x.shape[1:]) != want:
        raise DataError(
            f"Inputs have shape {tuple(x.shape[1:])} per example but the model expects {want}. "
            "Reshape the data to the model's input shape."
        )
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    quantized_in = np.dtype(inp["dtype"]).kind in "iu"
    results = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        if quantized_in:
            xi = quantize(xi, in_scale, in_zp, inp["dtype"])
        else:
            xi = xi.astype(inp["dtype"])
        interp.set_tensor(inp["index"], xi)
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0].copy())
    y = np.stack(results)
    if dequantize_output and np.dtype(out["dtype"]).kind in "iu" and out_scale:
        y = dequantize(y, out_scale, out_zp)
    return y
