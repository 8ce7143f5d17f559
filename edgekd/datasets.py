"""Bundled and user-supplied datasets.

The bundled dataset is scikit-learn's 8x8 handwritten digits, which ships
inside scikit-learn: nothing is downloaded. Users bring their own data as
``.npz`` (arrays ``x`` and optionally ``y``; ``x_train``/``y_train``,
``x_val``/``y_val``, ``x_test``/``y_test`` are recognised too) or ``.npy``
(inputs only).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Optional, Sequence

import numpy as np

from edgekd.errors import DataError, invalid_value


@dataclasses.dataclass(frozen=True)
class Split:
    """Inputs and (optional) integer labels of one split."""

    x: np.ndarray
    y: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/validation/test splits of a classification dataset."""

    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    name: str = "dataset"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.x.shape[1:])


def digits(*, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits as deterministic splits.

    Args:
        val_fraction: Share of the 1797 images in the validation split.
        test_fraction: Share of the images in the test split.
        seed: Seed of the stratified shuffle; the same seed gives the same splits.

    Returns:
        A :class:`Dataset` of float32 images in [0, 1] of shape (N, 8, 8, 1),
        int64 labels 0-9, and class names ``"0"`` … ``"9"``.
    """
    if not 0.0 < val_fraction < 0.5:
        raise invalid_value("val_fraction", "a float in (0, 0.5)", val_fraction)
    if not 0.0 < test_fraction < 0.5:
        raise invalid_value("test_fraction", "a float in (0, 0.5)", test_fraction)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train_idx, val_idx, test_idx = [], [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        n_test = int(round(len(idx) * test_fraction))
        val_idx.extend(idx[:n_val])
        test_idx.extend(idx[n_val : n_val + n_test])
        train_idx.extend(idx[n_val + n_test :])
    splits = []
    for ids in (train_idx, val_idx, test_idx):
        ids = np.array(sorted(ids))
        perm = rng.permutation(len(ids))
        ids = ids[perm]
        splits.append(Split(x[ids], y[ids]))
    return Dataset(*splits, class_names=tuple(str(i) for i in range(10)), name="digits")


_X_KEYS = ("x", "x_train", "inputs", "images", "data")
_Y_KEYS = ("y", "y_train", "labels", "targets")


def load_arrays(path: str | os.PathLike) -> Split:
    """Load user data from ``.npz`` or ``.npy``.

    Args:
        path: A ``.npz`` holding ``x`` (and optionally ``y``) — also accepted:
            ``x_train``/``y_train``, ``inputs``/``labels`` — or a ``.npy`` of inputs.

    Returns:
        A :class:`Split`; ``y`` is None when the file has no labels.

    Raises:
        DataError: The file is missing, unreadable, empty, or has no input array.
    """
    p = os.fspath(path)
    check_array_file(p)
    try:
        if p.endswith(".npy"):
            x = np.load(p, allow_pickle=False)
            y = None
        else:
            with np.load(p, allow_pickle=False) as f:
                keys = list(f.keys())
                xk = next((k for k in _X_KEYS if k in keys), None)
                if xk is None:
                    raise DataError(
                        f"{p} has no input array (found {keys or 'nothing'}). "
                        f"Save inputs under the key 'x' (and labels under 'y')."
                    )
                x = f[xk]
                yk = next((k for k in _Y_KEYS if k in keys), None)
                y = f[yk] if yk is not None else None
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{p} holds Python objects (object arrays), which edgekd does not unpickle from "
                            "untrusted files. Save numeric arrays with numpy.savez.") from None
        raise DataError(f"Cannot read data file {p}: {str(e).splitlines()[0] if str(e) else 'ValueError'}. "
                        "Pass a .npz written by numpy.savez or a .npy written by numpy.save.") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(
            f"Cannot read data file {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
            "Pass a .npz written by numpy.savez or a .npy written by numpy.save."
        ) from None
    return validate_split(Split(x, y), source=p)


_NPY_MAGIC = b"\x93NUMPY"


def check_array_file(path: str) -> None:
    """Refuse, by its first bytes, a data file that is not what its name says (before numpy reads it).

    ``.npy`` files start with numpy's magic string and ``.npz`` files are zip
    archives; anything else (a text file, a pickle) is refused here, so numpy
    never falls back to unpickling it.

    Raises:
        DataError: Missing, a directory, or not a ``.npy``/``.npz`` file.
    """
    if os.path.isdir(path):
        raise DataError(f"Data file {path} is a directory. Pass a .npz or .npy file.")
    if not os.path.isfile(path):
        raise DataError(f"Data file not found: {path}. Pass an existing .npz or .npy file.")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise DataError(f"Cannot read data file {path}: {e.strerror}. Pass a readable .npz or .npy file.") from None
    if path.endswith(".npy"):
        if head != _NPY_MAGIC:
            raise DataError(f"{path} is not a .npy file (no numpy header). Save the inputs with numpy.save.")
    elif not zipfile.is_zipfile(path):
        kind = "a .npy file" if head == _NPY_MAGIC else "not a .npz archive (not a zip file)"
        raise DataError(f"{path} is {kind}. Pass a .npz written by numpy.savez (x and y arrays) or a .npy "
                        "written by numpy.save.")


def check_labels(y: Optional[np.ndarray], num_classes: Optional[int], *, source: str = "labels") -> None:
    """Refuse integer labels outside ``0..num_classes - 1`` (they would score 0 % and pass unnoticed).

    Nothing is checked without labels, or when the model has a single output
    unit (a regression or binary output, where labels are not class ids).

    Raises:
        DataError: A label is negative or not below ``num_classes``.
    """
    if y is None or num_classes is None or int(num_classes) <= 1 or len(y) == 0:
        return
    lo, hi = int(np.min(y)), int(np.max(y))
    if lo < 0 or hi >= int(num_classes):
        raise DataError(f"{source} span {lo}..{hi} but the model predicts {int(num_classes)} classes. "
                        f"Use labels 0..{int(num_classes) - 1} (one per output unit).")


def validate_split(split: Split, *, source: str = "data", input_shape: Optional[Sequence[int]] = None) -> Split:
    """Check that inputs are a non-empty numeric array (and labels match), casting to float32.

    Args:
        split: The data to check.
        source: Where the data came from, for messages.
        input_shape: When given, the per-example shape the inputs must have
            (``None`` entries match any size).

    Returns:
        The split with float32 inputs and int64 labels (or None).
    """
    x = np.asarray(split.x)
    if x.size == 0 or x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{source} is empty (shape {x.shape}). Pass at least one example.")
    if x.dtype.kind not in "fiub":
        raise DataError(
            f"{source} has dtype {x.dtype}; expected a numeric array (float32 inputs in the model's range)."
        )
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.argmax(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)))
        raise DataError(f"{source} contains NaN or Inf (first in example {bad}). Clean the data: every input "
                        "must be a finite number.")
    if input_shape is not None:
        want = tuple(input_shape)

        def _match(shape: tuple) -> bool:
            return len(shape) == len(want) and all(w is None or w == g for w, g in zip(want, shape))

        if not _match(tuple(x.shape[1:])):
            if _match(tuple(x.shape)):
                x = x[None]  # a single example
            else:
                raise DataError(
                    f"{source} has examples of shape {tuple(x.shape[1:])}, but the model expects "
                    f"{want}. Reshape the data to the model's input shape."
                )
    y = split.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(axis=1)
        y = y.reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise DataError(
                f"{source} has {x.shape[0]} inputs but {y.shape[0]} labels. Pass one label per input."
            )
        if y.dtype.kind not in "iub" and not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{source} labels must be integer class ids; got dtype {y.dtype}.")
        y = y.astype(np.int64)
    return Split(x.astype(np.float32, copy=False), y)


def get(identifier: str) -> Dataset:
    """Return a bundled dataset by name (only ``"digits"`` today).

    Raises:
        InvalidArgumentError: Unknown name; the message lists the valid ones.
    """
    from edgekd.errors import unknown_name

    if identifier == "digits":
        return digits()
    raise unknown_name("dataset", identifier, ["digits"])
