"""The offline memory plan: every activation and scratch buffer at a fixed offset in one static buffer.

Lifetimes come from the graph (a tensor lives from the op that writes it, or
the start for model inputs, to the last op that reads it, or the end for model
outputs). Buffers are placed greedily, largest first, at the lowest offset
that does not overlap a buffer live at the same time — the algorithm of TFLM's
``GreedyMemoryPlanner``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Collection, Mapping, Optional

from edgekd.engine.graph import Graph


@dataclasses.dataclass(frozen=True)
class Buffer:
    """One planned buffer.

    Attributes:
        name: ``"t<index>"`` for a tensor, ``"scratch<op>"`` for an op's scratch.
        size: Bytes.
        first: First step (position in :attr:`MemoryPlan.order`) it is live.
        last: Last step it is live.
        offset: Its offset in the activation buffer.
        tensors: The tensors it holds (several when aliased or computed in place).
    """

    name: str
    size: int
    first: int
    last: int
    offset: int
    tensors: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Where every activation lives.

    Attributes:
        order: Op indices in execution order.
        buffers: Every planned buffer.
        offsets: Tensor index -> offset (every activation tensor, aliases included).
        scratch_offsets: Op index -> offset of its scratch buffer.
        total_bytes: Size of the activation buffer.
        alignment: Offsets are multiples of this.
    """

    order: tuple[int, ...]
    buffers: tuple[Buffer, ...]
    offsets: Mapping[int, int]
    scratch_offsets: Mapping[int, int]
    total_bytes: int
    alignment: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"order": list(self.order), "total_bytes": self.total_bytes, "alignment": self.alignment,
                "buffers": [dataclasses.asdict(b) for b in self.buffers]}


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def plan_memory(graph: Graph, *, scratch: Optional[Mapping[int, int]] = None,
                aliases: Optional[Mapping[int, int]] = None, alignment: int = 4,
                in_place: Collection[int] = ()) -> MemoryPlan:
    """Plan the activation buffer.

    Args:
        graph: The model.
        scratch: Op index -> scratch bytes it needs while it runs.
        aliases: Tensor -> tensor whose bytes it shares (a RESHAPE's output and input).
        alignment: Offsets are rounded up to this.
        in_place: Ops that may write their output over their first input (unused here).

    Returns:
        The :class:`MemoryPlan`.
    """
    scratch = dict(scratch or {})
    aliases = dict(aliases or {})
    order = tuple(op.index for op in graph.ops)
    step = {k: s for s, k in enumerate(order)}
    end = len(order)

    def root(t: int) -> int:
        while t in aliases:
            t = aliases[t]
        return t

    live: dict[int, list[int]] = {}
    members: dict[int, list[int]] = {}
    for t in graph.activations():
        r = root(t)
        members.setdefault(r, []).append(t)
        first = -1 if t in graph.inputs else end
        live.setdefault(r, [end, -1])
        live[r][0] = min(live[r][0], first)
    for op in graph.ops:
        s = step[op.index]
        for t in op.outputs:
            if t >= 0 and t in members.get(root(t), []):
                live[root(t)][0] = min(live[root(t)][0], s)
        for t in (*op.inputs, *op.outputs):
            if t >= 0 and root(t) in live:
                live[root(t)][1] = max(live[root(t)][1], s)
    for t in graph.outputs:
        if root(t) in live:
            live[root(t)][1] = end
    items = [(f"t{r}", _align(graph.tensor(r).nbytes, alignment), lo, hi, tuple(members[r]))
             for r, (lo, hi) in live.items()]
    items += [(f"scratch{k}", _align(n, alignment), step[k], step[k], ()) for k, n in scratch.items() if n > 0]
    buffers = _greedy(items)
    offsets = {t: b.offset for b in buffers for t in b.tensors}
    scratch_offsets = {int(b.name[7:]): b.offset for b in buffers if b.name.startswith("scratch")}
    total = max((b.offset + b.size for b in buffers), default=0)
    return MemoryPlan(order, tuple(buffers), offsets, scratch_offsets, total, alignment)


def _greedy(items: list[tuple[str, int, int, int, tuple[int, ...]]]) -> list[Buffer]:
    """Largest first, each at the lowest offset clear of every placed buffer whose lifetime overlaps."""
    placed: list[Buffer] = []
    for name, size, lo, hi, tensors in sorted(items, key=lambda it: (-it[1], it[2], it[0])):
        clash = sorted((b.offset, b.offset + b.size) for b in placed if not (b.last < lo or hi < b.first))
        offset = 0
        for start, stop in clash:
            if offset + size <= start:
                break
            offset = max(offset, stop)
        placed.append(Buffer(name, size, lo, hi, offset, tensors))
    return sorted(placed, key=lambda b: (b.offset, b.name))
