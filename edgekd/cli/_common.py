"""Helpers shared by the CLI commands: option parsing, data loading, output."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import click

from edgekd.errors import InvalidArgumentError


UNSAFE_HELP = ("Load model files that need code to load (Lambda layers, custom classes, SavedModel ops with side "
               "effects). Only for files you trust.")


def unsafe_option(fn: Any) -> Any:
    """The ``--unsafe`` flag every command that loads a Keras model offers."""
    return click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)(fn)


def check_keras_path(path: str, *, what: str = "Model file") -> None:
    """Cheap checks of a Keras model path (before TensorFlow is imported): exists; a directory is a SavedModel."""
    from edgekd.errors import ModelLoadError

    if not path:
        raise InvalidArgumentError(f"{what} path is empty. Pass a .keras/.h5 file or a SavedModel directory.")
    if not os.path.exists(path):
        raise ModelLoadError(f"{what} not found: {path}. Pass the path of an existing .keras/.h5 file or "
                             "SavedModel directory.")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ModelLoadError(f"{path} is a directory without saved_model.pb. Pass a .keras/.h5 file or a "
                             "SavedModel directory.")


def load_keras(path: str, *, unsafe: bool, input_shape: Optional[tuple[int, ...]] = None) -> Any:
    """``edgekd.convert.load_model`` for a command: a refusal in safe mode names ``--unsafe``."""
    from edgekd.convert import load_model
    from edgekd.errors import UnsafeModelError

    try:
        return load_model(path, safe_mode=not unsafe, input_shape=input_shape)
    except UnsafeModelError as e:
        raise e.with_opt_in("pass --unsafe") from None


def check_output(path: str, option: str = "-o/--output") -> None:
    """Refuse an output directory that cannot be written: empty (it would mean the current directory), a
    file, or below something that is not a writable directory."""
    from edgekd.errors import OutputError

    if not str(path).strip():
        raise InvalidArgumentError(f"Invalid value for {option}: {path!r}. Pass a path (use . for the current "
                                   "directory).")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"Output {path} exists and is not a directory. Choose a directory path.")
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        shown = probe if os.path.isabs(path) else os.path.relpath(probe)
        raise OutputError(f"Cannot write to {path}: {shown} is not a writable directory. Choose an output path "
                          "in a directory you can write to.")


def parse_shape(text: Optional[str], option: str = "--input-shape") -> Optional[tuple[int, ...]]:
    """Parse ``H,W,C`` into a tuple of positive ints."""
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in str(text).replace("x", ",").split(",") if p.strip())
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise InvalidArgumentError(f"Invalid value for {option}: {text!r}. Expected positive integers like 8,8,1.")
    return dims


def load_labels(path: Optional[str]) -> Optional[list[str]]:
    """Class labels from a text file (one per line) or a JSON list."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"Labels file not found: {path}. Pass a text file with one label per line.")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidArgumentError(f"Labels file {path} is not valid JSON ({e.msg}). Pass a JSON list.") from None
        if not isinstance(labels, list):
            raise InvalidArgumentError(f"Labels file {path} must hold a JSON list of strings.")
        return [str(x) for x in labels]
    labels = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not labels:
        raise InvalidArgumentError(f"Labels file {path} is empty. Put one label per line.")
    return labels


def load_data(dataset: Optional[str], data: Optional[str], *, option: str = "--data") -> Any:
    """The data named by ``--dataset NAME`` or ``--data FILE``: (train Split, eval Split, class names).

    With ``--dataset digits``, training/calibration uses the train split and
    evaluation the test split. With a file, both use the file's arrays
    (``x_val``/``y_val`` or ``x_test``/``y_test`` for evaluation when present).
    """
    from edgekd import datasets

    if dataset and data:
        raise InvalidArgumentError(f"Pass either --dataset or {option}, not both.")
    if dataset:
        ds = datasets.get(dataset)
        return ds.train, ds.test, list(ds.class_names)
    if data:
        split = datasets.load_arrays(data)
        evaluation = split
        if data.endswith(".npz"):
            import numpy as np

            with np.load(data, allow_pickle=False) as f:
                for xk, yk in (("x_val", "y_val"), ("x_test", "y_test")):
                    if xk in f.files:
                        evaluation = datasets.validate_split(
                            datasets.Split(f[xk], f[yk] if yk in f.files else None), source=f"{data}:{xk}")
                        break
        return split, evaluation, None
    return None, None, None


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
