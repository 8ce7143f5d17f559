"""The compiled engine: the model as C++ that calls TFLM's kernels directly.

Instead of a flatbuffer read by ``MicroInterpreter`` at start-up, edgekd emits
one translation unit per model: the weights and every parameter TFLM's kernels
compute in ``Prepare`` (multipliers, shifts, activation ranges, padding, scratch
sizes) as ``const`` data computed on the host with TFLM's own integer routines
(:mod:`edgekd.engine.quant`), one call per op to the kernel the TFLM tree
would run (CMSIS-NN in Chirale_TensorFLowLite; ESP-NN in esp-tflite-micro built
with ``ESP_NN``, :mod:`edgekd.engine.esp_nn`; the reference kernels elsewhere),
and every activation at a fixed offset in one static buffer from an offline
memory plan (:mod:`edgekd.engine.plan`). No interpreter, allocator, op
resolver or flatbuffer is linked.

Example:
    >>> engine = edgekd.engine.compile_model(model)              # doctest: +SKIP
    >>> engine.activation_bytes, sorted(engine.files)           # doctest: +SKIP
    (1280, ['model_engine.cc', 'model_engine.h'])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from edgekd.boards import runtime as runtimes
from edgekd.engine import esp_nn
from edgekd.engine import ops as op_registry
from edgekd.engine.codegen import Generated, generate
from edgekd.engine.graph import Graph, read_graph
from edgekd.engine.plan import MemoryPlan, plan_memory
from edgekd.errors import invalid_value
from edgekd.model import ConvertedModel

__all__ = ["CompiledEngine", "ENGINES", "compile_model", "kernels_for", "read_graph", "plan_memory", "MemoryPlan",
           "Graph", "supported_ops"]

ENGINES = ("interpreter", "compiled")


def supported_ops() -> list[str]:
    """The builtin ops the compiled engine runs."""
    return op_registry.supported()


def kernels_for(runtime: Any) -> str:
    """The kernels the engine calls for a TFLM runtime: ``"cmsis-nn"``, ``"esp-nn"`` or ``"reference"``.

    ``"esp-nn"`` (esp-tflite-micro): ESP-NN's entry points where its ``kernels/esp_nn/*.cc`` call them when the
    build defines ``ESP_NN`` (ESP-IDF builds: ESP-NN comes from the component registry), TFLM's reference
    kernels otherwise (a host or Cortex-M build of the tree without ESP-NN's sources).
    """
    kernels = runtimes.get(runtime).kernels
    return kernels if kernels in ("cmsis-nn", "esp-nn") else "reference"


@dataclasses.dataclass(frozen=True)
class CompiledEngine:
    """A model compiled to C++.

    Attributes:
        model: The model it was generated from.
        name: The symbol stem (``model_init()``, ``model_invoke()``…).
        runtime: The TFLM runtime whose kernels it calls (:mod:`edgekd.boards.runtime` id).
        kernels: ``"cmsis-nn"``, ``"esp-nn"`` or ``"reference"``.
        files: File name -> text (``<name>_engine.h``, ``<name>_engine.cc``).
        plan: The offline memory plan.
        ops: (op index, op name) in execution order.
        weights_bytes: Bytes of constant data (weights, biases, precomputed parameters).
        esp_nn_plans: With ``"esp-nn"`` kernels: the plan of each variant built with ``ESP_NN``
            (:mod:`edgekd.engine.esp_nn`; ``plan`` is the reference variant's, built without it).
    """

    model: ConvertedModel
    name: str
    runtime: str
    kernels: str
    files: dict[str, str]
    plan: MemoryPlan
    ops: tuple[tuple[int, str], ...]
    weights_bytes: int
    esp_nn_plans: Optional[dict[str, MemoryPlan]] = None

    @property
    def activation_bytes(self) -> int:
        """Bytes of the static activation buffer (the reference variant's, with ``"esp-nn"`` kernels)."""
        return self.plan.total_bytes

    def activation_bytes_on(self, idf_target: Optional[str] = None) -> int:
        """Bytes of the activation buffer the device allocates: with ``"esp-nn"`` kernels, that of the ESP-NN
        variant an ESP-IDF build for ``idf_target`` compiles (:func:`edgekd.engine.esp_nn.variant_for`; the
        ESP32-S3's assembly kernels need larger scratch); otherwise :attr:`activation_bytes`."""
        if self.esp_nn_plans is None:
            return self.activation_bytes
        return self.esp_nn_plans[esp_nn.variant_for(idf_target)].total_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"engine": "compiled", "runtime": self.runtime, "kernels": self.kernels,
                "activation_bytes": self.activation_bytes, "weights_bytes": self.weights_bytes,
                "ops": [{"index": k, "op": n} for k, n in self.ops], "plan": self.plan.to_dict(),
                **({"esp_nn_plans": {v: p.to_dict() for v, p in self.esp_nn_plans.items()}}
                   if self.esp_nn_plans is not None else {})}


def compile_model(model: Any, *, runtime: Any = "chirale-2.0.0", name: str = "model",
                  data_header: str = "model_data.h") -> CompiledEngine:
    """Compile an int8 ``.tflite`` model to C++ that calls ``runtime``'s TFLM kernels.

    Args:
        model: A :class:`edgekd.ConvertedModel`, the flatbuffer's bytes or a path.
        runtime: The TFLM runtime (:mod:`edgekd.boards.runtime` id) the code is built against.
        name: Symbol stem and file stem (``<name>_engine.cc``).
        data_header: The header with the model's constants (``kInputScale``…) the engine header includes.

    Returns:
        The :class:`CompiledEngine`.

    Raises:
        UnsupportedOpError: An op the engine does not cover (before anything is generated).
        InvalidArgumentError: A bad option, or a model that is not single-input, single-output.
    """
    from edgekd.export import validate_c_name  # edgekd.export imports the engine (export --engine compiled)

    validate_c_name(name)
    rt = runtimes.get(runtime)
    model = ConvertedModel.coerce(model)
    graph = read_graph(model)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise invalid_value("model", "a single-input, single-output model",
                            f"{len(graph.inputs)} inputs, {len(graph.outputs)} outputs")
    gen: Generated = generate(graph, kernels=kernels_for(rt.id), name=name, data_header=data_header)
    return CompiledEngine(model, name, rt.id, gen.kernels,
                          {f"{name}_engine.h": gen.header, f"{name}_engine.cc": gen.source},
                          gen.plan, gen.ops, gen.weights_bytes, gen.esp_nn_plans)
