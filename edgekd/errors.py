"""Typed exceptions of edgekd.

Every error a user can cause derives from :class:`EdgeKDError`. Its message
is one line that names the problem and the fix; the CLI prints it as
``error: <message>`` and exits with status 2 (bad input). Budget failures are
not exceptions: ``edgekd check`` reports them and exits with status 1.
"""

from __future__ import annotations

from typing import Any, Iterable


class EdgeKDError(Exception):
    """Base class of every error edgekd raises on bad input.

    The message is a single line naming the problem and the fix.
    """

    exit_code = 2


class InvalidArgumentError(EdgeKDError, ValueError):
    """An argument has an invalid value."""


class ModelLoadError(EdgeKDError):
    """A model file is missing, corrupt, or not a model."""


class UnsafeModelError(ModelLoadError):
    """A model file needs code to load (a Lambda, a custom class, a side-effecting op) and safe mode is on.

    Attributes:
        path: The model file.
        reason: What in it needs code.
        opt_in: How the caller turns safe mode off (``--unsafe`` on the command line).
    """

    API_OPT_IN = "load it with edgekd.convert.load_model(path, safe_mode=False)"

    def __init__(self, path: str, reason: str, *, opt_in: str = API_OPT_IN) -> None:
        self.path, self.reason, self.opt_in = path, reason, opt_in
        super().__init__(f"{path} needs code to load: {reason}. Refused in safe mode; "
                         f"if you trust the file, {opt_in}.")

    def with_opt_in(self, opt_in: str) -> "UnsafeModelError":
        """The same refusal, naming another way to opt in (e.g. ``pass --unsafe``)."""
        return UnsafeModelError(self.path, self.reason, opt_in=opt_in)


class DataError(EdgeKDError, ValueError):
    """Data (representative, transfer, validation) is empty or of the wrong shape/dtype."""


class ResizeNeededError(DataError):
    """Images of another resolution than the model's input, and resizing was not asked for.

    Attributes:
        source: What the data is (``x_test of data.npz``).
        got: The examples' shape.
        want: The model's input shape.
        opt_in: How the caller asks for resizing (``--resize`` on the command line).
    """

    API_OPT_IN = "pass resize=True (edgekd.datasets.resize, bilinear as the student was trained)"

    def __init__(self, source: str, got: tuple, want: tuple, *, opt_in: str = API_OPT_IN) -> None:
        self.source, self.got, self.want, self.opt_in = source, tuple(got), tuple(want), opt_in
        super().__init__(f"{source} has examples of shape {self.got}, but the model takes {self.want}. To resize "
                         f"them to the model's input, {opt_in}; or pass data of shape {self.want}.")

    def with_opt_in(self, opt_in: str) -> "ResizeNeededError":
        """The same refusal, naming another way to ask for resizing (e.g. ``pass --resize``)."""
        return ResizeNeededError(self.source, self.got, self.want, opt_in=opt_in)


class ConversionError(EdgeKDError):
    """A model cannot be converted (e.g. an op cannot be fully int8-quantized)."""


class AccuracyDropError(ConversionError):
    """The converted model lost more accuracy than allowed (a gate, like a budget: exit status 1)."""

    exit_code = 1


class TFLiteFileError(EdgeKDError):
    """A ``.tflite`` file is not a valid, intact TFLite flatbuffer."""


class UnsupportedOpError(EdgeKDError):
    """A model uses an op the target runtime (TFLM) does not provide."""


class UnsupportedLayerError(EdgeKDError):
    """A Keras layer cannot be handled (profiled, shrunk, bridged)."""


class BoardError(EdgeKDError):
    """An unknown board id or an invalid board profile file."""


class OutputError(EdgeKDError):
    """An output path cannot be written."""


class StorageError(EdgeKDError):
    """A study's storage (database URL) cannot be opened: unreachable server, bad credentials, unknown database."""


class ToolNotFoundError(EdgeKDError):
    """An external tool (arduino-cli, idf.py, pio, esptool.py) is not installed."""


class MissingExtraError(EdgeKDError, ImportError):
    """An optional dependency is not installed."""


class InstallationError(EdgeKDError):
    """edgekd's own files (firmware templates, package data) are missing or disagree with its code: reinstall."""


class InterpreterError(EdgeKDError):
    """An interpreter (LiteRT, TFLM) could not run the model: it failed, crashed or hung in its child process.

    A failure report about the model, like a budget failure: exit status 1.
    """

    exit_code = 1


class TFLMCrashError(InterpreterError):
    """TFLM's interpreter crashed in its child process."""


class LiteRTError(InterpreterError):
    """LiteRT could not run the model (error, crash or time-out in its child process)."""


def invalid_value(name: str, expected: str, received: Any) -> InvalidArgumentError:
    """Build the Keras-style message for an invalid argument value.

    Args:
        name: The argument's name.
        expected: What a valid value looks like.
        received: The value received.

    Returns:
        An :class:`InvalidArgumentError` to raise.
    """
    return InvalidArgumentError(
        f"Invalid value for argument `{name}`. Expected {expected}. "
        f"Received {name}={received!r}"
    )


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> InvalidArgumentError:
    """Build the message for a name not found in a registry, listing valid names."""
    names = ", ".join(sorted(valid))
    return InvalidArgumentError(f"Unknown {kind} {name!r}. Valid {kind}s: {names}")
