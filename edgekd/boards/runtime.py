"""TFLM runtimes: what each TFLM distribution the generated firmware links can compute.

A firmware target does not link "TFLM" in the abstract but one distribution of
it at one version — the Arduino sketch and the PlatformIO project link the
Chirale_TensorFLowLite library (CMSIS-NN kernels), the ESP-IDF app links
Espressif's esp-tflite-micro component (ESP-NN kernels). They differ in the ops
their ``MicroMutableOpResolver`` offers and in what their kernels compute (e.g.
per-channel quantized FULLY_CONNECTED). Each runtime is a TOML file in
``runtimes/`` next to this module; its facts are read off the real source tree
by :func:`tree_facts`, and a test compares the two wherever a tree is present.

Example:
    >>> from edgekd.boards import runtime
    >>> runtime.for_target("arduino").per_channel_fully_connected
    False
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import Optional

from edgekd.errors import BoardError, unknown_name

_DIR = Path(__file__).resolve().parent / "runtimes"
_METHOD = re.compile(r"^\s*TfLiteStatus\s+(Add\w+)\s*\(", re.MULTILINE)
# MicroMutableOpResolver methods that register no particular op.
_GENERIC_METHODS = frozenset({"AddBuiltin", "AddCustom"})


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One TFLM distribution at one version, as the firmware links it.

    Attributes:
        id: Registry id, ``<distribution>-<version>`` in lower case (``"chirale-2.0.0"``).
        distribution: The distribution's own name (``"Chirale_TensorFLowLite"``).
        version: Its version.
        targets: Firmware targets that link it (``"arduino"``, ``"platformio"``, ``"esp-idf"``).
        kernels: Optimized kernels it builds with (``"cmsis-nn"``, ``"esp-nn"``, ``"reference"``).
        per_channel_fully_connected: Whether its FULLY_CONNECTED kernel applies a
            per-channel weight scale; when False, Dense layers must be quantized per-tensor.
        resolver_methods: The ``MicroMutableOpResolver::Add…()`` methods it has.
        install: The command that installs it.
        upstream: Where its sources come from (repository and commit).
        path: The data file.
    """

    id: str
    distribution: str
    version: str
    targets: tuple[str, ...]
    kernels: str
    per_channel_fully_connected: bool
    resolver_methods: frozenset[str]
    install: str
    upstream: str
    path: str

    @property
    def label(self) -> str:
        """``"<distribution> <version>"``, as messages name it."""
        return f"{self.distribution} {self.version}"


def _load(path: Path) -> Runtime:
    with open(path, "rb") as f:
        d = tomllib.load(f)
    try:
        return Runtime(
            id=str(d["id"]), distribution=str(d["distribution"]), version=str(d["version"]),
            targets=tuple(str(t) for t in d["targets"]), kernels=str(d["kernels"]),
            per_channel_fully_connected=bool(d["per_channel_fully_connected"]),
            resolver_methods=frozenset(str(m) for m in d["ops"]), install=str(d["install"]),
            upstream=str(d["upstream"]), path=str(path),
        )
    except KeyError as e:  # a shipped file is broken: a packaging bug, not user input
        raise BoardError(f"TFLM runtime file {path} lacks {e.args[0]!r}; reinstall edgekd.") from None


def all_runtimes() -> list[Runtime]:
    """Every shipped runtime, by id."""
    return [_load(p) for p in sorted(_DIR.glob("*.toml"))]


def list_runtimes() -> list[str]:
    """Ids of the shipped runtimes."""
    return [r.id for r in all_runtimes()]


def get(identifier: str | Runtime) -> Runtime:
    """A runtime by id (``"chirale-2.0.0"``, ``"esp-tflite-micro-1.4.0"``).

    Raises:
        InvalidArgumentError: Unknown id; the message lists the valid ones.
    """
    if isinstance(identifier, Runtime):
        return identifier
    for r in all_runtimes():
        if r.id == str(identifier).strip().lower():
            return r
    raise unknown_name("TFLM runtime", str(identifier), list_runtimes())


def for_target(target: str) -> Runtime:
    """The runtime a firmware target links (``"arduino"`` → Chirale_TensorFLowLite)."""
    for r in all_runtimes():
        if target in r.targets:
            return r
    raise unknown_name("firmware target", target, sorted({t for r in all_runtimes() for t in r.targets}))


@dataclasses.dataclass(frozen=True)
class TreeFacts:
    """What a TFLM source tree says about itself (see :func:`tree_facts`).

    Attributes:
        root: The tree.
        distribution: ``"Chirale_TensorFLowLite"``, ``"esp-tflite-micro"`` or
            ``"tflite-micro"`` (any other tree holding TFLM's sources).
        version: The version its metadata gives, or ``None``.
        resolver_methods: ``Add…()`` methods of its ``micro_mutable_op_resolver.h``.
        per_channel_fully_connected: Whether its FULLY_CONNECTED op data keeps a per-channel flag.
        kernels: ``"cmsis-nn"`` or ``"esp-nn"`` when the tree has those kernels, else ``"reference"``.
        source_root: The folder holding ``tensorflow/`` (``src/`` in an Arduino library).
    """

    root: Path
    distribution: str
    version: Optional[str]
    resolver_methods: frozenset[str]
    per_channel_fully_connected: bool
    kernels: str
    source_root: Path

    def runtime(self) -> Optional[Runtime]:
        """The shipped runtime with this distribution and version, if any."""
        for r in all_runtimes():
            if r.distribution.lower() == self.distribution.lower() and r.version == self.version:
                return r
        return None


def _meta(path: Path, pattern: str) -> Optional[str]:
    if not path.is_file():
        return None
    m = re.search(pattern, path.read_text(errors="replace"), re.MULTILINE)
    return m.group(1).strip().strip("'\"") if m else None


def tree_facts(root: str | os.PathLike) -> TreeFacts:
    """Read a TFLM source tree's distribution, version, op set and FULLY_CONNECTED kind.

    Args:
        root: A Chirale_TensorFLowLite library folder, an esp-tflite-micro
            component folder, or a tflite-micro tree (``create_tflm_tree.py`` output).

    Returns:
        The :class:`TreeFacts`.

    Raises:
        BoardError: The folder holds no ``tensorflow/lite/micro/micro_mutable_op_resolver.h``.
    """
    root = Path(root).expanduser().resolve()
    source_root = next((c for c in (root / "src", root)
                        if (c / "tensorflow/lite/micro/micro_mutable_op_resolver.h").is_file()), None)
    if source_root is None:
        raise BoardError(f"{root} is not a TFLM source tree (no tensorflow/lite/micro/micro_mutable_op_resolver.h); "
                         "pass the Chirale_TensorFLowLite library folder or an esp-tflite-micro component folder.")
    micro = source_root / "tensorflow/lite/micro"
    header = (micro / "micro_mutable_op_resolver.h").read_text(errors="replace")
    methods = frozenset(_METHOD.findall(header)) - _GENERIC_METHODS
    fc = micro / "kernels" / "fully_connected.h"
    per_channel = fc.is_file() and "is_per_channel" in fc.read_text(errors="replace")
    name = _meta(root / "library.properties", r"^name\s*=(.*)$")
    if name:
        distribution, version = name, _meta(root / "library.properties", r"^version\s*=(.*)$")
    elif (root / "idf_component.yml").is_file():
        distribution, version = "esp-tflite-micro", _meta(root / "idf_component.yml", r"^version:\s*(.*)$")
    else:
        distribution, version = "tflite-micro", None
    kernels = ("cmsis-nn" if (micro / "kernels" / "cmsis_nn").is_dir()
               else "esp-nn" if (micro / "kernels" / "esp_nn").is_dir() else "reference")
    return TreeFacts(root=root, distribution=distribution, version=version, resolver_methods=methods,
                     per_channel_fully_connected=per_channel, kernels=kernels, source_root=source_root)
