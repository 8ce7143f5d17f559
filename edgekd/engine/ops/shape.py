"""Ops that move bytes without arithmetic: RESHAPE (and PAD, CONCATENATION…)."""

from __future__ import annotations

from edgekd.engine.codegen import Emitter
from edgekd.engine.graph import Op
from edgekd.engine.ops import register


@register("RESHAPE", alias=True)
def reshape(op: Op, em: Emitter) -> str:
    """RESHAPE: the planner gives the output the input's bytes; a copy only where it cannot (model output)."""
    src, dst = op.inputs[0], op.outputs[0]
    return f"    memcpy({em.ptr(dst)}, {em.ptr(src)}, {em.graph.tensor(dst).nbytes});\n"
