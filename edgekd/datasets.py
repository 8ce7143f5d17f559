"""Data intake: the bundled dataset and user files, in one convention, checked by one validator.

:func:`load` reads every kind of data edgekd takes (``--data``/``--dataset``/``--rep-data`` on the command
line, ``data=`` in Python) into a :class:`Dataset`:

- ``"digits"``: scikit-learn's 8x8 handwritten digits, bundled with scikit-learn (nothing is downloaded),
  in deterministic train/validation/test splits.
- A ``.npz`` file with the arrays ``x`` (inputs, ``(N, ...)``) and optionally ``y`` (integer class ids, or
  one-hot rows), ``x_val``/``y_val`` (validation split) and ``x_test``/``y_test`` (test split). A label of
  ``-1`` marks an unlabeled example: it trains by the teacher's soft labels only and is left out of accuracy.
  (``x_train``/``y_train`` are read as ``x``/``y``.)
- A ``.npy`` file: the inputs ``x`` alone (unlabeled).
- A folder of ``.npy``/``.npz`` files: read as one ``.npz``. ``NAME.npy`` is the array ``NAME`` when NAME is
  one of the names above (``y.npy``, ``x_test.npy`` …) and part of ``x`` otherwise; a ``.npz`` contributes
  its arrays. Arrays of the same name are concatenated in file-name order.

Verbs that evaluate use :attr:`Dataset.evaluation` (the test split, else the validation split, else ``x``)
and say which one; verbs that train use ``x`` and validate on ``x_val`` (or a held-out share of ``x``,
:meth:`Dataset.with_validation`). :func:`resize` brings images to a model's input resolution exactly as a
student is trained on them.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Any, Optional, Sequence

import numpy as np

from edgekd.errors import DataError, ResizeNeededError, invalid_value, unknown_name

KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
"""The array names of the file convention."""

_ALIASES = {"x_train": "x", "y_train": "y"}
_NPY_MAGIC = b"\x93NUMPY"
_FILE_FIX = "Pass a .npz written by numpy.savez (x and y arrays) or a .npy written by numpy.save."


@dataclasses.dataclass(frozen=True)
class Split:
    """Inputs and (optional) integer labels of one split; ``-1`` labels an unlabeled example.

    Attributes:
        x: The inputs, ``(N, ...)``.
        y: Integer class ids ``(N,)`` or None.
        name: What messages call the split, e.g. ``x_test of data.npz`` or ``digits test split``.
    """

    x: np.ndarray
    y: Optional[np.ndarray] = None
    name: str = "data"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def describe(self) -> str:
        """``x_test of data.npz (269 samples)``: the split a verb used, for its output."""
        return f"{self.name} ({len(self)} samples)"

    def labeled(self) -> "Split":
        """The examples with a label (y >= 0): the split itself when all are labelled, without labels when none is."""
        if self.y is None or bool(np.all(self.y >= 0)):
            return self
        keep = self.y >= 0
        if not keep.any():
            return dataclasses.replace(self, y=None)
        return dataclasses.replace(self, x=self.x[keep], y=self.y[keep])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/validation/test splits of a classification dataset.

    Attributes:
        train: The training (transfer, calibration) split: the file's ``x``/``y``.
        val: The validation split (``x_val``/``y_val``), or None.
        test: The test split (``x_test``/``y_test``), or None.
        class_names: Class names (the bundled dataset's), or empty.
        name: The dataset's name or file.
    """

    train: Split
    val: Optional[Split] = None
    test: Optional[Split] = None
    class_names: tuple[str, ...] = ()
    name: str = "dataset"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def evaluation(self) -> Split:
        """The split a verb evaluates: the test split, else the validation split, else ``x``."""
        return next(s for s in (self.test, self.val, self.train) if s is not None)

    def splits(self) -> list[Split]:
        """The splits present, train first."""
        return [s for s in (self.train, self.val, self.test) if s is not None]

    def with_validation(self, fraction: float = 0.15, *, seed: int = 0) -> "Dataset":
        """This dataset with a validation split: ``x_val`` when present, else ``fraction`` of ``x`` held out.

        Raises:
            DataError: ``x`` has fewer than 2 examples (nothing to hold out).
        """
        if self.val is not None:
            return self
        n = len(self.train)
        n_val = max(1, int(round(n * fraction)))
        if n - n_val < 1:
            raise DataError(f"{self.train.name} holds {n} example(s); need at least 2 to hold out a validation "
                            "split. Add examples, or add x_val/y_val to the file.")
        idx = np.random.default_rng(seed).permutation(n)
        t, v = np.sort(idx[n_val:]), np.sort(idx[:n_val])

        def part(ids: np.ndarray, name: str) -> Split:
            return Split(self.train.x[ids], None if self.train.y is None else self.train.y[ids], name)

        held = f"{round(100 * fraction):g}% of {self.train.name} held out"
        return dataclasses.replace(self, train=part(t, self.train.name), val=part(v, held))

    def for_model(self, input_shape: Optional[Sequence[Optional[int]]] = None, num_classes: Optional[int] = None,
                  *, resize: bool = False) -> "Dataset":
        """Every split checked against a model (see :func:`validate`), resized to it when ``resize``."""
        def fit(s: Optional[Split]) -> Optional[Split]:
            return None if s is None else validate(s, input_shape=input_shape, num_classes=num_classes,
                                                   resize=resize)

        return dataclasses.replace(self, train=fit(self.train), val=fit(self.val), test=fit(self.test))


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
    from sklearn.datasets import load_digits  # scikit-learn: only for the bundled datasets

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
    for ids, name in ((train_idx, "train"), (val_idx, "validation"), (test_idx, "test")):
        ids = np.array(sorted(ids))
        perm = rng.permutation(len(ids))
        ids = ids[perm]
        splits.append(Split(x[ids], y[ids], f"digits {name} split"))
    return Dataset(*splits, class_names=tuple(str(i) for i in range(10)), name="digits")


BUNDLED = {"digits": digits}
"""The bundled datasets by name."""


def get(identifier: str) -> Dataset:
    """Return a bundled dataset by name (only ``"digits"`` today).

    Raises:
        InvalidArgumentError: Unknown name; the message lists the valid ones.
    """
    if identifier in BUNDLED:
        return BUNDLED[identifier]()
    raise unknown_name("dataset", identifier, BUNDLED)


def load(spec: Any) -> Dataset:
    """Read data in edgekd's one convention (see the module docstring) and check it.

    Args:
        spec: A bundled dataset's name (``"digits"``); a ``.npz`` or ``.npy`` file or a folder of them; a
            dict of arrays named as in a ``.npz``; an ``(x, y)`` tuple; an array of inputs; or a
            :class:`Dataset` (returned as is).

    Returns:
        A :class:`Dataset` of float32 inputs and int64 labels (``-1`` = unlabeled); ``val``/``test`` are
        None when the data has no ``x_val``/``x_test``.

    Raises:
        DataError: Missing or unreadable file, no ``x``, empty or non-numeric inputs, NaN/Inf, labels that
            are not one integer class id per input.
    """
    if isinstance(spec, Dataset):
        return spec
    if isinstance(spec, Split):
        return Dataset(validate(spec), name=spec.name)
    if isinstance(spec, dict):
        return _from_arrays({_ALIASES.get(k, k): v for k, v in spec.items()}, source="data")
    if isinstance(spec, tuple) and len(spec) == 2:
        return _from_arrays({"x": spec[0], "y": spec[1]}, source="data")
    if isinstance(spec, np.ndarray):
        return _from_arrays({"x": spec}, source="data")
    if not isinstance(spec, (str, os.PathLike)):
        raise invalid_value("data", "a dataset name, a .npz/.npy file or folder, or arrays", type(spec).__name__)
    path = os.fspath(spec)
    if path in BUNDLED and not os.path.exists(path):
        return BUNDLED[path]()
    if os.path.isdir(path):
        return _from_arrays(_read_folder(path), source=path)
    if not os.path.exists(path):
        raise DataError(f"Data not found: {path}. Pass an existing .npz/.npy file, a folder of them, or a bundled "
                        f"dataset ({', '.join(BUNDLED)}).")
    return _from_arrays(_read_file(path), source=path)


def _key(file_name: str) -> str:
    stem = os.path.splitext(os.path.basename(file_name))[0]
    stem = _ALIASES.get(stem, stem)
    return stem if stem in KEYS else "x"


def _read_file(path: str) -> dict[str, np.ndarray]:
    """The arrays of one ``.npy`` (under its convention name, else ``x``) or ``.npz`` file."""
    _check_file(path)
    try:
        if path.endswith(".npy"):
            return {_key(path): np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        for alias, key in _ALIASES.items():
            if alias in arrays and key not in arrays:
                arrays[key] = arrays.pop(alias)
        return arrays
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path} holds Python objects (object arrays), which edgekd does not unpickle from "
                            "untrusted files. Save numeric arrays with numpy.savez.") from None
        raise DataError(f"Cannot read data file {path}: {str(e).splitlines()[0] if str(e) else 'ValueError'}. "
                        f"{_FILE_FIX}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"Cannot read data file {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
                        f"{_FILE_FIX}") from None


def _read_folder(path: str) -> dict[str, np.ndarray]:
    """A folder's ``.npy``/``.npz`` files as one ``.npz``: arrays of the same name concatenated in name order."""
    names = sorted(n for n in os.listdir(path) if n.endswith((".npy", ".npz")) and not n.startswith("."))
    if not names:
        raise DataError(f"Data folder {path} holds no .npy or .npz files. Put x.npy (and y.npy, x_test.npy …) or "
                        ".npz files with x and y arrays in it.")
    parts: dict[str, list[np.ndarray]] = {}
    for name in names:
        for key, arr in _read_file(os.path.join(path, name)).items():
            parts.setdefault(key, []).append(arr)
    arrays = {}
    for key, arrs in parts.items():
        if len({a.shape[1:] for a in arrs}) > 1:
            raise DataError(f"The {key} arrays in {path} have different example shapes "
                            f"({', '.join(str(a.shape[1:]) for a in arrs)}). Give every file the same shape.")
        arrays[key] = np.concatenate(arrs) if len(arrs) > 1 else arrs[0]
    return arrays


def _from_arrays(arrays: dict[str, Any], *, source: str) -> Dataset:
    if "x" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise DataError(f"{source} has no input array x (found {found}). Save the inputs under the name x "
                        "(labels under y; optional x_val/y_val, x_test/y_test).")
    splits = []
    for xk in ("x", "x_val", "x_test"):
        yk = "y" + xk[1:]
        if xk not in arrays:
            if yk in arrays:
                raise DataError(f"{source} has {yk} but no {xk}. Save the inputs of those labels as {xk}.")
            splits.append(None)
            continue
        splits.append(validate(Split(arrays[xk], arrays.get(yk), f"{xk} of {source}")))
    return Dataset(*splits, name=source)


def _check_file(path: str) -> None:
    """Refuse, by its first bytes, a data file that is not what its name says (before numpy reads it).

    ``.npy`` files start with numpy's magic string and ``.npz`` files are zip archives; anything else (a text
    file, a pickle) is refused here, so numpy never falls back to unpickling it.
    """
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
        raise DataError(f"{path} is {kind}. {_FILE_FIX}")


def validate(split: Split, *, input_shape: Optional[Sequence[Optional[int]]] = None,
             num_classes: Optional[int] = None, resize: bool = False) -> Split:
    """Check one split (the one validator of edgekd's data), casting inputs to float32 and labels to int64.

    Inputs must be a non-empty numeric array without NaN/Inf; labels one integer class id (or one-hot row)
    per input, ``-1`` for an unlabeled example. Given a model's ``input_shape``, examples must have it (a
    single example gets a batch axis); images of another size are resized to it with ``resize=True`` and
    refused otherwise. Given ``num_classes`` (above 1), labels must be below it.

    Args:
        split: The data; its ``name`` is used in messages.
        input_shape: The model's input shape without the batch axis (``None`` entries match any size).
        num_classes: The model's number of output classes.
        resize: Resize images of another height/width/channels to ``input_shape`` (:func:`resize`).

    Returns:
        The checked split.

    Raises:
        ResizeNeededError: Images of another size and ``resize`` is False.
        DataError: Anything else above.
    """
    source, x = split.name, np.asarray(split.x)
    if x.size == 0 or x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{source} is empty (shape {x.shape}). Pass at least one example.")
    if x.dtype.kind not in "fiub":
        raise DataError(f"{source} has dtype {x.dtype}; expected a numeric array (float32 inputs in the model's "
                        "range).")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.argmax(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)))
        raise DataError(f"{source} contains NaN or Inf (first in example {bad}). Clean the data: every input "
                        "must be a finite number.")
    if input_shape is not None:
        x = _to_shape(x, tuple(input_shape), source, resize)
    y = None if split.y is None else _labels(np.asarray(split.y), len(x), source, num_classes)
    return Split(x.astype(np.float32, copy=False), y, source)


def _to_shape(x: np.ndarray, want: tuple, source: str, resize_ok: bool) -> np.ndarray:
    def match(shape: tuple) -> bool:
        return len(shape) == len(want) and all(w is None or w == g for w, g in zip(want, shape))

    if match(tuple(x.shape[1:])):
        return x
    if match(tuple(x.shape)):
        return x[None]  # a single example
    got = tuple(int(d) for d in x.shape[1:])
    if len(want) == 3 and len(got) == 3:
        if resize_ok:
            return resize(x, want)
        raise ResizeNeededError(source, got, want)
    raise DataError(f"{source} has examples of shape {got}, but the model takes {want}. Pass data of shape "
                    f"{want}.")


def _labels(y: np.ndarray, n: int, source: str, num_classes: Optional[int]) -> np.ndarray:
    what = "y" + source[1:] if source.startswith("x") else f"the labels of {source}"  # y_test of data.npz
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows; an all-zero row is an unlabeled example (-1)
        y = np.where(np.any(y != 0, axis=1), y.argmax(axis=1), -1)
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise DataError(f"{source} has {n} inputs but {y.shape[0]} labels. Pass one label per input.")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.equal(np.mod(y, 1), 0))):
        raise DataError(f"{what} must be integer class ids (-1 for unlabeled); got dtype {y.dtype}.")
    y = y.astype(np.int64)
    lo, hi = int(y.min()), int(y.max())
    classes = int(num_classes) if num_classes is not None and int(num_classes) > 1 else None
    if lo < -1 or (classes is not None and hi >= classes):
        want = f"0..{classes - 1}" if classes else "class ids from 0"
        raise DataError(f"{what} span {lo}..{hi}" + (f" but the model predicts {classes} classes" if classes else "")
                        + f". Use labels {want} (one per output unit; -1 for an unlabeled example).")
    return y


def resize(x: Any, input_shape: Sequence[Optional[int]]) -> np.ndarray:
    """Images resized (and channels converted) to a model's input shape, as a student is trained on them.

    The same operation as :func:`edgekd.distill.adapt_inputs` inside distillation (bilinear, antialiased
    when downscaling; RGB → grayscale by luminance), so a lower-resolution student is evaluated, calibrated
    and fed on the device with the inputs it learnt from.

    Args:
        x: Images ``(N, H, W, C)``.
        input_shape: The model's ``(H, W, C)``.

    Returns:
        float32 images ``(N, *input_shape)``; ``x`` itself when it already has that shape or is not images.
    """
    x = np.asarray(x)
    want = tuple(input_shape)
    if len(want) != 3 or x.ndim != 4 or all(w is None or w == g for w, g in zip(want, x.shape[1:])):
        return x
    # TensorFlow (through the distiller's adapter) loads only when images really change size.
    from edgekd.distill.distiller import adapt_inputs  # imports TensorFlow: loaded on first use

    out = [np.asarray(adapt_inputs(x[i:i + 4096].astype(np.float32), want), np.float32)
           for i in range(0, len(x), 4096)]
    return np.concatenate(out)
