"""Validation of the training data and hyper-parameters shared by QAT and pruning."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from edgekd.errors import DataError, invalid_value
from edgekd.optimize.bridge import _check_model


@dataclasses.dataclass(frozen=True, eq=False)
class TrainData:
    """Validated arrays: training inputs/labels and optional validation inputs/labels."""

    x: np.ndarray
    y: np.ndarray
    x_val: Optional[np.ndarray] = None
    y_val: Optional[np.ndarray] = None


def _split_arrays(obj: Any) -> tuple[Any, Any]:
    if hasattr(obj, "x") and hasattr(obj, "y"):
        return obj.x, obj.y
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return obj[0], obj[1]
    return None, None


def training_data(data: Any, *, input_shape: tuple[int, ...], num_classes: int,
                  validation_data: Any = None, allow_unlabeled: bool = False) -> TrainData:
    """Turn ``data`` (a Dataset, a Split, or ``(x, y)``) into validated arrays.

    A :class:`edgekd.datasets.Dataset` gives its ``train`` split for training
    and its ``val`` split for per-epoch validation (unless ``validation_data``
    is given). With ``allow_unlabeled`` (distillation: the teacher supplies
    soft targets), missing labels become ``-1`` and ``-1`` marks an unlabeled
    example, as in :func:`edgekd.distill.losses.distillation_terms`.
    """
    expected = "an edgekd Dataset, a Split with labels, or an (x, y) tuple of arrays"
    if hasattr(data, "train") and hasattr(data, "val"):
        if validation_data is None:
            validation_data = data.val
        data = data.train
    x, y = _split_arrays(data)
    if x is None and hasattr(data, "shape") and allow_unlabeled:
        x, y = data, None
    if x is None:
        raise invalid_value("data", expected, type(data).__name__)
    if y is None:
        if not allow_unlabeled:
            raise DataError("Training data has no labels. QAT and pruning fine-tune on labeled data: "
                            "pass (x, y), or give a teacher to distil from.")
        y = np.full((np.asarray(x).shape[0],), -1, np.int64)
    x, y = _check_xy(x, y, input_shape=input_shape, num_classes=num_classes, what="Training data",
                     min_label=-1 if allow_unlabeled else 0)
    x_val = y_val = None
    if validation_data is not None:
        vx, vy = _split_arrays(validation_data)
        if vx is None or vy is None:
            raise invalid_value("validation_data", "a Split with labels or an (x, y) tuple", validation_data)
        x_val, y_val = _check_xy(vx, vy, input_shape=input_shape, num_classes=num_classes,
                                 what="Validation data")
    return TrainData(x, y, x_val, y_val)


def _check_xy(x: Any, y: Any, *, input_shape: tuple[int, ...], num_classes: int,
              what: str, min_label: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{what} is empty. Pass at least one example.")
    if x.dtype.kind != "f":
        raise DataError(f"{what} has dtype {x.dtype}; the model takes float inputs. Scale it as in training "
                        "(e.g. x / 255.0).")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{what} has examples of shape {tuple(x.shape[1:])}, but the model expects "
                        f"{tuple(input_shape)}. Pass data shaped like the model's input.")
    y = y.reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{what} has {x.shape[0]} inputs but {y.shape[0]} labels. Pass one label per input.")
    if y.dtype.kind not in "iu" or y.min() < min_label or y.max() >= num_classes:
        unlabeled = " (or -1 for an unlabeled example)" if min_label < 0 else ""
        raise DataError(f"{what} labels must be integer class ids in [0, {num_classes}){unlabeled}; "
                        f"got dtype {y.dtype}, range [{y.min()}, {y.max()}].")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{what} contains NaN or Inf. Clean the data.")
    return x.astype(np.float32), y.astype(np.int64)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise invalid_value(name, "a positive integer", value)
    return int(value)


def positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise invalid_value(name, "a positive number", value)
    return float(value)


def model_signature(model: Any) -> tuple[tuple[int, ...], int]:
    """(per-example input shape, number of classes) of a single-input classifier."""
    _check_model(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise invalid_value("model", "a single-input, single-output classifier", model.name)
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise invalid_value("model", "a model with a fully known input shape (e.g. keras.Input((8, 8, 1)))",
                            tuple(model.inputs[0].shape))
    out = model.outputs[0].shape
    if len(out) != 2 or out[-1] is None or out[-1] < 2:
        raise invalid_value("model", "a classifier with a (batch, classes) output", tuple(out))
    return tuple(int(d) for d in shape), int(out[-1])
