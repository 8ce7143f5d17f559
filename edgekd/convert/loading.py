"""Load Keras models from every format users have: .keras, legacy .h5, SavedModel.

Model files are untrusted input. Before any loader reads a file, edgekd
inspects what it stores (:mod:`edgekd.convert._vet`) and refuses anything
that needs code to load — Lambda layers, custom classes, functions that are
not Keras built-ins, SavedModel ops that touch files or call Python — unless
the caller opted in with ``safe_mode=False`` (``--unsafe`` on the command line).

Every path returns a Keras 3 model, built by Keras 3's own loader: legacy
``.h5`` files written by tf.keras 2 sometimes carry config keys Keras 3
refuses (``groups`` in ``DepthwiseConv2D``/``SeparableConv2D``/
``Conv2DTranspose`` configs, ``kernel_*`` in ``SeparableConv2D`` ones);
edgekd drops those keys where that cannot change the model (a default value,
or an initializer/regularizer/constraint) and loads the file again with
Keras 3, in memory. No tf-keras model
is ever handed out (the profiler and the student builders read Keras 3
attributes).
"""

from __future__ import annotations

import inspect
import io
import json
import os
import warnings
import zipfile
from typing import Any, Optional, Sequence

from edgekd.errors import ModelLoadError, UnsafeModelError, invalid_value
from edgekd.convert._vet import needs_code


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__


# tf.keras 2 config keys Keras 3's classes do not take, with the only value that means the same without them.
_LEGACY_DEFAULTS = {"groups": 1}
# Keys that never matter once the weights are loaded (tf.keras 2 wrote kernel_* into SeparableConv2D and
# DepthwiseConv2D configs, which use depthwise_*/pointwise_* kernels).
_TRAINING_ONLY = ("_initializer", "_regularizer", "_constraint")


def _strip_legacy_keys(obj: Any) -> Any:
    """Drop tf.keras 2 config keys Keras 3 rejects, where dropping them cannot change the loaded model.

    That is a key at its default (``groups=1``), or one that only matters for
    training (initializers, regularizers, constraints), recursively.
    """
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if isinstance(obj, list):
        return [_strip_legacy_keys(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _strip_legacy_keys(v) for k, v in obj.items()}
    cls = getattr(keras.layers, str(out.get("class_name")), None)
    config = out.get("config")
    if isinstance(cls, type) and isinstance(config, dict):
        accepted = inspect.signature(cls.__init__).parameters
        for key in [k for k in config if k not in accepted]:
            if (key in _LEGACY_DEFAULTS and config[key] == _LEGACY_DEFAULTS[key]) or key.endswith(_TRAINING_ONLY):
                config.pop(key)
    return out


def _load_legacy_h5(path: str, first_error: BaseException, safe_mode: bool) -> Any:
    """Load a tf.keras 2 ``.h5`` with Keras 3 after dropping the config keys it rejects (in memory)."""
    import h5py  # h5py: only for legacy .h5 files
    from keras.src.legacy.saving import legacy_h5_format  # Keras pulls TensorFlow

    with open(path, "rb") as f:
        buf = io.BytesIO(f.read())
    try:
        with h5py.File(buf, "r+") as h5:
            config = json.loads(h5.attrs["model_config"])
            patched = _strip_legacy_keys(config)
            if patched == config:
                raise first_error
            h5.attrs["model_config"] = json.dumps(patched)
            return legacy_h5_format.load_model_from_hdf5(h5, compile=False, safe_mode=safe_mode)
    except Exception as e:
        raise ModelLoadError(
            f"Keras 3 cannot load {path}: {_first_line(e)}. Re-save the model with Keras 3 "
            "(keras.saving.save_model) or replace the layer named."
        ) from None


def _is_savedmodel(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def _load_savedmodel(path: str, input_shape: Optional[Sequence[int]]) -> Any:
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)
    import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

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
            f"SavedModel {path} has an unknown input shape {tuple(specs[0].shape)}. "
            "Pass `input_shape` (height, width, channels)."
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
    """Load a Keras 3 model from a file, a SavedModel directory, or pass one through.

    Args:
        model: A ``keras.Model`` (returned as is), a ``.keras`` file, a legacy
            ``.h5`` file (tf.keras 2 files included), or a SavedModel directory.
        safe_mode: Refuse, before anything is loaded, a file that needs code
            to load: Lambda layers, custom or registered classes, functions
            that are not Keras built-ins, layers wrapping other code
            (``TFSMLayer``, ``TorchModuleWrapper``, …), SavedModel ops that
            touch files or call Python. Turn off only for files you trust.
        input_shape: Per-example input shape, for models whose input shape is
            unknown.

    Returns:
        A Keras 3 model (the same for every format, so every stage sees the
        same layers).

    Raises:
        UnsafeModelError: The file needs code to load and ``safe_mode`` is on.
        ModelLoadError: Missing, corrupt, or not a model; the message says what to do.
    """
    if not isinstance(model, (str, os.PathLike)):
        if hasattr(model, "predict") and hasattr(model, "layers"):
            return model
        raise invalid_value("model", "a keras.Model or the path of a .keras/.h5 file or SavedModel directory",
                            type(model).__name__)
    if not isinstance(safe_mode, bool):
        raise invalid_value("safe_mode", "True or False", safe_mode)
    path = os.fspath(model)
    if not os.path.exists(path):
        raise ModelLoadError(f"Model file not found: {path}. Pass the path of an existing .keras, .h5 or SavedModel.")
    if os.path.isdir(path):
        if not _is_savedmodel(path):
            raise ModelLoadError(f"{path} is a directory without saved_model.pb. "
                                 "Pass a .keras/.h5 file or a SavedModel directory.")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        _refuse_code(path, safe_mode)
        return _load_savedmodel(path, input_shape)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".tflite":
        raise ModelLoadError(f"{path} is already a TFLite model; this step needs the Keras model (.keras/.h5).")
    if ext not in (".keras", ".h5", ".hdf5"):
        raise ModelLoadError(f"{path} has extension {ext or '(none)'}; expected .keras, .h5 or a SavedModel directory.")
    if ext == ".keras" and not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a valid .keras archive (corrupt or truncated). Re-save the model.")
    if ext in (".h5", ".hdf5"):
        import h5py  # h5py: only for legacy .h5 files

        try:
            with h5py.File(path, "r") as f:
                if "model_config" not in f.attrs:
                    raise ModelLoadError(
                        f"{path} holds no model (weights only?). Save the whole model with model.save()."
                    )
        except OSError:
            raise ModelLoadError(f"{path} is not a valid HDF5 file (corrupt or truncated). Re-save the model.") \
                from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _refuse_code(path, safe_mode)  # before any loader reads the file
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    try:
        with warnings.catch_warnings():  # deprecated legacy arguments (LeakyReLU's alpha, …) are not the user's
            warnings.simplefilter("ignore")
            loaded = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except ModelLoadError:
        raise
    except Exception as e:
        if ext in (".h5", ".hdf5"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = _load_legacy_h5(path, e, safe_mode)
        else:
            raise ModelLoadError(f"Cannot load {path}: {_first_line(e)}. Pass a Keras model saved with model.save().") \
                from None
    if not isinstance(loaded, keras.Model):
        raise ModelLoadError(f"{path} does not hold a Keras model. Save the whole model with model.save().")
    return loaded


def _refuse_code(path: str, safe_mode: bool) -> None:
    """Raise UnsafeModelError when safe mode is on and the stored model needs code to load."""
    if not safe_mode:
        return

    reason = needs_code(path)
    if reason is not None:
        raise UnsafeModelError(path, reason)


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
            f"Model {getattr(model, 'name', '')!r} has an unknown input shape (not built). "
            "Pass `input_shape` (height, width, channels)."
        )
    if len(inputs) != 1:
        raise ModelLoadError(f"Model has {len(inputs)} inputs; edgekd supports single-input models.")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ModelLoadError(
            f"Model has an unknown input shape {tuple(inputs[0].shape)}. Pass `input_shape` (height, width, channels)."
        )
    return tuple(int(d) for d in shape)
