"""Run generated firmware without a board: the project, unchanged, against a real TFLM tree.

:func:`run_on_host` writes a rendered :class:`edgekd.firmware.Project`, builds
the TFLM distribution its target links (from a source tree: :func:`find_tree`)
into a cached host library, links the project with the board-SDK stand-ins of
``sdk/`` and runs it: ``setup()`` once, ``loop()`` once per embedded sample.
What the firmware prints — the arena it used, per sample the class, whether
every output byte matched the host's TFLM, and the output bytes — is parsed
into a :class:`FirmwareRun`.

Example:
    >>> run = run_on_host(project)                      # doctest: +SKIP
    >>> run.max_diff_steps, run.arena_used_bytes        # doctest: +SKIP
    (0, 1252)
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgekd.boards import runtime as runtimes
from edgekd.emulate.build import HOST, SDK, BuildError, build_library, link_project
from edgekd import _tmp
from edgekd.errors import EdgeKDError
from edgekd.export.ops import TFLM_CUSTOM, TFLM_RESOLVER
from edgekd.firmware import write_project

__all__ = ["FirmwareRun", "FirmwareRunError", "OutputComparison", "find_tree", "parse_output", "run_on_host",
           "BuildError"]

_ARENA = re.compile(r"^edgekd: arena used (\d+) of (\d+) bytes$", re.MULTILINE)
_SAMPLE = re.compile(r"^sample (\d+): predicted (-?\d+) .*\| host (-?\d+) (MATCH|MISMATCH) max_diff (\d+)",
                     re.MULTILINE)
_OUT = re.compile(r"^out (\d+) (\d+) ([0-9a-f]*)$", re.MULTILINE)


class FirmwareRunError(EdgeKDError):
    """The firmware did not run to the end (error line, crash or time limit): exit status 1."""

    exit_code = 1


class OutputComparison:
    """The device's int8 outputs against the expected ones (``outputs`` and ``expected``, ``(N, outputs)``)."""

    outputs: np.ndarray
    expected: np.ndarray

    @property
    def diff_steps(self) -> np.ndarray:
        """|device - expected| per sample and output, in quantized steps."""
        return np.abs(self.outputs.astype(np.int16) - self.expected.astype(np.int16))

    @property
    def max_diff_steps(self) -> int:
        """The largest difference over all samples and outputs."""
        return int(self.diff_steps.max()) if self.outputs.size else 0

    @property
    def bit_exact(self) -> bool:
        """Every output byte equals the expected one."""
        return self.max_diff_steps == 0

    def first_difference(self) -> Optional[tuple[int, int, int, int]]:
        """(sample, element, device value, expected value) of the first differing byte, or None."""
        idx = np.argwhere(self.diff_steps > 0)
        if not len(idx):
            return None
        s, k = (int(v) for v in idx[0])
        return s, k, int(self.outputs[s, k]), int(self.expected[s, k])


@dataclasses.dataclass(frozen=True)
class FirmwareRun(OutputComparison):
    """What one run of the generated firmware printed.

    Attributes:
        machine: ``"host"`` (or an emulated board).
        runtime: The TFLM runtime linked (:mod:`edgekd.boards.runtime` id).
        kernels: Kernels that ran (``"cmsis-nn"``, ``"reference"``).
        arena_used_bytes: ``interpreter->arena_used_bytes()`` as the firmware printed it.
        predicted: Class per sample.
        outputs: int8 output tensor per sample, ``(N, outputs)``.
        expected: What TFLM's Python interpreter computed for the same inputs.
        device_match: The firmware's own verdict per sample (class and bytes within tolerance).
        log: Everything it printed.
    """

    machine: str
    runtime: str
    kernels: str
    arena_used_bytes: int
    predicted: tuple[int, ...]
    outputs: np.ndarray
    expected: np.ndarray
    device_match: tuple[bool, ...]
    log: str


def _trees_from_env(tflm: Optional[str | os.PathLike]) -> list[Path]:
    found: list[Path] = []
    if tflm:
        found.append(Path(tflm).expanduser())
    for var in ("EDGEKD_TFLM", "EDGEKD_TFLM_TREES"):
        found += [Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p.strip()]
    libs = Path.home() / "Arduino" / "libraries"
    found += [libs / n for n in ("Chirale_TensorFLowLite", "Chirale_TensorFlowLite")]
    return [p for p in dict.fromkeys(found) if p.is_dir()]


def find_tree(runtime: runtimes.Runtime | str, tflm: Optional[str | os.PathLike] = None,
              extra: Sequence[Path] = ()) -> runtimes.TreeFacts:
    """The TFLM source tree of ``runtime``: ``tflm``, ``$EDGEKD_TFLM`` (folders separated by
    ``os.pathsep``), ``~/Arduino/libraries/Chirale_TensorF[Ll]owLite``, then ``extra``.

    Raises:
        FirmwareRunError: No tree of that distribution and version is found (exit 2 in the CLI);
            the message gives the command that installs one.
    """
    rt = runtimes.get(runtime)
    for tree in [*_trees_from_env(tflm), *extra]:
        try:
            facts = runtimes.tree_facts(tree)
        except EdgeKDError:
            continue
        if facts.runtime() is not None and facts.runtime().id == rt.id:
            return facts
    err = FirmwareRunError(f"No {rt.label} source tree found (`tflm`, EDGEKD_TFLM, or "
                           f"~/Arduino/libraries): install it with `{rt.install}` or pass its folder as `tflm`.")
    err.exit_code = 2
    raise err


def parse_output(log: str, num_samples: int, num_outputs: int) -> tuple[int, list[int], np.ndarray, list[bool]]:
    """(arena used, predicted classes, output bytes (N, outputs), device verdicts) from the firmware's output.

    Raises:
        FirmwareRunError: An ``error:`` line, or fewer samples than expected.
    """
    err = next((ln for ln in log.splitlines() if ln.startswith("error:")), None)
    if err:
        raise FirmwareRunError(f"The firmware reported: {err}")
    arena = _ARENA.search(log)
    if arena is None:
        raise FirmwareRunError("The firmware never printed its arena use: setup() did not finish.")
    predicted, verdicts = {}, {}
    for m in _SAMPLE.finditer(log):
        predicted[int(m.group(1))] = int(m.group(2))
        verdicts[int(m.group(1))] = m.group(4) == "MATCH"
    outputs = np.zeros((num_samples, num_outputs), np.int8)
    seen = np.zeros((num_samples, num_outputs), bool)
    for m in _OUT.finditer(log):
        i, start, data = int(m.group(1)), int(m.group(2)), bytes.fromhex(m.group(3))
        if i < num_samples:
            outputs[i, start:start + len(data)] = np.frombuffer(data, np.int8)
            seen[i, start:start + len(data)] = True
    missing = [i for i in range(num_samples) if i not in predicted or not seen[i].all()]
    if missing:
        raise FirmwareRunError(f"The firmware printed no complete result for sample {missing[0]} "
                               f"({len(missing)} of {num_samples} missing).")
    return (int(arena.group(1)), [predicted[i] for i in range(num_samples)], outputs,
            [verdicts[i] for i in range(num_samples)])


def run_on_host(project, *, tflm: Optional[str | os.PathLike] = None, extra_trees: Sequence[Path] = (),
                timeout: float = 120.0, workdir: Optional[str | os.PathLike] = None) -> FirmwareRun:
    """Build a rendered project against its runtime's real TFLM tree and run it on this machine.

    A compiled-engine project (``render(..., engine="compiled")``) builds the same way: its
    ``model_engine`` source is one of the project's files, linked with the library built for the
    model's ops (``project.ops``), and ``arena_used_bytes`` is then its static activation buffer.

    Args:
        project: An :class:`edgekd.firmware.Project` (from :func:`edgekd.firmware.render`).
        tflm: The TFLM source tree (see :func:`find_tree`).
        extra_trees: More folders to look for the tree in, after the usual places.
        timeout: Seconds the program may run.
        workdir: Where to write the project and the executable (a temporary folder when None).

    Returns:
        The :class:`FirmwareRun`.

    Raises:
        FirmwareRunError: No tree, or the firmware failed, crashed or timed out.
        BuildError: The project does not compile or link.
    """
    facts = find_tree(project.runtime, tflm, extra_trees)
    fb_ops = _op_names(project)
    library = build_library(facts, HOST, ops=fb_ops)
    with tempfile.TemporaryDirectory(prefix="edgekd_fw_", dir=_tmp.process_dir()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        write_project(project, work / "project")
        exe = link_project(work / "project", target=project.target, name=project.name, library=library,
                           machine_sources=[SDK / "common" / "serial_wire.cc", SDK / "host" / "sdk.cc",
                                            SDK / "host" / "harness.cc"],
                           out=work / "firmware")
        n = len(project.host_predictions)
        try:
            proc = subprocess.run([str(exe), str(n)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareRunError(f"The firmware did not finish {n} samples in {timeout:.0f} s.") from None
        if proc.returncode != 0:
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"status {proc.returncode}"
            raise FirmwareRunError(f"The firmware crashed ({how}); last output: "
                                   f"{(proc.stdout.strip().splitlines() or [''])[-1][:200]}")
    expected = np.asarray(project.expected_outputs, np.int8).reshape(n, -1)
    arena, predicted, outputs, verdicts = parse_output(proc.stdout, n, expected.shape[1])
    kernels = "cmsis-nn" if facts.kernels == "cmsis-nn" else "reference"
    return FirmwareRun(machine="host", runtime=project.runtime, kernels=kernels, arena_used_bytes=arena,
                       predicted=tuple(predicted), outputs=outputs, expected=expected,
                       device_match=tuple(verdicts), log=proc.stdout)


def _op_names(project) -> list[str]:
    by_method = {m: op for op, m in TFLM_RESOLVER.items()}
    by_method.update({m: "CUSTOM:" + code for code, m in TFLM_CUSTOM.items()})
    return [by_method[m] for m in project.ops]
