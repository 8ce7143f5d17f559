"""Confined imports of tf-keras and tensorflow-model-optimization (tfmot).

edgekd is a Keras 3 library; tfmot 0.8 only works with tf-keras (Keras 2),
see tensorflow/model-optimization#1119 (Keras 3 support, open) and #1144 /
#1270 (``quantize_model`` rejects Keras 3 models). This module is the only
place in edgekd that imports either package.

tfmot 0.8.1 sets ``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` as a side effect
of ``import tensorflow_model_optimization`` (its ``compat._get_keras_instance``)
and then reads ``tf.keras``. Left alone this has two process-wide effects: if
nothing had touched ``tf.keras`` yet, TensorFlow's lazy loader binds
``tf.keras`` to tf-keras for the rest of the process; and every child process
started afterwards (``edgekd`` CLI calls in tests, TFLM subprocesses) inherits
the variable. :func:`import_tfmot` confines both: it resolves ``tf.keras``
under the caller's environment first (Keras 3 unless the user chose
otherwise), imports tfmot (which then picks tf-keras explicitly because
``tf.keras`` reports version 3), and restores the environment variable. Keras
3 and tf-keras then live side by side in one process; no child process is
needed.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from edgekd.errors import MissingExtraError

_ENV = "TF_USE_LEGACY_KERAS"
_LOCK = threading.Lock()
_INSTALL_HINT = "pip install 'edgekd[tfmot]'"


def _missing(what: str, exc: BaseException) -> MissingExtraError:
    return MissingExtraError(
        f"{what} needs tensorflow-model-optimization and tf-keras, which are not importable "
        f"({type(exc).__name__}: {exc}). Install the extra: {_INSTALL_HINT}"
    )


def import_tf_keras(what: str = "edgekd.optimize") -> Any:
    """Import tf-keras (Keras 2) explicitly, without touching ``tf.keras``.

    Args:
        what: The feature that needs it, for the error message.

    Returns:
        The ``tf_keras`` module.

    Raises:
        MissingExtraError: tf-keras is not installed.
    """
    try:
        import tf_keras  # tf-keras pulls TensorFlow: loaded on first use
    except ImportError as exc:
        raise _missing(what, exc) from None
    return tf_keras


def import_tfmot(what: str = "edgekd.optimize") -> Any:
    """Import tensorflow-model-optimization with its global side effects undone.

    Args:
        what: The feature that needs it, for the error message.

    Returns:
        The ``tensorflow_model_optimization`` module (bound to tf-keras).

    Raises:
        MissingExtraError: tfmot or tf-keras is not installed.
    """
    with _LOCK:
        import tensorflow as tf  # TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

        saved = os.environ.get(_ENV)
        try:
            # Bind TensorFlow's lazy ``tf.keras`` under the caller's environment
            # before tfmot flips the variable.
            getattr(tf.keras, "__name__", None)
            import_tf_keras(what)
            import tensorflow_model_optimization as tfmot  # tfmot: an optional extra, and it pulls TensorFlow
        except ImportError as exc:
            raise _missing(what, exc) from None
        finally:
            if saved is None:
                os.environ.pop(_ENV, None)
            else:
                os.environ[_ENV] = saved
        from tensorflow_model_optimization.python.core.keras import compat  # tfmot

        keras_used = compat.keras
        if not keras_used.__version__.startswith("2."):
            raise MissingExtraError(
                f"tensorflow-model-optimization bound itself to Keras {keras_used.__version__}; it needs "
                f"tf-keras 2.x. Install matching versions: {_INSTALL_HINT}"
            )
        return tfmot
