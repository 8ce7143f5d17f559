"""Build and run a compiled engine, and the interpreter beside it, against a real TFLM tree.

:func:`run_engine` links the generated engine with the TFLM library of a tree
(only the kernels and CMSIS-NN functions it calls are pulled in) and runs it
on int8 inputs; :func:`run_interpreter` does the same with ``MicroInterpreter``
and the exported ``model_data``/``model_ops.h``. Both print every output byte,
so the two are compared byte for byte.

With ``toolchain=CORTEX_M4F`` both are cross-compiled (CMSIS-NN's DSP paths),
linked with the mps2-an386 start-up, linker script and semihosting of
``edgekd/emulate/sdk/mps2`` and run under ``qemu-system-arm -M mps2-an386
-icount shift=0`` as :mod:`edgekd.emulate.qemu` runs firmware: the
:class:`Run` then also holds the instructions of every invoke (SysTick ticks
× 40, exact to 40 instructions) and the sizes of the linked ELF
(:class:`edgekd.emulate.qemu.ImageSize`). :func:`link_engine` only links (the
sizes ``edgekd check --engine compiled`` budgets with).

RAM and flash of the two, as :attr:`Run.ram_bytes` and :attr:`Run.flash_bytes`
report them:

* compiled engine: static RAM = ``.data`` + ``.bss`` of the linked ELF (the
  activation buffer is in ``.bss``); nothing is allocated at run time;
* interpreter: the arena TFLM reports used on the 32-bit target
  (``arena_used_bytes()``) rounded up to 16 bytes — the granularity of the
  arena ``edgekd check`` bisects — plus ``.data`` + ``.bss`` outside the
  reserved arena;
* flash: ``.text`` (which holds ``.rodata`` in this linker script) + exception
  tables + ``.data`` of the whole ELF; both programs share the same runner
  skeleton, newlib and semihosting.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgekd import _tmp
from edgekd.emulate.build import CORTEX_M4F, HOST, SDK, EspNn, Library, Toolchain, build_library, link_program
from edgekd.emulate.qemu import INSTRUCTIONS_PER_TICK, ImageSize, image_size, require_qemu, run_qemu
from edgekd.errors import EdgeKDError, invalid_value
from edgekd.export import c_arrays, op_resolver_header
from edgekd.model import ConvertedModel

RUNNERS = Path(__file__).resolve().parent / "runners"
MACHINE = "mps2-an386"  # QEMU's Cortex-M4F machine (edgekd.emulate)
ARENA_ALIGN = 16  # edgekd check bisects the arena to 16 bytes: the interpreter's arena is rounded up to it
_TICKS = re.compile(r"^ticks (\d+) (\d+)$", re.MULTILINE)
_ARENA_USED = re.compile(r"^edgekd: arena used (\d+)", re.MULTILINE)
_ARENA_HEAD = re.compile(r"^edgekd: arena head (\d+)", re.MULTILINE)


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
        instructions: Instructions of each invoke under QEMU (exact to 40); empty on the host.
        size: Sizes of the linked Cortex-M4F ELF (None on the host).
        arena_used_bytes: The interpreter's ``arena_used_bytes()`` (None for a compiled engine).
        arena_head_bytes: The head of the interpreter's arena after ``AllocateTensors()``: TFLM's planned
            activations and scratch buffers (``run_interpreter(..., record=True)`` only).
    """

    outputs: np.ndarray
    log: str
    executable: Path
    instructions: tuple[int, ...] = ()
    size: Optional[ImageSize] = None
    arena_used_bytes: Optional[int] = None
    arena_head_bytes: Optional[int] = None

    @property
    def ram_bytes(self) -> Optional[int]:
        """Static RAM of the program (see the module docstring): ELF ``.data`` + ``.bss``, the interpreter's
        reserved arena replaced by the arena it used (rounded up to 16 bytes)."""
        if self.size is None:
            return None
        used = 0 if self.arena_used_bytes is None else -(-self.arena_used_bytes // ARENA_ALIGN) * ARENA_ALIGN
        return self.size.static_ram + used

    @property
    def flash_bytes(self) -> Optional[int]:
        """Flash of the whole linked ELF (``.text`` with ``.rodata``, exception tables, ``.data``)."""
        return None if self.size is None else self.size.flash


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


def _mps2_sources() -> list[Path]:
    """The mps2-an386 start-up, SysTick clock and semihosting serial (as :func:`edgekd.emulate.qemu.emulate`)."""
    return [SDK / "mps2" / "sdk.cc", SDK / "mps2" / "startup.c", SDK / "common" / "serial_wire.cc"]


def _link_and_run(sources: Sequence[Path], library: Library, work: Path, stem: str, n: int, *, timeout: float,
                  defines: Sequence[str] = (), model_objects: Sequence[str] = (), arena: int = 0,
                  run: bool = True, esp_nn: Optional[EspNn] = None) -> Run:
    """Link ``sources`` with ``library`` in ``work`` and run the program (on the host, or under QEMU)."""
    if esp_nn is not None:
        # ESP_NN and ESP-NN's headers; the ESP-NN kernels time themselves with esp_timer_get_time (host stand-in).
        defines, sources = [*defines, *esp_nn.flags()], [*sources, SDK / "host" / "sdk.cc"]
    if library.toolchain.name != CORTEX_M4F.name:
        # Chirale's DebugLog writes to Arduino's Serial: the host program gets the shared stand-in.
        exe = link_program([*sources, SDK / "common" / "serial_wire.cc"], library=library,
                           includes=[work, SDK / "include"], out=work / stem, defines=defines)
        outputs, log = _execute(exe, n, timeout, None)
        return Run(outputs, log, exe)
    elf, map_file = work / f"{stem}.elf", work / f"{stem}.map"
    link_program([*sources, *_mps2_sources()], library=library, includes=[work, SDK / "include"], out=elf,
                 defines=[*defines, "-DEDGEKD_MPS2"], link_extra=(f"-Wl,-Map={map_file}",), timeout=timeout)
    size = image_size(elf, map_file, arena, model_objects)
    if not run:
        return Run(np.zeros((0, 0), np.uint8), "", elf, size=size)
    log = run_qemu(elf, MACHINE, timeout)
    ticks = {int(i): int(t) for i, t in _TICKS.findall(log)}
    used, head = (int(m.group(1)) if m else None for m in (_ARENA_USED.search(log), _ARENA_HEAD.search(log)))
    return Run(_parse(log, n), log, elf, tuple(ticks.get(i, 0) * INSTRUCTIONS_PER_TICK for i in range(n)), size,
               used, head)


def _prepare(toolchain: Toolchain, esp_nn: Optional[EspNn] = None) -> None:
    if esp_nn is not None and toolchain.name != HOST.name:
        raise invalid_value("esp_nn", "None for a Cortex-M4F build (ESP-NN is built for the host only here)",
                            esp_nn)
    toolchain.require()
    if toolchain.name == CORTEX_M4F.name:
        require_qemu()


def run_engine(engine: Any, inputs: np.ndarray, *, facts: Any, toolchain: Toolchain = HOST,
               workdir: Optional[Path] = None, timeout: float = 120.0, run: bool = True,
               esp_nn: Optional[EspNn] = None) -> Run:
    """Compile ``engine`` (a :class:`edgekd.engine.CompiledEngine`) against ``facts``' tree and run ``inputs``.

    Args:
        engine: The compiled engine (its name must be ``"model"``).
        inputs: Int8 inputs, ``(N, *input shape)``.
        facts: The TFLM tree (:func:`edgekd.emulate.find_tree`).
        toolchain: Host (default) compilers, or :data:`edgekd.emulate.build.CORTEX_M4F`: linked for QEMU's
            mps2-an386 and run there, with instructions per invoke and the ELF's sizes.
        workdir: Where to build (a temporary folder when None).
        timeout: Seconds the program may run (and one compile may take).
        run: False: only link (Cortex-M4F: the sizes, no outputs).
        esp_nn: ESP-NN's sources (host only): build esp-tflite-micro's tree with its ESP-NN kernels and the
            engine with ``ESP_NN`` (its ESP-NN variant).

    Raises:
        ToolNotFoundError: A compiler, or QEMU for a Cortex-M4F run, is missing.
        BuildError: The generated code does not compile warning-free or link.
        EngineRunError, EmulationError: The program failed, crashed or timed out.
    """
    if run:
        _prepare(toolchain, esp_nn)
    else:
        toolchain.require()
    library = build_library(facts, toolchain, ops=[n for _, n in engine.ops], esp_nn=esp_nn)
    with tempfile.TemporaryDirectory(prefix="edgekd_engine_", dir=_tmp.process_dir()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for fname, text in engine.files.items():
            (work / fname).write_text(text)
        (work / "model_data.h").write_text(c_arrays(engine.model).header)
        (work / "edgekd_inputs.h").write_text(inputs_header(inputs))
        return _link_and_run([RUNNERS / "engine_main.cc", work / "model_engine.cc"], library, work, "engine",
                             len(inputs), timeout=timeout, model_objects=("model_engine",), run=run, esp_nn=esp_nn)


def link_engine(engine: Any, *, facts: Any, workdir: Optional[Path] = None, timeout: float = 600.0) -> ImageSize:
    """The sizes of ``engine`` linked for a Cortex-M4F (mps2-an386) with ``facts``' kernels; nothing runs.

    Its :attr:`~edgekd.emulate.qemu.ImageSize.model_flash` and ``model_ram`` are the engine's object
    (weights, precomputed parameters, code, the activation buffer), ``tflm_flash``/``tflm_ram`` the TFLM and
    CMSIS-NN objects it calls.
    """
    shape = tuple(engine.model.parsed.input_tensors[0].shape[1:])
    zero = np.zeros((1, *shape), np.int8)
    return run_engine(engine, zero, facts=facts, toolchain=CORTEX_M4F, workdir=workdir, timeout=timeout,
                      run=False).size


def run_interpreter(model: Any, inputs: np.ndarray, *, facts: Any, toolchain: Toolchain = HOST,
                    arena_bytes: int = 1 << 20, workdir: Optional[Path] = None, timeout: float = 120.0,
                    record: bool = False, esp_nn: Optional[EspNn] = None) -> Run:
    """Run ``model`` through TFLM's ``MicroInterpreter`` built from ``facts``' tree, on ``inputs``.

    With ``toolchain=CORTEX_M4F`` it runs under QEMU as :func:`run_engine` does, and the :class:`Run` also
    holds ``arena_used_bytes()`` as the 32-bit target reports it (``arena_bytes`` are reserved in ``.bss``).
    With ``record``, TFLM's ``RecordingMicroInterpreter`` runs instead and :attr:`Run.arena_head_bytes` is
    the head of its arena (TFLM's planned activations and scratch); its sizes and instructions then include
    the recording, so measure those without it. With ``esp_nn`` (host only), esp-tflite-micro's tree is built
    with its ESP-NN kernels and ESP-NN's portable C sources, as ESP-IDF builds it (:class:`EspNn`).
    """
    _prepare(toolchain, esp_nn)
    defines = [f"-DEDGEKD_ARENA_BYTES={arena_bytes}", *(["-DEDGEKD_RECORDING"] if record else [])]
    model = ConvertedModel.coerce(model)
    library = build_library(facts, toolchain, ops=list(model.parsed.op_names), esp_nn=esp_nn)
    with tempfile.TemporaryDirectory(prefix="edgekd_interp_", dir=_tmp.process_dir()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        arrays = c_arrays(model)
        (work / "model_data.h").write_text(arrays.header)
        (work / "model_data.cc").write_text(arrays.source)
        (work / "model_ops.h").write_text(op_resolver_header(model))
        (work / "edgekd_inputs.h").write_text(inputs_header(inputs))
        return _link_and_run([RUNNERS / "interpreter_main.cc", work / "model_data.cc"], library, work,
                             "interpreter", len(inputs), timeout=timeout,
                             defines=defines, model_objects=("model_data",), arena=arena_bytes, esp_nn=esp_nn)
