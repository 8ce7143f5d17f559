"""Generate the compiled engine's translation unit from the graph, the op emitters and the memory plan."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from edgekd.engine import esp_nn
from edgekd.engine import ops as op_registry
from edgekd.engine.graph import Graph, Op
from edgekd.engine.plan import MemoryPlan, plan_memory

KERNELS = ("cmsis-nn", "reference", "esp-nn")
# esp-tflite-micro's CMakeLists compiles its kernels with -DESP_NN (PRIVATE to the component): the generated ESP-IDF
# project defines it for its main component too, and the engine's source selects the ESP-NN variant with it.
ESP_NN_GUARD = "ESP_NN"
_PER_LINE = {1: 20, 2: 12, 4: 8, 8: 4}


def c_array_body(values: np.ndarray) -> str:
    """The initializer of a C array: integers (or float literals), a fixed number per line."""
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind == "f":
        items = [repr(float(np.float32(v))) + "f" for v in flat]
    elif flat.dtype.kind == "b":
        items = ["true" if v else "false" for v in flat]
    else:
        # INT32_MIN has no literal: write it as an expression.
        items = [str(int(v)) if int(v) != -(1 << 31) else "(-2147483647 - 1)" for v in flat]
    n = _PER_LINE.get(flat.dtype.itemsize, 8)
    return "\n".join("    " + ", ".join(items[i:i + n]) + "," for i in range(0, len(items), n))


@dataclasses.dataclass
class Emitter:
    """What an op emitter writes through (see :mod:`edgekd.engine.ops`).

    Attributes:
        graph: The model.
        kernels: ``"cmsis-nn"`` (call CMSIS-NN where the tree's kernel does) or ``"reference"``.
        name: The model's symbol stem.
        esp_nn: With ``kernels="reference"``: the ESP-NN variant (:data:`edgekd.engine.esp_nn.VARIANTS`) to
            call where esp-tflite-micro's ``kernels/esp_nn/*.cc`` call ESP-NN; ``""``: none.
    """

    graph: Graph
    kernels: str
    name: str = "model"
    esp_nn: str = ""
    includes: list[str] = dataclasses.field(default_factory=list)
    init: list[str] = dataclasses.field(default_factory=list)
    decls: list[str] = dataclasses.field(default_factory=list)
    scratch_bytes: dict[int, int] = dataclasses.field(default_factory=dict)
    overlaps: dict[int, int] = dataclasses.field(default_factory=dict)
    non_mve: bool = False  # an emitter relies on a CMSIS-NN path taken only without MVE
    const_symbols: dict[int, str] = dataclasses.field(default_factory=dict)
    flash_bytes: int = 0
    op: Optional[Op] = None

    def include(self, header: str) -> None:
        """``#include "header"`` once (paths relative to the TFLM tree's source root)."""
        if header not in self.includes:
            self.includes.append(header)

    def decl(self, text: str) -> None:
        """A declaration at namespace scope (a parameters struct, a helper)."""
        self.decls.append(text)

    def symbol(self, what: str) -> str:
        """A unique name for something of the current op: ``g_op<k>_<what>``."""
        return f"g_op{self.op.index}_{what}" if self.op is not None else f"g_{what}"

    def array(self, what: str, values: Any, ctype: str, *, comment: str = "") -> str:
        """A ``const`` array in flash of the current op; returns its symbol."""
        values = np.asarray(values)
        sym = self.symbol(what)
        note = f"// {comment}\n" if comment else ""
        self.decls.append(f"{note}alignas(16) const {ctype} {sym}[{max(values.size, 1)}] = {{\n"
                          f"{c_array_body(values) if values.size else '    0,'}\n}};")
        self.flash_bytes += values.size * values.itemsize
        return sym

    def ptr(self, tensor: int) -> str:
        """The C expression of tensor ``tensor``'s data, typed (``int8_t*`` for an int8 activation).

        A constant tensor is emitted once as a flash array (``const``); an activation
        points into the planned buffer.
        """
        t = self.graph.tensor(tensor)
        if t.is_const:
            if tensor not in self.const_symbols:
                sym = f"g_t{tensor}"
                self.decls.append(f"// tensor {tensor} \"{_comment(t.name)}\": {t.dtype.lower()} {list(t.shape)}\n"
                                  f"alignas(16) const {t.ctype} {sym}[{max(t.size, 1)}] = {{\n"
                                  f"{c_array_body(t.data) if t.size else '    0,'}\n}};")
                self.flash_bytes += t.nbytes
                self.const_symbols[tensor] = sym
            return self.const_symbols[tensor]
        return f"reinterpret_cast<{t.ctype}*>(g_{self.name}_activations + kT{tensor})"

    def init_check(self, statement: str) -> None:
        """A statement for ``model_init()`` (e.g. a check that a CMSIS-NN buffer size fits the planned
        scratch: ``if (arm_..._get_buffer_size(&dims) > N) return <1 + op index>;``, see :meth:`fail`)."""
        self.init.append(statement)

    def fail(self) -> str:
        """The statement that ends ``model_invoke()`` or ``model_init()`` with the current op's failure status
        (1 + its index, so a failing status names the op)."""
        return f"return {1 + self.op.index};" if self.op is not None else "return 1;"

    def overlap(self, distance: Optional[int]) -> None:
        """Declare that the current op's kernel may write its output starting ``distance`` bytes (or more)
        below its first input, over it (a raster-order kernel: :func:`edgekd.engine.plan.overlap_distance`).
        The planner uses it where that input is read by no later op; None declares nothing."""
        if self.op is None:
            raise RuntimeError("overlap() outside an op")
        if distance is not None:
            self.overlaps[self.op.index] = int(distance)

    def scratch(self, nbytes: int) -> str:
        """A scratch buffer of ``nbytes`` for the current op (planned; live only while it runs)."""
        if self.op is None:
            raise RuntimeError("scratch() outside an op")
        self.scratch_bytes[self.op.index] = max(int(nbytes), self.scratch_bytes.get(self.op.index, 0))
        return f"(g_{self.name}_activations + kScratch{self.op.index})"


def _comment(text: str) -> str:
    return "".join(c if c.isprintable() and c not in "\\" else "?" for c in text).replace("*/", "*?")[:80]


@dataclasses.dataclass(frozen=True)
class Generated:
    """The generated engine.

    Attributes:
        header: ``<name>_engine.h``.
        source: ``<name>_engine.cc``.
        plan: The memory plan (for ``kernels="esp-nn"``: of the reference variant, built without ``ESP_NN``).
        kernels: The kernels it calls.
        ops: (op index, op name) in execution order.
        weights_bytes: Bytes of constant arrays it emits.
        esp_nn_plans: For ``kernels="esp-nn"``: the memory plan of each ESP-NN variant (built with ``ESP_NN``).
    """

    header: str
    source: str
    plan: MemoryPlan
    kernels: str
    ops: tuple[tuple[int, str], ...]
    weights_bytes: int
    esp_nn_plans: Optional[dict[str, MemoryPlan]] = None


@dataclasses.dataclass(frozen=True)
class _Variant:
    em: Emitter
    plan: MemoryPlan
    bodies: list


def _variant(graph: Graph, emitters: list, kernels: str, name: str, esp_nn: str = "") -> _Variant:
    """Emit every op with ``kernels`` and plan the activation buffer for what they declared."""
    em = Emitter(graph, kernels, name, esp_nn=esp_nn)
    aliases: dict[int, int] = {}
    bodies = []
    for op, e in zip(graph.ops, emitters):
        em.op = op
        if e.alias and not graph.tensor(op.inputs[0]).is_const and op.outputs[0] not in graph.outputs:
            aliases[op.outputs[0]] = op.inputs[0]
            bodies.append((op, e, "  // the output shares the input's bytes: nothing to run\n"))
            continue
        bodies.append((op, e, e.emit(op, em)))
    em.op = None
    plan = plan_memory(graph, scratch=em.scratch_bytes, aliases=aliases,
                       in_place=[op.index for op, e, _ in bodies if e.in_place], overlap=em.overlaps)
    return _Variant(em, plan, bodies)


def generate(graph: Graph, *, kernels: str, name: str = "model", header_name: Optional[str] = None,
             data_header: str = "model_data.h") -> Generated:
    """Generate the engine for ``graph``.

    ``kernels="esp-nn"`` (esp-tflite-micro) emits three variants in one source, selected by the define
    esp-tflite-micro's kernels are compiled with (``ESP_NN``) and ESP-NN's sdkconfig options: the ESP-NN calls
    of its ``kernels/esp_nn/*.cc`` for ESP-NN's optimized ESP32-S3/P4 functions and for its ANSI C / generic
    ones, each with its own memory plan (:mod:`edgekd.engine.esp_nn`), and TFLM's reference kernels (as
    ``kernels="reference"``) without ``ESP_NN``. All hold the same precomputed data.

    Raises:
        UnsupportedOpError: An op has no emitter (before anything is generated).
    """
    emitters = [op_registry.get(op.name) for op in graph.ops]  # every op checked first
    header_name = header_name or f"{name}_engine.h"
    ref = _variant(graph, emitters, "reference" if kernels == "esp-nn" else kernels, name)
    ops = tuple((op.index, op.name) for op, _, _ in ref.bodies)
    header = _header(graph, name, data_header)
    if kernels != "esp-nn":
        lines = _preamble(graph, header_name, f"{kernels}; activation buffer {ref.plan.total_bytes} bytes (offline "
                                              f"plan, {len(ref.plan.buffers)} buffers)")
        return Generated(header, "\n".join(lines + _body(graph, ref)), ref.plan, kernels, ops, ref.em.flash_bytes)
    nn = {v: _variant(graph, emitters, "reference", name, esp_nn=v) for v in esp_nn.VARIANTS}
    sizes = ", ".join(f"{v} {nn[v].plan.total_bytes}" for v in esp_nn.VARIANTS)
    lines = _preamble(graph, header_name, f"esp-nn: ESP-NN where esp-tflite-micro's kernels/esp_nn/*.cc call it "
                                          f"(built with {ESP_NN_GUARD}, as ESP-IDF builds them), else TFLM's "
                                          f"reference kernels; activation buffers (bytes, offline plans): {sizes}, "
                                          f"reference {ref.plan.total_bytes}")
    lines += ["// ESP-NN's dispatch header picks its variant (ANSI C, generic, ESP32-S3, ESP32-P4) from sdkconfig.",
              "#if defined(ESP_PLATFORM)", "#include \"sdkconfig.h\"", "#endif", "",
              f"#if {esp_nn.REFERENCE_CONDITION}",
              f"// ---- TFLM reference kernels ({ref.plan.total_bytes} B activation buffer) ----"]
    lines += _body(graph, ref)
    for v in esp_nn.VARIANTS:
        cond = esp_nn.CONDITIONS[v]
        lines += [f"#elif {cond}" if cond else "#else",
                  f"// ---- ESP-NN, {v} variant ({nn[v].plan.total_bytes} B activation buffer) ----"]
        lines += _body(graph, nn[v])
    lines += [f"#endif  // {ESP_NN_GUARD}", ""]
    flash = max(x.em.flash_bytes for x in (ref, *nn.values()))
    return Generated(header, "\n".join(lines), ref.plan, kernels, ops, flash,
                     {v: x.plan for v, x in nn.items()})


def _header(graph: Graph, name: str, data_header: str) -> str:
    guard = f"EDGEKD_{name.upper()}_ENGINE_H_"
    inp, out = graph.tensor(graph.inputs[0]), graph.tensor(graph.outputs[0])
    return f"""// Generated by edgekd (compiled engine). Do not edit.
// The model as code: no flatbuffer, no interpreter. Call {name}_init() once, write the input,
// call {name}_invoke(), read the output. The quantization constants are in {data_header}.
#ifndef {guard}
#define {guard}

#include <stddef.h>
#include <stdint.h>

#include "{data_header}"

#ifdef __cplusplus
extern "C" {{
#endif

// 0 on success.
int {name}_init(void);
// The input tensor ({inp.dtype.lower()} {list(inp.shape)}) and its size in bytes.
{inp.ctype}* {name}_input(void);
size_t {name}_input_bytes(void);
// The output tensor ({out.dtype.lower()} {list(out.shape)}) and its size in bytes.
{out.ctype}* {name}_output(void);
size_t {name}_output_bytes(void);
// Runs the model on the input: 0 on success, else 1 + the index of the op that failed.
int {name}_invoke(void);
// Bytes of the static activation buffer (every activation and scratch buffer, planned offline).
size_t {name}_activation_bytes(void);

#ifdef __cplusplus
}}  // extern "C"
#endif

#endif  // {guard}
"""


def _preamble(graph: Graph, header_name: str, kernels_note: str) -> list[str]:
    return ["// Generated by edgekd (compiled engine). Do not edit.",
            f"// TFLite sha256: {graph.sha256}",
            f"// Kernels: {kernels_note}.",
            f"#include \"{header_name}\"", "", "#include <stddef.h>", "#include <stdint.h>", "#include <string.h>", ""]


def _body(graph: Graph, v: _Variant) -> list[str]:
    """The includes, the planned buffer, the constant data and the functions of one variant."""
    em, plan, bodies = v.em, v.plan, v.bodies
    name = em.name
    lines = [f"#include \"{h}\"" for h in em.includes]
    if (plan.overlapped() or em.non_mve) and em.kernels == "cmsis-nn":
        # The overlapping buffers rely on the raster order of the non-MVE CMSIS-NN kernels (the MVE
        # depthwise path walks channel blocks over the whole image); a 3x3 depthwise without scratch on
        # the wrapper taking arm_depthwise_conv_3x3_s8, which MVE builds do not.
        lines += ["", "#if defined(ARM_MATH_MVEI)",
                  "#error \"this engine's memory plan relies on the non-MVE CMSIS-NN kernels; use the interpreter "
                  "on MVE targets\"", "#endif"]
    lines += ["", "namespace {", "",
              f"constexpr size_t kActivationBytes = {max(plan.total_bytes, 1)};",
              "// Every activation and scratch buffer, at the offsets of the offline memory plan.",
              f"alignas(16) uint8_t g_{name}_activations[kActivationBytes];", ""]
    for t in sorted(plan.offsets):
        tt = graph.tensor(t)
        lines.append(f"constexpr size_t kT{t} = {plan.offsets[t]};  // \"{_comment(tt.name)}\" "
                     f"{tt.dtype.lower()} {list(tt.shape)} {tt.nbytes} B")
    for k in sorted(plan.scratch_offsets):
        lines.append(f"constexpr size_t kScratch{k} = {plan.scratch_offsets[k]};  // scratch of op {k}, "
                     f"{em.scratch_bytes[k]} B")
    lines += [""] + em.decls + ["", "}  // namespace", "", 'extern "C" {', ""]
    inp, out = graph.inputs[0], graph.outputs[0]
    ti, to = graph.tensor(inp), graph.tensor(out)
    init = "".join(f"  {s}\n" for s in em.init)
    lines += ["// Everything TFLM's Prepare computes is precomputed; this only checks the planned scratch sizes.",
              f"int {name}_init(void) {{\n{init}  return 0;\n}}",
              f"{ti.ctype}* {name}_input(void) {{ return {em.ptr(inp)}; }}",
              f"size_t {name}_input_bytes(void) {{ return {ti.nbytes}; }}",
              f"{to.ctype}* {name}_output(void) {{ return {em.ptr(out)}; }}",
              f"size_t {name}_output_bytes(void) {{ return {to.nbytes}; }}",
              f"size_t {name}_activation_bytes(void) {{ return kActivationBytes; }}", "",
              f"int {name}_invoke(void) {{"]
    by_index = {op.index: (op, body) for op, _, body in bodies}
    for k in plan.order:
        op, body = by_index[k]
        lines += [f"  {{  // op {k}: {op.name}", body.rstrip("\n"), "  }"]
    lines += ["  return 0;", "}", "", '}  // extern "C"', ""]
    return lines
