"""Load Keras models from every format users have: .keras, legacy .h5, SavedModel.

Legacy ``.h5`` files written by tf.keras 2 sometimes carry configs Keras 3
refuses (tf.keras 2 wrote ``groups`` into ``DepthwiseConv2D`` configs, for
one). edgekd then falls back to the tf-keras loader and rebuilds the model in
Keras 3 with the same weights, rather than failing.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Optional, Sequence

from edgekd.errors import ModelLoadError, invalid_value


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__


def _strip_legacy_keys(obj: Any) -> Any:
    """Drop tf.keras 2 config keys Keras 3 rejects, recursively."""
    if isinstance(obj, dict):
        out = {k: _strip_legacy_keys(v) for k, v in obj.items()}
        if out.get("class_name") == "DepthwiseConv2D" and isinstance(out.get("config"), dict):
            out["config"].pop("groups", None)
        return out
    if isinstance(obj, list):
        return [_strip_legacy_keys(v) for v in obj]
    return obj


def _from_legacy(path: str, first_error: BaseException) -> Any:
    """Load with tf-keras, then rebuild as a Keras 3 model with the same weights."""
    import json

    try:
        import tf_keras
    except ImportError:  # pragma: no cover - tf-keras is a dependency
        raise ModelLoadError(
            f"Keras 3 cannot load {path} ({_first_line(first_error)}) and tf-keras is not installed. "
            "pip install tf-keras, or re-save the model with Keras 3."
        ) from None
    try:
        legacy = tf_keras.models.load_model(path, compile=False)
    except Exception:
        raise ModelLoadError(
            f"Cannot load {path}: {_first_line(first_error)}. Pass a Keras model saved with model.save()."
        ) from None
    import keras

    try:
        config = _strip_legacy_keys(json.loads(legacy.to_json()))
        model = keras.models.model_from_json(json.dumps(config))
        model.set_weights(legacy.get_weights())
        return model
    except Exception:
        return legacy  # still convertible by the TFLite converter


def _is_savedmodel(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def _load_savedmodel(path: str, input_shape: Optional[Sequence[int]]) -> Any:
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:
        raise ModelLoadError(f"Cannot load SavedModel {path}: {_first_line(e)}. Pass an intact SavedModel.") from None
    sig = getattr(loaded, "signatures", {}).get("serving_default")
    if sig is None:
        raise ModelLoadError(f"SavedModel {path} has no 'serving_default' signature. Export it with one.")
    specs = list(sig.structured_input_signature[1].values())
    if len(specs) != 1:
        raise ModelLoadError(f"SavedModel {path} has {len(specs)} inputs; edgekd supports single-input models.")
    shape = tuple(specs[0].shape[1:])
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
    if any(d is None for d in shape):
        raise ModelLoadError(
            f"SavedModel {path} has an unknown input shape {tuple(specs[0].shape)}. Pass --input-shape H,W,C."
        )
    inputs = keras.Input(shape=shape, name="input")
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    out = layer(inputs)
    if isinstance(out, dict):
        if len(out) != 1:
            raise ModelLoadError(f"SavedModel {path} has {len(out)} outputs; edgekd supports one.")
        out = next(iter(out.values()))
    return keras.Model(inputs, out, name=os.path.basename(os.path.normpath(path)))


def load_model(
    model: Any, *, safe_mode: bool = True, input_shape: Optional[Sequence[int]] = None
) -> Any:
    """Load a Keras model from a file, a SavedModel directory, or pass one through.

    Args:
        model: A ``keras.Model`` (returned as is), a ``.keras`` file, a legacy
            ``.h5`` file (tf.keras 2 files Keras 3 rejects fall back to the
            tf-keras loader), or a SavedModel directory.
        safe_mode: Keras 3's safe mode for ``.keras`` files (refuses lambda
            deserialization). Turn off only for files you trust.
        input_shape: Per-example input shape, for models whose input shape is
            unknown.

    Returns:
        A Keras model.

    Raises:
        ModelLoadError: Missing, corrupt, or not a model; the message says what to do.
    """
    if not isinstance(model, (str, os.PathLike)):
        if hasattr(model, "predict") and hasattr(model, "layers"):
            return model
        raise invalid_value("model", "a keras.Model or the path of a .keras/.h5 file or SavedModel directory",
                            type(model).__name__)
    path = os.fspath(model)
    if not os.path.exists(path):
        raise ModelLoadError(f"Model file not found: {path}. Pass the path of an existing .keras, .h5 or SavedModel.")
    if _is_savedmodel(path):
        return _load_savedmodel(path, input_shape)
    if os.path.isdir(path):
        raise ModelLoadError(f"{path} is a directory without saved_model.pb. Pass a .keras/.h5 file or a SavedModel.")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".tflite":
        raise ModelLoadError(f"{path} is already a TFLite model; this step needs the Keras model (.keras/.h5).")
    if ext not in (".keras", ".h5", ".hdf5"):
        raise ModelLoadError(f"{path} has extension {ext or '(none)'}; expected .keras, .h5 or a SavedModel directory.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if ext == ".keras" and not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a valid .keras archive (corrupt or truncated). Re-save the model.")
    if ext in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if "model_config" not in f.attrs:
                    raise ModelLoadError(
                        f"{path} holds no model (weights only?). Save the whole model with model.save()."
                    )
        except OSError:
            raise ModelLoadError(f"{path} is not a valid HDF5 file (corrupt or truncated). Re-save the model.") \
                from None
    try:
        loaded = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except ModelLoadError:
        raise
    except Exception as e:
        if ext in (".h5", ".hdf5"):
            return _from_legacy(path, e)
        msg = _first_line(e)
        if "safe_mode" in msg or "lambda" in msg.lower():
            raise ModelLoadError(
                f"{path} contains a Lambda layer, refused in safe mode. If you trust the file, load it with "
                "safe_mode=False (--unsafe)."
            ) from None
        raise ModelLoadError(f"Cannot load {path}: {msg}. Pass a Keras model saved with model.save().") from None
    if not hasattr(loaded, "predict"):
        raise ModelLoadError(f"{path} does not hold a Keras model. Save the whole model with model.save().")
    return loaded


def model_input_shape(model: Any, *, input_shape: Optional[Sequence[int]] = None) -> tuple[int, ...]:
    """The per-example input shape of a single-input model.

    Args:
        model: A Keras model.
        input_shape: An explicit shape, used when given (must not contain None).

    Raises:
        ModelLoadError: The model's input shape is unknown and none was given,
            or the model has several inputs.
    """
    if input_shape is not None:
        shape = tuple(input_shape)
        if not shape or any((not isinstance(d, int)) or d <= 0 for d in shape):
            raise invalid_value("input_shape", "positive integers such as (8, 8, 1)", input_shape)
        return shape
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ModelLoadError(
            f"Model {getattr(model, 'name', '')!r} has an unknown input shape (not built). Pass --input-shape H,W,C."
        )
    if len(inputs) != 1:
        raise ModelLoadError(f"Model has {len(inputs)} inputs; edgekd supports single-input models.")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ModelLoadError(
            f"Model has an unknown input shape {tuple(inputs[0].shape)}. Pass --input-shape H,W,C."
        )
    return tuple(int(d) for d in shape)
