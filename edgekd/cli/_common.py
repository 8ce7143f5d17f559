"""Helpers shared by the CLI commands: option parsing, data loading, output."""

from __future__ import annotations

import json
import os
from typing import Any, Optional
from collections.abc import Callable

import click
from rich.console import Console

from edgekd import boards, datasets, students
from edgekd.errors import InvalidArgumentError
from edgekd.convert import load_model
from edgekd.errors import DataError, ModelLoadError, OutputError, ResizeNeededError, TFLiteFileError, UnsafeModelError
from edgekd.model import ConvertedModel


UNSAFE_HELP = ("Load model files that need code to load (Lambda layers, custom classes, SavedModel ops with side "
               "effects). Only for files you trust.")


def unsafe_option(fn: Any) -> Any:
    """The ``--unsafe`` flag every command that loads a Keras model offers."""
    return click.option("--unsafe", is_flag=True, help=UNSAFE_HELP)(fn)


class StudentChoice(click.Choice):
    """The student architectures of :mod:`edgekd.students`' registry, read when the option is used (plus ``extra``)."""

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self.extra = tuple(extra)
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*students.names(), *self.extra)

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice.__init__ assigns it: the registry is the source
        pass


def student_arch_help() -> str:
    """Help of ``--student-arch``, listing the registered architectures."""
    return (f"Student from the zoo: NAME[:k=v,...] with NAME one of {', '.join(students.names())}, "
            "e.g. ds_cnn:width=0.5 (docs/students.md).")


class _LazyHelpOption(click.Option):
    """An option whose help is computed when ``--help`` is shown (not when the command module is imported)."""

    def __init__(self, *args: Any, help_fn: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._help_fn = help_fn

    def get_help_record(self, ctx: click.Context) -> Any:
        self.help = self._help_fn()
        return super().get_help_record(ctx)


def board_options(*, ids: Optional[Callable[[], list[str]]] = None,
                  default: Optional[str] = None) -> Callable[[Any], Any]:
    """``--board/-b ID`` and ``--board-file FILE.toml``: how every command that takes a board names it.

    The command receives ``board_id`` and ``board_file``; :func:`resolve_board` makes them a Board.

    Args:
        ids: The board ids the command can use, listed in its ``--help`` (default: every shipped board).
        default: Board used when neither option is given (None: one of them is required).
    """
    def help_text() -> str:
        listed = ", ".join(ids() if ids is not None else boards.list_boards())
        return (f"Board id (or alias): {listed}; see `edgekd boards`."
                + (f"  [default: {default}]" if default else ""))

    def decorate(fn: Any) -> Any:
        fn = click.option("--board-file", "board_file", default=None, metavar="FILE.toml",
                          help="Your own board profile instead of --board (.toml, see docs/boards.md).")(fn)
        return click.option("--board", "-b", "board_id", default=None, metavar="ID", cls=_LazyHelpOption,
                            help_fn=help_text)(fn)
    return decorate


def resolve_board(board_id: Optional[str], board_file: Optional[str], *,
                  ids: Optional[Callable[[], list[str]]] = None, default: Optional[str] = None,
                  lookup: Optional[Callable[[str], Any]] = None) -> Any:
    """The :class:`edgekd.boards.Board` that ``--board`` / ``--board-file`` name (exactly one of them).

    Args:
        board_id: ``--board``.
        board_file: ``--board-file``.
        ids: As :func:`board_options` (listed when neither option is given).
        default: As :func:`board_options`.
        lookup: Turns an id into a Board (default :func:`edgekd.boards.get`; the command's own
            lookup names the boards it can use when the id is unknown).
    """
    if board_id is None and board_file is None and default is not None:
        board_id = default
    if (board_id is None) == (board_file is None):
        listed = ", ".join(ids() if ids is not None else boards.list_boards())
        raise InvalidArgumentError("Pass exactly one of --board ID or --board-file FILE.toml "
                                   f"(known boards: {listed}).")
    if board_file is not None:
        return boards.load_board_file(board_file)
    return (lookup or boards.get)(board_id)


def check_keras_path(path: str, *, what: str = "Model file") -> None:
    """Cheap checks of a Keras model path (before TensorFlow is imported): exists; a directory is a SavedModel."""
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
    try:
        return load_model(path, safe_mode=not unsafe, input_shape=input_shape)
    except UnsafeModelError as e:
        raise e.with_opt_in("pass --unsafe") from None


def check_output(path: str, option: str = "-o/--output") -> None:
    """Refuse an output directory that cannot be written: empty (it would mean the current directory), a
    file, or below something that is not a writable directory."""
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


RESIZE_HELP = ("Resize images of another size to the model's input (bilinear, as a lower-resolution student is "
               "trained on them; edgekd.datasets.resize).")


def resize_option(fn: Any) -> Any:
    """The ``--resize`` flag of every command that feeds data to a model of another resolution."""
    return click.option("--resize", is_flag=True, help=RESIZE_HELP)(fn)


def load_dataset(dataset: Optional[str], data: Optional[str], *, option: str = "--data") -> Any:
    """The :class:`edgekd.datasets.Dataset` named by ``--dataset NAME`` or ``--data FILE|FOLDER|NAME`` (or None)."""
    if dataset and data:
        raise InvalidArgumentError(f"Pass either --dataset or {option}, not both.")
    if dataset:
        return datasets.get(dataset)
    return datasets.load(data) if data else None


def data_for_model(ds: Any, *, input_shape: Any, num_classes: Optional[int] = None, resize: bool = False,
                   source_shape: Any = None, print_fn: Any = None, offer_resize: bool = True) -> Any:
    """``ds`` checked against a model; images resized to its input with ``--resize`` or when the model was
    converted from data of their shape (``source_shape``). A resize is reported through ``print_fn``; a
    command without ``--resize`` (``offer_resize=False``) asks for data of the model's shape instead."""
    adapter = source_shape is not None and tuple(source_shape) == ds.input_shape
    try:
        out = ds.for_model(input_shape, num_classes, resize=resize or adapter)
    except ResizeNeededError as e:
        if not offer_resize:
            raise DataError(f"{e.source} has examples of shape {e.got}, but the model takes {e.want}. Pass data "
                            f"of shape {e.want}.") from None
        raise e.with_opt_in("pass --resize") from None
    if print_fn is not None and out.input_shape != ds.input_shape:
        why = "the model's adapter: it was converted from data of that shape" if adapter else "--resize"
        print_fn(f"Resized {ds.name} from {ds.input_shape} to the model's input {out.input_shape} ({why}).")
    return out


def tflite_model(model: Any) -> Any:
    """MODEL (a ``.tflite`` path) as a :class:`edgekd.model.ConvertedModel` with its adapter: the source shape
    ``edgekd export`` recorded in the ``export.json`` beside it (same sha256). None when the file does not read
    (the stage reports it, naming the file)."""
    try:
        m = ConvertedModel.coerce(model)
        m.parsed.output_tensors
    except TFLiteFileError:
        return None
    if m.source_shape is None and isinstance(model, (str, os.PathLike)):
        try:
            with open(os.path.join(os.path.dirname(os.fspath(model)), "export.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = None
        shape = meta.get("source_shape") if isinstance(meta, dict) and meta.get("sha256") == m.parsed.sha256 else None
        if isinstance(shape, list) and shape and all(type(d) is int and 0 < d < 1 << 16 for d in shape):
            m = m.with_(source_shape=tuple(shape))
    return m


def data_for_tflite(ds: Any, model: Any, *, resize: bool = False, print_fn: Any = None) -> Any:
    """:func:`data_for_model` for a ``.tflite`` MODEL (path or object, :func:`tflite_model`): its input shape,
    classes and adapter. A model file that does not read is left to the stage to report."""
    m = tflite_model(model)
    if m is None:
        return ds
    outputs = m.parsed.output_tensors
    classes = int(outputs[0].shape[-1]) if len(outputs) == 1 and outputs[0].shape else None
    return data_for_model(ds, input_shape=m.input_shape, num_classes=classes, resize=resize,
                          source_shape=m.source_shape, print_fn=print_fn)


def console(stderr: bool = False) -> Any:
    return Console(stderr=stderr, highlight=False)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
