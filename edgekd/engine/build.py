"""Build and run a compiled engine, and the interpreter beside it, against a real TFLM tree.

:func:`run_engine` links the generated engine with the TFLM library of a tree
(only the kernels and CMSIS-NN functions it calls are pulled in) and runs it
on int8 inputs; :func:`run_interpreter` does the same with ``MicroInterpreter``
and the exported ``model_data``/``model_ops.h``. Both print every output byte,
so the two are compared byte for byte.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgekd import _tmp
from edgekd.emulate.build import HOST, Toolchain, build_library, link_program
from edgekd.errors import EdgeKDError

RUNNERS = Path(__file__).resolve().parent / "runners"


class EngineRunError(EdgeKDError):
    """The compiled engine or the interpreter runner failed, crashed or timed out."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Run:
    """What a runner computed.

    Attributes:
        outputs: Output bytes per input, ``(N, output bytes)`` as uint8.
        log: What it printed.
        executable: The linked program.
    """

    outputs: np.ndarray
    log: str
    executable: Path


def inputs_header(inputs: np.ndarray) -> str:
    """``edgekd_inputs.h``: ``kEdgekdNumInputs`` and ``kEdgekdInputs[N][bytes]`` (raw bytes of each input)."""
    x = np.ascontiguousarray(inputs)
    rows = x.reshape(len(x), -1).view(np.uint8).reshape(len(x), -1)
    body = ",\n".join("  {" + ", ".join(str(int(v)) for v in r) + "}" for r in rows)
    return ("#ifndef EDGEKD_INPUTS_H_\n#define EDGEKD_INPUTS_H_\n"
            f"static const int kEdgekdNumInputs = {len(rows)};\n"
            f"alignas(16) static const unsigned char kEdgekdInputs[{len(rows)}][{rows.shape[1]}] = {{\n{body}\n}};\n"
            "#endif\n")


def _parse(log: str, n: int) -> np.ndarray:
    err = next((ln for ln in log.splitlines() if ln.startswith("error:")), None)
    if err:
        raise EngineRunError(f"The runner reported: {err}")
    rows = {}
    for ln in log.splitlines():
        if ln.startswith("out "):
            _, i, hexs = ln.split(" ", 2)
            rows[int(i)] = np.frombuffer(bytes.fromhex(hexs.strip()), np.uint8)
    if len(rows) != n:
        raise EngineRunError(f"The runner printed {len(rows)} of {n} outputs.")
    return np.stack([rows[i] for i in range(n)])


def _execute(exe: Path, n: int, timeout: float, runner: Optional[Sequence[str]]) -> tuple[np.ndarray, str]:
    cmd = [*(runner or ()), str(exe)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EngineRunError(f"{exe.name} did not finish in {timeout:.0f} s.") from None
    if proc.returncode != 0:
        raise EngineRunError(f"{exe.name} failed (status {proc.returncode}): "
                             f"{(proc.stdout.strip().splitlines() or [''])[-1][:200]} {proc.stderr[-300:]}")
    return _parse(proc.stdout, n), proc.stdout


def run_engine(engine: Any, inputs: np.ndarray, *, facts: Any, toolchain: Toolchain = HOST,
               workdir: Optional[Path] = None, timeout: float = 120.0) -> Run:
    """Compile ``engine`` (a :class:`edgekd.engine.CompiledEngine`) against ``facts``' tree and run ``inputs``.

    Args:
        engine: The compiled engine (its name must be ``"model"``).
        inputs: Int8 inputs, ``(N, *input shape)``.
        facts: The TFLM tree (:func:`edgekd.emulate.find_tree`).
        toolchain: Host (default) compilers.
        workdir: Where to build (a temporary folder when None).
        timeout: Seconds the program may run.
    """
    from edgekd.export import c_arrays

    library = build_library(facts, toolchain, ops=[n for _, n in engine.ops])
    with tempfile.TemporaryDirectory(prefix="edgekd_engine_", dir=_tmp.process_dir()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for fname, text in engine.files.items():
            (work / fname).write_text(text)
        (work / "model_data.h").write_text(c_arrays(engine.model).header)
        (work / "edgekd_inputs.h").write_text(inputs_header(inputs))
        exe = link_program([RUNNERS / "engine_main.cc", work / "model_engine.cc"], library=library,
                           includes=[work], out=work / "engine")
        outputs, log = _execute(exe, len(inputs), timeout, None)
        return Run(outputs, log, exe)


def run_interpreter(model: Any, inputs: np.ndarray, *, facts: Any, toolchain: Toolchain = HOST,
                    arena_bytes: int = 1 << 20, workdir: Optional[Path] = None, timeout: float = 120.0) -> Run:
    """Run ``model`` through TFLM's ``MicroInterpreter`` built from ``facts``' tree, on ``inputs``."""
    from edgekd.export import c_arrays, op_resolver_header
    from edgekd.model import ConvertedModel

    model = ConvertedModel.coerce(model)
    library = build_library(facts, toolchain, ops=list(model.parsed.op_names))
    with tempfile.TemporaryDirectory(prefix="edgekd_interp_", dir=_tmp.process_dir()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        arrays = c_arrays(model)
        (work / "model_data.h").write_text(arrays.header)
        (work / "model_data.cc").write_text(arrays.source)
        (work / "model_ops.h").write_text(op_resolver_header(model))
        (work / "edgekd_inputs.h").write_text(inputs_header(inputs))
        exe = link_program([RUNNERS / "interpreter_main.cc", work / "model_data.cc"], library=library,
                           includes=[work], out=work / "interpreter", defines=[f"-DEDGEKD_ARENA_BYTES={arena_bytes}"])
        outputs, log = _execute(exe, len(inputs), timeout, None)
        return Run(outputs, log, exe)
