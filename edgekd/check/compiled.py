"""Flash and RAM of a model on the compiled engine (``edgekd check --engine compiled``).

The interpreter's figures are the model plus TFLM's runtime overhead and the
arena TFLM allocates. The compiled engine (:mod:`edgekd.engine`) has neither:
its flash and static RAM are what the linker places. :func:`measure_compiled`
generates the engine for the board's TFLM runtime (CMSIS-NN kernels from
Chirale_TensorFLowLite on Arm boards, the reference kernels of
esp-tflite-micro on ESP-NN boards), links it with that tree's kernels for a
Cortex-M4F (``arm-none-eabi-g++ -Os``, QEMU's mps2-an386 start-up; nothing
runs) and reads the ELF and its linker map:

* flash = the engine's object (weights, precomputed parameters, code) + the
  TFLM/CMSIS-NN objects it calls;
* RAM = ``.data`` + ``.bss`` of those objects: the activation buffer of the
  offline memory plan and the kernels' own static data. Nothing is allocated
  at run time.

The runner, the C library and semihosting of the measurement program are not
counted (a board's firmware brings its own). On an ESP32 board the sizes are
those of the same code built for a Cortex-M4F, an approximation of the
Xtensa build, whose activation buffer is that of the ESP-NN variant the
board's ESP-IDF build compiles (on an ESP32-S3 the assembly kernels' scratch
makes it larger than the linked reference variant's): RAM counts that buffer
in place of the linked one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from edgekd.boards import Board
from edgekd.boards import runtime as runtimes
from edgekd.engine import ENGINES, compile_model
from edgekd.errors import invalid_value

__all__ = ["CompiledMeasurement", "check_engine", "measure_compiled", "runtime_for"]


def check_engine(engine: Any) -> str:
    """``engine`` when it is ``"interpreter"`` or ``"compiled"``.

    Raises:
        InvalidArgumentError: Anything else.
    """
    if engine not in ENGINES:
        raise invalid_value("engine", f"one of {', '.join(ENGINES)}", engine)
    return engine


def runtime_for(board: Board) -> str:
    """The TFLM runtime whose kernels the board's firmware calls: esp-tflite-micro on ESP-NN boards, else
    Chirale_TensorFLowLite (CMSIS-NN)."""
    target = "esp-idf" if board.optimized_kernels == "esp-nn" else "arduino"
    return runtimes.for_target(target).id


@dataclasses.dataclass(frozen=True)
class CompiledMeasurement:
    """The compiled engine of a model, linked for a Cortex-M4F.

    Attributes:
        runtime: The TFLM runtime whose kernels it calls.
        kernels: ``"cmsis-nn"`` or ``"reference"``.
        activation_bytes: The activation buffer of the offline plan on the board (in ``.bss``; on an ESP-NN board
            the plan of the ESP-NN variant its build compiles).
        ops: Ops in execution order.
        size: The linked image, an :class:`edgekd.emulate.qemu.ImageSize` (its ``model_*`` figures are the
            engine's object, ``tflm_*`` the kernels').
    """

    runtime: str
    kernels: str
    activation_bytes: int
    ops: int
    size: Any
    linked_activation_bytes: Optional[int] = None

    @property
    def flash_bytes(self) -> int:
        """The engine's object plus the TFLM/CMSIS-NN objects it links."""
        return self.size.model_flash + self.size.tflm_flash

    @property
    def ram_bytes(self) -> int:
        """Static RAM (``.data`` + ``.bss``) of the engine's object and of the kernels it links."""
        return self.size.model_ram + self.size.tflm_ram + self._activation_delta

    @property
    def _activation_delta(self) -> int:
        """The board's activation buffer minus the linked one (ESP-NN boards: another variant of the engine)."""
        return 0 if self.linked_activation_bytes is None else self.activation_bytes - self.linked_activation_bytes

    def how(self, what: str) -> str:
        """How a budget row's figure was obtained."""
        if what == "flash":
            return (f"compiled engine {self.size.model_flash:,} B (weights, parameters, code) + TFLM kernels "
                    f"{self.size.tflm_flash:,} B, linked ({self.runtime}, {self.kernels}, Cortex-M4F)")
        if self._activation_delta:
            return (f"compiled engine static RAM: activation buffer {self.activation_bytes:,} B (the board's ESP-NN "
                    f"variant; {self.linked_activation_bytes:,} B linked) + other engine data "
                    f"{self.size.model_ram - self.linked_activation_bytes:,} B + kernels {self.size.tflm_ram:,} B")
        return (f"compiled engine static RAM: activation buffer {self.activation_bytes:,} B of "
                f"{self.size.model_ram:,} B + kernels {self.size.tflm_ram:,} B (linked, no arena)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"runtime": self.runtime, "kernels": self.kernels, "activation_bytes": self.activation_bytes,
                "ops": self.ops, "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "engine_flash_bytes": self.size.model_flash, "kernels_flash_bytes": self.size.tflm_flash,
                "engine_ram_bytes": self.size.model_ram, "kernels_ram_bytes": self.size.tflm_ram,
                "machine": "cortex-m4f (arm-none-eabi-g++ -Os)",
                **({"linked_activation_bytes": self.linked_activation_bytes}
                   if self.linked_activation_bytes is not None else {})}


def measure_compiled(model: Any, board: Board, *, tflm: Optional[str | os.PathLike] = None) -> CompiledMeasurement:
    """Generate ``model``'s compiled engine for ``board``'s runtime and link it (see the module docstring).

    Args:
        model: A :class:`edgekd.ConvertedModel` (int8).
        board: The board (its runtime picks the kernels).
        tflm: The runtime's TFLM source tree (else ``$EDGEKD_TFLM``, ``~/Arduino/libraries``).

    Raises:
        UnsupportedOpError: An op the compiled engine does not run (the message names ``--engine interpreter``).
        FirmwareRunError: No TFLM tree of the runtime is found (exit 2).
        ToolNotFoundError: ``arm-none-eabi-g++`` is missing (exit 2).
        BuildError: The engine does not compile or link.
    """
    from edgekd.emulate import find_tree  # edgekd.emulate imports edgekd.firmware, which imports edgekd.check
    from edgekd.engine.build import link_engine  # imports edgekd.emulate (above)

    rt = runtime_for(board)
    engine = compile_model(model, runtime=rt)  # an unsupported op stops here, before any build
    size = link_engine(engine, facts=find_tree(rt, tflm))
    on_board = engine.activation_bytes_on(board.idf_target)
    linked = engine.activation_bytes if on_board != engine.activation_bytes else None
    return CompiledMeasurement(rt, engine.kernels, on_board, len(engine.ops), size, linked)
