"""Emulate a Cortex-M4F board: the model on TFLM with CMSIS-NN kernels under QEMU (``edgekd emulate``).

The TFLM tree the Arduino firmware links (Chirale_TensorFLowLite, CMSIS-NN
kernels) is cross-compiled with ``arm-none-eabi-g++`` and newlib for QEMU's
``mps2-an386`` machine (a Cortex-M4F), once per (tree, flags), and linked with
the generated project's model and sample files and a small runner
(``sdk/mps2/runner.cc``). QEMU runs it with ``-icount shift=0``: its virtual
clock advances exactly one nanosecond per executed instruction, and SysTick
(25 MHz) reads it, so instruction counts are exact to 40 instructions.

What a run gives (:class:`Emulation`):

* the int8 output of every sample, compared with TFLM's Python interpreter
  (reference kernels): CMSIS-NN may round differently, so the largest difference in
  quantized steps and the class agreement are reported;
* the arena TFLM used on a 32-bit target (``arena_used_bytes()``);
* flash and static RAM of the linked image (``arm-none-eabi-size``), and the flash
  of TFLM itself for this model's op set (from the linker map);
* instructions per sample and per op (a ``MicroProfilerInterface`` in the runner),
  and from them a latency estimate for the board (``cycles_per_instruction`` in its profile).

What emulation does not capture: flash wait states, caches, bus contention and
peripheral timing. They are part of the board's calibrated cycles per instruction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgekd.boards import Board, all_boards
from edgekd.boards import get as get_board
from edgekd.emulate import OutputComparison, _op_names, find_tree, parse_output
from edgekd.emulate.build import CORTEX_M4F, SDK, build_library, link_program
from edgekd import _tmp
from edgekd.engine import compile_model
from edgekd.errors import BoardError, EdgeKDError, ToolNotFoundError, invalid_value
from edgekd.model import ConvertedModel
from edgekd.profile import mac_kind, profile
from edgekd.check.latency import costs_from_profile, estimate_board_latency
from edgekd.firmware import render

# Instructions per SysTick tick: QEMU's mps2 processor clock is 25 MHz, and -icount shift=0 makes one
# instruction one nanosecond of virtual time.
INSTRUCTIONS_PER_TICK = 40
QEMU = "qemu-system-arm"
QEMU_INSTALL = "apt-get install qemu-system-arm"
# The runtime the Arduino firmware links on a Cortex-M board: TFLM with CMSIS-NN kernels.
RUNTIME = "chirale-2.0.0"
MAX_ARENA = 3 * 1024 * 1024  # of the machine's 4 MiB of data RAM

_TICKS = re.compile(r"^ticks (\d+) (\d+)$", re.MULTILINE)
_OP = re.compile(r"^op (\d+) (\d+) (\S+) (\d+)$", re.MULTILINE)
_MAP_ROW = re.compile(r"^\s*(?:(\S+)\s+)?0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")


class EmulationError(EdgeKDError):
    """The emulated program crashed, reported an error, or ran out of time: exit status 1."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class OpInstructions:
    """Instructions one operator executed (first sample).

    Attributes:
        node: Operator index in execution order.
        op: TFLite op name as TFLM reports it (``"CONV_2D"``).
        op_class: ``conv``, ``depthwise``, ``fully_connected`` or ``other``.
        instructions: Instructions executed in the kernel's ``Invoke`` (exact to 40).
        macs: Multiply-adds of the op (the profiler's count).
    """

    node: int
    op: str
    op_class: str
    instructions: int
    macs: int

    @property
    def instructions_per_mac(self) -> Optional[float]:
        return self.instructions / self.macs if self.macs else None


@dataclasses.dataclass(frozen=True)
class ImageSize:
    """Sizes of the linked image (``arm-none-eabi-size``) and where its flash goes (linker map).

    Attributes:
        text: ``.text`` + read-only data, bytes.
        data: Initialised data (in flash and in RAM).
        bss: Zeroed data, including the tensor arena.
        arena: The tensor arena reserved in ``.bss``.
        tflm_flash: Flash of the TFLM library objects linked (interpreter + this model's kernels).
        model_flash: The model's flatbuffer array.
        samples_flash: The embedded samples and expected outputs.
        support_flash: The runner, the C/C++ libraries and semihosting (not in a real firmware).
        tflm_ram: Static RAM (data + bss) of the TFLM library objects, outside the arena.
        model_ram: Static RAM (data + bss) of the model's objects (a compiled engine's activation buffer).
    """

    text: int
    data: int
    bss: int
    arena: int
    tflm_flash: int
    model_flash: int
    samples_flash: int
    support_flash: int
    tflm_ram: int = 0
    model_ram: int = 0

    @property
    def flash(self) -> int:
        """Flash of the whole image: text + data."""
        return self.text + self.data

    @property
    def firmware_flash(self) -> int:
        """Flash of what a firmware needs of it: TFLM for this op set plus the model."""
        return self.tflm_flash + self.model_flash

    @property
    def static_ram(self) -> int:
        """RAM outside the arena: data + bss - arena."""
        return self.data + self.bss - self.arena


@dataclasses.dataclass(frozen=True)
class InstructionLatency:
    """Latency from emulated instructions: Σ instructions(op) × CPI[class(op)] / clock.

    Attributes:
        board: Board id.
        clock_hz: Its clock.
        cycles_per_instruction: CPI per op class from the board profile.
        total_ms: The estimate.
        per_op_ms: Per operator.
    """

    board: str
    clock_hz: int
    cycles_per_instruction: dict
    total_ms: float
    per_op_ms: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Emulation(OutputComparison):
    """One ``edgekd emulate`` run.

    Attributes:
        board: Board id.
        machine: QEMU machine (``mps2-an386``).
        runtime: TFLM runtime compiled (:mod:`edgekd.boards.runtime` id).
        kernels: Kernels that ran (``"cmsis-nn"``).
        compared_with: What the outputs were compared with.
        outputs: int8 output per sample, ``(N, outputs)``.
        expected: TFLM's Python interpreter's output for the same inputs.
        predicted: Class per sample on the emulated board.
        arena_used_bytes: ``arena_used_bytes()`` on the 32-bit target.
        size: The linked image.
        instructions: Instructions of ``Invoke()`` per sample.
        ops: Per operator, first sample.
        latency: Board latency from the instructions (None when the board has no ``cycles_per_instruction``).
        mac_latency_ms: The MAC-based estimate of ``edgekd check`` for comparison.
        library_objects_built: TFLM objects compiled by this run (0 when all were cached).
        log: What the emulated program printed.
        model: The model emulated, with this emulation and its TFLM arena (``arena_bytes``) attached.
    """

    board: str
    machine: str
    runtime: str
    kernels: str
    compared_with: str
    outputs: np.ndarray
    expected: np.ndarray
    predicted: tuple[int, ...]
    arena_used_bytes: int
    size: ImageSize
    instructions: tuple[int, ...]
    ops: tuple[OpInstructions, ...]
    latency: Optional[InstructionLatency]
    mac_latency_ms: Optional[float]
    library_objects_built: int
    log: str = dataclasses.field(repr=False, default="")
    model: Optional[ConvertedModel] = dataclasses.field(repr=False, compare=False, default=None)
    engine: str = "interpreter"

    @property
    def class_agreement(self) -> float:
        """Share of samples whose class equals the class of the expected output."""
        if not len(self.predicted):
            return 1.0
        return float(np.mean(np.asarray(self.predicted) == np.argmax(self.expected, axis=1)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what ``--json`` prints)."""
        return {
            "board": self.board, "machine": self.machine, "runtime": self.runtime, "kernels": self.kernels,
            "compared_with": self.compared_with, "samples": len(self.predicted),
            "max_diff_steps": self.max_diff_steps, "class_agreement": self.class_agreement,
            "bit_exact": self.bit_exact,
            "predicted": list(self.predicted), "outputs": self.outputs.tolist(),
            "arena_used_bytes": self.arena_used_bytes,
            "size": {**dataclasses.asdict(self.size), "flash": self.size.flash,
                     "firmware_flash": self.size.firmware_flash, "static_ram": self.size.static_ram},
            "instructions": list(self.instructions),
            "ops": [{**dataclasses.asdict(o), "instructions_per_mac": o.instructions_per_mac} for o in self.ops],
            "latency": dataclasses.asdict(self.latency) if self.latency else None,
            "mac_latency_ms": self.mac_latency_ms,
            "library_objects_built": self.library_objects_built, "engine": self.engine,
        }


def emulatable_boards() -> list[str]:
    """Ids of the boards whose profile names an emulator."""
    return [b.id for b in all_boards() if b.emulator]


def require_emulator(board: str | Board) -> Board:
    """The board, when its profile names an emulator: the one check ``emulate`` and ``check --emulate`` make.

    Raises:
        BoardError: Unknown board, or one that cannot be emulated (the message lists those that can).
    """
    b = get_board(board)
    if not b.emulator:
        raise BoardError(f"Board {b.id!r} cannot be emulated (its profile names no emulator): pick one of "
                         f"{', '.join(emulatable_boards())}, or run without emulation.")
    return b


def require_qemu() -> str:
    """The path of ``qemu-system-arm``; :class:`ToolNotFoundError` (exit 2) with the install command if absent."""
    path = shutil.which(QEMU)
    if path is None:
        raise ToolNotFoundError(f"{QEMU} is not installed; install it with `{QEMU_INSTALL}` "
                                "(or `make sysdeps` in an edgekd checkout).")
    return path


def instruction_latency(ops: Sequence[OpInstructions], board: Board) -> Optional[InstructionLatency]:
    """Board latency from per-op instruction counts and the board's cycles per instruction."""
    cpi = board.cycles_per_instruction
    if not cpi:
        return None
    per_op = tuple(o.instructions * cpi[o.op_class] / board.clock_hz * 1e3 for o in ops)
    return InstructionLatency(board.id, board.clock_hz, dict(cpi), float(sum(per_op)), per_op)


def _runner_header(project: Any, arena_size: int) -> str:
    symbol = re.search(r"extern const unsigned char (\w+)\[\]", _file(project, "model_data.h"))
    if symbol is None:  # pragma: no cover - the template always declares it
        raise EmulationError("model_data.h declares no model array.")
    lines = [
        "// Written by edgekd.emulate for runner.cc: the model array and the arena (the ops: the exported",
        "// model_ops.h, as in the firmware).",
        "#ifndef EDGEKD_RUNNER_H_", "#define EDGEKD_RUNNER_H_",
        f"#define EDGEKD_MODEL_DATA {symbol.group(1)}",
        f"#define EDGEKD_ARENA_SIZE {arena_size}",
        "#endif  // EDGEKD_RUNNER_H_", "",
    ]
    return "\n".join(lines)


def _file(project: Any, name: str) -> str:
    for rel, text in project.files.items():
        if rel.endswith("/" + name) or rel == name:
            return text
    raise EmulationError(f"The rendered project has no {name}.")  # pragma: no cover


_FLASH_SECTIONS = (".text", ".data", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array", ".fini_array")


def _map_rows(map_text: str) -> list[tuple[str, int, str]]:
    """(output section, size, input file) of every input section the linker map lists."""
    rows = []
    out_sec = None
    pending = None
    for line in map_text.splitlines():
        if line.startswith("."):
            out_sec = line.split()[0]
        if out_sec is None:
            continue
        m = _MAP_ROW.match(line)
        if m is None:
            parts = line.split()
            pending = parts[0] if line.startswith(" .") and len(parts) == 1 else None
            continue
        sec, pending = m.group(1) or pending, None
        if sec is None or not sec.startswith("."):
            continue
        rows.append((out_sec, int(m.group(3), 16), m.group(4)))
    return rows


def image_size(elf: Path, map_file: Path, arena: int, model_objects: Sequence[str] = ("model_data",)) -> ImageSize:
    """Sizes of a linked Cortex-M image (``arm-none-eabi-size -A``) and where its flash and RAM go (linker map).

    Args:
        elf: The linked image.
        map_file: Its linker map (``-Wl,-Map=``).
        arena: The tensor arena it reserves in ``.bss`` (0 for a compiled engine).
        model_objects: Substrings of the object files that are the model (``model_data``; a compiled
            engine's ``model_engine``).
    """
    size = shutil.which("arm-none-eabi-size") or "arm-none-eabi-size"
    out = subprocess.run([size, "-A", str(elf)], capture_output=True, text=True, timeout=60, check=True).stdout
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+$", out, re.MULTILINE)}
    data = sections.get(".data", 0)
    bss = sections.get(".bss", 0)
    text = sum(v for k, v in sections.items() if k in _FLASH_SECTIONS and k != ".data")
    flash = {"tflm": 0, "model": 0, "samples": 0}
    ram = {"tflm": 0, "model": 0, "samples": 0}
    for out_sec, n, where in _map_rows(map_file.read_text(errors="replace")):
        kind = ("tflm" if "libtflm.a(" in where else "model" if any(m in where for m in model_objects)
                else "samples" if "samples" in where else None)
        if kind is None:
            continue
        if out_sec in _FLASH_SECTIONS:
            flash[kind] += n
        if out_sec in (".data", ".bss"):
            ram[kind] += n
    return ImageSize(text=text, data=data, bss=bss, arena=arena, tflm_flash=flash["tflm"],
                     model_flash=flash["model"], samples_flash=flash["samples"],
                     support_flash=text + data - sum(flash.values()), tflm_ram=ram["tflm"], model_ram=ram["model"])


def run_qemu(elf: Path, machine: str, timeout: float) -> str:
    """Run ``elf`` on QEMU ``machine`` with exact instruction counting; what it printed.

    Raises:
        EmulationError: An ``error:`` line, a crash, no ``edgekd: done`` line, or the time limit.
    """
    cmd = [require_qemu(), "-M", machine, "-cpu", "cortex-m4", "-display", "none", "-monitor", "none",
           "-serial", "null", "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-kernel", str(elf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        last = _last_op(out)
        raise EmulationError(f"The emulated board did not finish in {timeout:.0f} s and was stopped"
                             f"{' (in op ' + last + ')' if last else ''}; pass a longer `timeout`.") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    err_line = next((ln for ln in out.splitlines() if ln.startswith("error:")), None)
    if err_line:
        raise EmulationError(f"The emulated board reported: {err_line[len('error:'):].strip()}")
    if proc.returncode != 0 or "edgekd: done" not in out:
        detail = (err.strip().splitlines() or [""])[-1][:200]
        raise EmulationError(f"The emulated program stopped early (QEMU status {proc.returncode}"
                             f"{': ' + detail if detail else ''}).")
    return out


def _last_op(log: str) -> str:
    ops = _OP.findall(log or "")
    return ops[-1][2] if ops else ""


def emulate(
    model: ConvertedModel | bytes | str | os.PathLike,
    *,
    board: str | Board = "nucleo-l4r5zi",
    tflm: Optional[str | os.PathLike] = None,
    samples: Any = None,
    num_samples: int = 16,
    arena_size: Optional[int] = None,
    timeout: float = 300.0,
    workdir: Optional[str | os.PathLike] = None,
    engine: str = "interpreter",
    _fault_at_op: Optional[int] = None,
) -> Emulation:
    """Run an int8 ``.tflite`` model on an emulated Cortex-M4F with TFLM's CMSIS-NN kernels.

    Args:
        model: A :class:`edgekd.ConvertedModel`, or the ``.tflite`` flatbuffer (bytes or a path); int8 input
            and output. Read and parsed once; an ``arena_bytes`` it carries (from ``edgekd check``) is not
            measured again.
        board: A board whose profile names an emulator (``nucleo-l4r5zi``, ``nano33ble``).
        tflm: The Chirale_TensorFLowLite source tree (else ``$EDGEKD_TFLM`` or
            ``~/Arduino/libraries/Chirale_TensorF[Ll]owLite``).
        samples: Inputs, as for :func:`edgekd.firmware.render` (``None``: one all-zeros input).
        num_samples: How many to run (1 to 64).
        arena_size: Tensor arena to reserve; twice what TFLM's Python interpreter needs when None.
        timeout: Seconds the emulated program may run.
        workdir: Where to build (a temporary folder when None).
        engine: ``"interpreter"`` (TFLM's ``MicroInterpreter``) or ``"compiled"``: the compiled engine
            (:mod:`edgekd.engine`, the same tree's CMSIS-NN kernels) runs the samples instead. It has no arena
            (``arena_used_bytes`` is 0; its activation buffer is in ``size.model_ram``) and no per-op profile
            (``ops`` is empty; ``latency`` only where the board has one cycles-per-instruction figure for every
            op class); instructions are per inference.

    Returns:
        The :class:`Emulation`; its ``model`` is ``model`` with the emulation attached.

    Raises:
        BoardError: The board cannot be emulated.
        ToolNotFoundError: ``arm-none-eabi-g++`` or ``qemu-system-arm`` is missing (exit 2).
        FirmwareRunError: No TFLM tree found (exit 2).
        EmulationError: The program crashed (naming the op), reported an error or timed out (exit 1).
        BuildError: Compiling or linking failed (exit 1).
    """
    b = require_emulator(board)
    if engine not in ("interpreter", "compiled"):
        raise invalid_value("engine", "one of interpreter, compiled", engine)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise invalid_value("timeout", "a positive number of seconds", timeout)
    if arena_size is not None and (isinstance(arena_size, bool) or not isinstance(arena_size, int)
                                   or not 0 < arena_size <= MAX_ARENA):
        raise invalid_value("arena_size", f"a number of bytes from 1 to {MAX_ARENA}", arena_size)
    facts = find_tree(RUNTIME, tflm)
    CORTEX_M4F.require()
    require_qemu()
    model = ConvertedModel.coerce(model)
    # an op the compiled engine lacks stops here, naming --engine interpreter, before anything is built
    compiled = compile_model(model, runtime=RUNTIME) if engine == "compiled" else None
    # The Arduino project's model and sample files: what the Cortex-M firmware embeds, with the
    # expected outputs from TFLM's Python interpreter.
    project = render(model, board="nano33ble", target="arduino", samples=samples, num_samples=num_samples)
    if compiled is not None:
        return _emulate_compiled(model, compiled, project, facts, b, float(timeout), workdir)
    arena = arena_size or min(MAX_ARENA, -(-max(2 * project.arena.measured, 16384) // 16) * 16)
    library = build_library(facts, CORTEX_M4F, ops=_op_names(project))
    with tempfile.TemporaryDirectory(prefix="edgekd_emulate_", dir=_tmp.process_dir()) as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        src = work / "src"
        src.mkdir(parents=True, exist_ok=True)
        for name in ("model_data.h", "model_data.cpp", "model_ops.h", "samples.h", "samples.cpp"):
            (src / name).write_text(_file(project, name))
        (src / "edgekd_runner.h").write_text(_runner_header(project, arena))
        elf = work / "firmware.elf"
        map_file = work / "firmware.map"
        machine = SDK / "mps2"
        sources = [src / "model_data.cpp", src / "samples.cpp", machine / "runner.cc", machine / "sdk.cc",
                   machine / "startup.c", SDK / "common" / "serial_wire.cc"]
        fault = [f"-DEDGEKD_FAULT_AT_OP={int(_fault_at_op)}"] if _fault_at_op is not None else []
        link_program(sources, library=library, includes=[src, SDK / "include"], out=elf, defines=fault,
                     link_extra=(f"-Wl,-Map={map_file}",))
        size = image_size(elf, map_file, arena)
        log = run_qemu(elf, b.emulator, float(timeout))
    n = len(project.host_predictions)
    expected = np.asarray(project.expected_outputs, np.int8).reshape(n, -1)
    arena_used, predicted, outputs, _ = parse_output(log, n, expected.shape[1])
    ticks = {int(i): int(t) for i, t in _TICKS.findall(log)}
    prof = profile(model)  # from the parsed flatbuffer
    ops = []
    for sample, node, op, t in _OP.findall(log):
        if int(sample) != 0:
            continue
        k = int(node)
        layer = prof.layers[k] if k < len(prof.layers) and prof.layers[k].op_type == op else None
        ops.append(OpInstructions(node=k, op=op, op_class=mac_kind(op), instructions=int(t) * INSTRUCTIONS_PER_TICK,
                                  macs=int(layer.macs) if layer is not None else 0))

    mac_ms = estimate_board_latency(costs_from_profile(prof), b).total_ms
    em = Emulation(
        board=b.id, machine=b.emulator, runtime=RUNTIME, kernels=facts.kernels or "reference",
        compared_with="TFLM's Python interpreter (tflite-micro, reference kernels), same int8 inputs",
        outputs=outputs, expected=expected, predicted=tuple(predicted), arena_used_bytes=arena_used, size=size,
        instructions=tuple(ticks.get(i, 0) * INSTRUCTIONS_PER_TICK for i in range(n)), ops=tuple(ops),
        latency=instruction_latency(ops, b), mac_latency_ms=mac_ms, library_objects_built=library.objects_built,
        log=log,
    )
    return dataclasses.replace(em, model=model.with_(arena_bytes=project.arena.measured, emulation=em))


def _whole_latency(instructions: int, board: Board) -> Optional[InstructionLatency]:
    """Latency from the instructions of a whole inference: only when the board has one CPI for every op class
    (a compiled engine has no per-op profile to weigh several)."""
    cpi = board.cycles_per_instruction
    if not cpi or len(set(cpi.values())) != 1:
        return None
    ms = instructions * next(iter(cpi.values())) / board.clock_hz * 1e3
    return InstructionLatency(board.id, board.clock_hz, dict(cpi), float(ms), ())


def _emulate_compiled(model: ConvertedModel, engine: Any, project: Any, facts: Any, b: Board, timeout: float,
                      workdir: Optional[str | os.PathLike]) -> Emulation:
    """The project's samples through the compiled engine on the emulated Cortex-M4F."""
    from edgekd.engine.build import run_engine  # it imports this module (run_qemu, image_size)

    run = run_engine(engine, project.inputs, facts=facts, toolchain=CORTEX_M4F, timeout=timeout,
                     workdir=None if workdir is None else Path(workdir))
    n = len(project.host_predictions)
    expected = np.asarray(project.expected_outputs, np.int8).reshape(n, -1)
    outputs = run.outputs.view(np.int8).reshape(n, -1)
    em = Emulation(
        board=b.id, machine=b.emulator, runtime=RUNTIME, kernels=engine.kernels,
        compared_with="TFLM's Python interpreter (tflite-micro, reference kernels), same int8 inputs",
        outputs=outputs, expected=expected, predicted=tuple(int(v) for v in np.argmax(outputs, axis=1)),
        arena_used_bytes=0, size=run.size, instructions=run.instructions, ops=(),
        latency=_whole_latency(run.instructions[0] if run.instructions else 0, b),
        mac_latency_ms=estimate_board_latency(costs_from_profile(profile(model)), b).total_ms,
        library_objects_built=0, log=run.log, engine="compiled")
    return dataclasses.replace(em, model=model.with_(emulation=em))
