"""The offline memory plan: every activation and scratch buffer at a fixed offset in one static buffer.

A step is a position in the execution order; a buffer is live from the step
that writes it (step 0 for the model input) to the last step that reads it
(the last step for the model output); scratch lives only during its op.

The planner does what TFLM's ``GreedyMemoryPlanner`` cannot, because it plans
offline for the whole program:

* **Operator reordering.** Any topological order of the ops is a valid
  program. For small graphs a dynamic program over the sets of executed ops
  finds the order with the lowest peak of live bytes; for larger ones a
  list-scheduling heuristic (run the ready op that frees the most) proposes
  one. The flatbuffer's order is always a candidate and wins ties.
* **Aliases** (RESHAPE and friends): the output is the input's bytes, one buffer.
* **In-place execution**: an op flagged ``in_place`` writes its output over
  its first input when no later op reads that input and it is neither a model
  input (the caller's input stays intact) nor a model output.
* **Overlapping input and output** (TinyEngine/MCUNet style): an op whose
  emitter declares a distance ``d`` (:func:`overlap_distance`) may write its
  output starting ``d`` bytes below its first input, over the input's head,
  when that input is read by no later op and is neither a model input nor a
  model output. The pair then needs ``max(out, d + in)`` bytes instead of
  ``out + in``.
* **Placement**: several greedy placements (TFLM's own order among them, and
  TFLM's 16-byte placement kept as is) and, for small problems, seeded random
  perturbations; the smallest wins, and it stops as soon as one reaches the
  lower bound (the largest sum of bytes live at one step).

:func:`tflm_greedy` is a port of TFLM's ``GreedyMemoryPlanner`` (TFLM's
buffer order and 16-byte alignment); :attr:`MemoryPlan.tflm_greedy_bytes` is
what it plans for the model as TFLM sees it (flatbuffer order, one buffer per
tensor, TFLM's lifetimes), the yardstick the plan must not exceed.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from typing import AbstractSet, Any, Collection, Mapping, Optional, Sequence

from edgekd.engine.graph import Graph

TFLM_ALIGNMENT = 16  # MicroArenaBufferAlignment()
_DP_STATES = 20000  # sets of executed ops the exact reordering may visit before it gives up
_RANDOM_PLACEMENTS = 48  # seeded perturbed placements tried when there are few buffers
_RANDOM_MAX_BUFFERS = 80


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
        tflm_greedy_bytes: What TFLM's ``GreedyMemoryPlanner`` plans for the same model and scratch
            (flatbuffer order, one buffer per tensor, 16-byte alignment).
        lower_bound_bytes: The largest sum of bytes live at one step of :attr:`order`, an output allowed to
            overlap its input counted with it as ``max(out, distance + in)`` (no plan of these buffers is smaller).
        in_place: Ops whose output is written over their first input.
        strategy: The placement that won.
        overlaps: Op -> ``(input tensor, output tensor, distance)`` for every op whose output this plan was
            allowed to start ``distance`` bytes (or more) below its first input, over it (see
            :func:`overlap_distance`); :meth:`overlapped` says which actually do.
    """

    order: tuple[int, ...]
    buffers: tuple[Buffer, ...]
    offsets: Mapping[int, int]
    scratch_offsets: Mapping[int, int]
    total_bytes: int
    alignment: int
    tflm_greedy_bytes: int = 0
    lower_bound_bytes: int = 0
    in_place: tuple[int, ...] = ()
    strategy: str = ""
    overlaps: Mapping[int, tuple[int, int, int]] = dataclasses.field(default_factory=dict)

    def overlapped(self) -> dict[int, int]:
        """Op -> bytes its output's buffer shares with its input's in this plan (the ops of :attr:`overlaps`
        whose pair the placement did overlap)."""
        ends = {t: b.offset + b.size for b in self.buffers for t in b.tensors}
        out = {}
        for k, (t, u, _) in self.overlaps.items():
            shared = min(ends[t], ends[u]) - max(self.offsets[t], self.offsets[u])
            if shared > 0:
                out[k] = shared
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"order": list(self.order), "total_bytes": self.total_bytes, "alignment": self.alignment,
                "tflm_greedy_bytes": self.tflm_greedy_bytes, "lower_bound_bytes": self.lower_bound_bytes,
                "in_place": list(self.in_place), "strategy": self.strategy,
                "overlaps": {str(k): {"input": t, "output": u, "distance": d, "bytes": self.overlapped().get(k, 0)}
                             for k, (t, u, d) in self.overlaps.items()},
                "buffers": [dataclasses.asdict(b) for b in self.buffers]}

    def report(self) -> str:
        """A text table: buffer, tensors, size, offset, lifetime; then the totals."""
        rows = [("buffer", "tensors", "size", "offset", "lifetime")]
        for b in sorted(self.buffers, key=lambda b: (b.offset, b.first, b.name)):
            rows.append((b.name, ",".join(map(str, b.tensors)) or "-", str(b.size), str(b.offset),
                         f"{b.first}..{b.last}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 .rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += ["", f"order: {' '.join(map(str, self.order))}",
                  f"in place: {' '.join(map(str, self.in_place)) or '-'}",
                  "output over input: " + (", ".join(
                      f"op {k} ({self.offsets[self.overlaps[k][0]] - self.offsets[self.overlaps[k][1]]} B below, "
                      f"min {self.overlaps[k][2]} B; {n} B shared)" for k, n in sorted(self.overlapped().items()))
                                               or "-"),
                  f"total {self.total_bytes} B (alignment {self.alignment}, {self.strategy}); "
                  f"lower bound {self.lower_bound_bytes} B; TFLM greedy {self.tflm_greedy_bytes} B"]
        return "\n".join(lines)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def overlap_distance(input_shape: Sequence[int], output_shape: Sequence[int], stride_h: int, pad_top: int, *,
                     itemsize: int = 1, slack_rows: int = 0) -> Optional[int]:
    """The least distance (bytes) a raster-order kernel's output may start below its input and overlap it.

    For a kernel that writes its NHWC output in raster order (row by row, each row's pixels left to
    right, each pixel's channels) and computes output row ``y`` from input rows ``y * stride_h - pad_top``
    onward only. With output row pitch ``Ro = Wo * Co * itemsize``, input row pitch ``Ri = Wi * Ci *
    itemsize``, output at ``O`` and input at ``I = O + d``: while output row ``y`` is computed, the bytes
    written are at most those of rows ``0..y`` (the whole current row, counted as written: a kernel may
    write a pixel's first channels before it has read that pixel's whole window) plus ``slack_rows``
    rows a kernel may write ahead, and no input byte below row ``max(0, y * stride_h - pad_top)`` is read
    again. So it is safe when, for every ``y`` in ``0..Ho-1``::

        O + min(y + 1 + slack_rows, Ho) * Ro <= I + max(0, y * stride_h - pad_top) * Ri

    and the distance is the largest ``min(y + 1 + slack_rows, Ho) * Ro - max(0, y * stride_h - pad_top) * Ri``
    (at least 0; never more than the output's bytes, which is no overlap at all). Batch 1 only.

    Returns:
        ``d``, or None when the rule does not apply (batch > 1, not 4-D).
    """
    if len(input_shape) != 4 or len(output_shape) != 4 or input_shape[0] != 1 or output_shape[0] != 1:
        return None
    _, _, wi, ci = input_shape
    _, ho, wo, co = output_shape
    ro, ri = wo * co * itemsize, wi * ci * itemsize
    return max([0] + [min(y + 1 + slack_rows, ho) * ro - max(0, y * stride_h - pad_top) * ri for y in range(ho)])


# ----------------------------------------------------------------------------- TFLM's planner


def tflm_lifetimes(graph: Graph, scratch: Optional[Mapping[int, int]] = None) -> list[tuple[int, int, int]]:
    """``(bytes, first_created, last_used)`` per buffer, in the order TFLM adds them to its planner.

    As ``AllocationInfoBuilder::MarkAllocationLifetimes`` computes them: model inputs at scope 0, op
    ``i`` at scope ``i + 1``, model outputs up to the last scope; tensors by index, then the scratch
    buffers (requested in op order). Sizes are TFLM's unaligned byte lengths.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    acts = set(graph.activations())
    for t in graph.inputs:
        first.setdefault(t, 0)
        last[t] = 0
    for i, op in enumerate(graph.ops):
        for t in op.outputs:
            first.setdefault(t, i + 1)
        for t in (*op.inputs, *op.outputs):
            if t >= 0:
                last[t] = i + 1
    for t in graph.outputs:
        first.setdefault(t, len(graph.ops))
        last[t] = len(graph.ops)
    out = [(graph.tensor(t).nbytes, first[t], last[t]) for t in sorted(acts)
           if graph.tensor(t).nbytes and t in first]
    pos = {op.index: i for i, op in enumerate(graph.ops)}
    out += [(n, pos[k] + 1, pos[k] + 1) for k, n in sorted((scratch or {}).items(), key=lambda kv: pos[kv[0]])
            if n > 0]
    return out


def tflm_greedy(buffers: Sequence[tuple[int, int, int]], alignment: int = TFLM_ALIGNMENT) -> tuple[list[int], int]:
    """TFLM's ``GreedyMemoryPlanner``: offsets of ``(bytes, first, last)`` buffers and the arena size.

    Sizes are rounded up to ``alignment`` (``AlignSizeUp`` in ``CreatePlan``); buffers are placed
    largest first (ties: the later-added first, as its reversed bubble sort leaves them), each at the
    lowest offset that clears the buffers already placed whose lifetimes overlap.

    Returns:
        ``(offsets in the order given, GetMaximumMemorySize())``.
    """
    sizes = [_align(n, alignment) for n, _, _ in buffers]
    order = sorted(reversed(range(len(buffers))), key=lambda i: -sizes[i])
    spans = [(lo, hi) for _, lo, hi in buffers]
    offsets = _first_fit(order, sizes, spans, best_fit=False)
    return offsets, max((o + s for o, s in zip(offsets, sizes)), default=0)


def _first_fit(order: Sequence[int], sizes: Sequence[int], spans: Sequence[tuple[int, int]], *,
               best_fit: bool, reduced: Optional[Mapping[tuple[int, int], int]] = None) -> list[int]:
    """Place buffers in ``order``: each at the lowest (or, with ``best_fit``, the tightest) gap among the
    placed buffers that overlap it in time (``CalculateOffsetsIfNeeded``'s walk over its offset list).

    ``reduced[(i, j)] = d``: buffer ``i`` may start ``d`` or more bytes below buffer ``j`` and run into it
    (an output over its input): as seen by ``j``, ``i`` extends ``d`` bytes instead of its size.
    """
    reduced = reduced or {}
    offsets = [0] * len(sizes)
    placed: list[tuple[int, int, int]] = []  # (offset, seq, id), kept sorted by offset then placement
    for seq, i in enumerate(order):
        lo, hi = spans[i]
        # Each placed buffer j live at the same time forbids the starts strictly between
        # off_j - extent(i below j) and off_j + extent(j below i).
        walls = sorted(((off - reduced.get((i, j), sizes[i]), off + reduced.get((j, i), sizes[j]))
                        for off, _, j in placed if not (spans[j][0] > hi or lo > spans[j][1])),
                       key=lambda w: w[0])
        candidate, best = 0, None
        for top, end in walls:
            if top >= candidate:
                if not best_fit:
                    break
                if best is None or top - candidate < best[0]:
                    best = (top - candidate, candidate)
            candidate = max(candidate, end)
        if best_fit and best is not None:
            candidate = best[1]
        offsets[i] = candidate
        bisect.insort(placed, (candidate, seq, i))
    return offsets


# ----------------------------------------------------------------------------- the model's buffers


@dataclasses.dataclass
class _Problem:
    """What planning needs of the graph: tensor groups (aliases), producers, consumers, dependencies."""

    graph: Graph
    alignment: int
    scratch: dict[int, int]
    in_place: frozenset[int]
    ops: dict[int, Any]  # op index -> Op
    root: dict[int, int]  # activation tensor -> its alias group's root
    members: dict[int, list[int]]  # root -> tensors
    consumers: dict[int, set[int]]  # root -> ops that read a member
    producer: dict[int, int]  # root -> op that writes it (absent: a model input)
    preds: dict[int, set[int]]  # op -> ops it must follow
    outputs: frozenset[int]  # roots of model outputs
    inputs: frozenset[int]  # roots of model inputs
    overlap: dict[int, int] = dataclasses.field(default_factory=dict)  # op -> aligned least distance

    sizes: dict[int, int] = dataclasses.field(default_factory=dict)

    def size(self, r: int) -> int:
        """Aligned bytes of group ``r``."""
        if r not in self.sizes:
            self.sizes[r] = _align(max(self.graph.tensor(t).nbytes for t in self.members[r]), self.alignment)
        return self.sizes[r]


def _problem(graph: Graph, scratch: Mapping[int, int], aliases: Mapping[int, int], in_place: Collection[int],
             alignment: int, overlap: Optional[Mapping[int, Optional[int]]] = None) -> _Problem:
    acts = set(graph.activations())

    def find(t: int) -> int:
        hops = 0
        while t in aliases and aliases[t] in acts and hops <= len(aliases):
            t, hops = aliases[t], hops + 1
        return t

    root = {t: find(t) for t in acts}
    members: dict[int, list[int]] = {}
    for t in sorted(acts):
        members.setdefault(root[t], []).append(t)
    consumers: dict[int, set[int]] = {r: set() for r in members}
    writer: dict[int, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            if t in root:
                consumers[root[t]].add(op.index)
        for t in op.outputs:
            if t in root:
                writer.setdefault(t, op.index)
    preds = {op.index: {writer[t] for t in op.inputs if t in writer and writer[t] != op.index} for op in graph.ops}
    return _Problem(graph, max(1, alignment), {k: int(n) for k, n in scratch.items() if n > 0},
                    frozenset(in_place), {op.index: op for op in graph.ops}, root, members, consumers,
                    {r: writer[r] for r in members if r in writer}, preds,
                    frozenset(root[t] for t in graph.outputs if t in root),
                    frozenset(root[t] for t in graph.inputs if t in root),
                    {k: _align(int(d), max(1, alignment)) for k, d in (overlap or {}).items() if d is not None})


def _in_place_group(p: _Problem, k: int, done_after: AbstractSet[int]) -> Optional[int]:
    """The group op ``k`` may write its output over: its first input's, when it is an intermediate
    activation of the output's shape and type that no op outside ``done_after`` reads and that is
    not among ``k``'s other inputs or outputs."""
    if k not in p.in_place:
        return None
    op = p.ops[k]
    if not op.inputs or op.inputs[0] not in p.root or not op.outputs or op.outputs[0] not in p.root:
        return None
    g, out = p.root[op.inputs[0]], p.root[op.outputs[0]]
    if g in p.outputs or g in p.inputs or out == g or out != op.outputs[0]:
        return None
    if any(p.root.get(t) == g and t != op.inputs[0] for t in op.inputs[1:]):
        return None
    if any(p.root.get(t) == g for t in op.outputs[1:]):
        return None
    if not p.consumers[g] <= done_after:
        return None
    # Element i of the output is computed from element i of the input: only an input of the output's own
    # shape and type (a broadcast input is read again after its bytes would be overwritten).
    src, dst = p.graph.tensor(op.inputs[0]), p.graph.tensor(op.outputs[0])
    if src.shape != dst.shape or src.dtype != dst.dtype:
        return None
    return g


_Item = tuple[str, int, int, int, tuple[int, ...]]  # (name, size, first, last, tensors)


def _buffers(p: _Problem, order: Sequence[int]) -> tuple[list[_Item], tuple[int, ...]]:
    """The buffers of ``order`` (alias groups, merged when an op runs in place) and the in-place ops."""
    step = {k: s for s, k in enumerate(order)}
    parent = {r: r for r in p.members}

    def find(r: int) -> int:
        while parent[r] != r:
            r = parent[r]
        return r

    done: set[int] = set()
    used = []
    for k in order:
        done.add(k)
        g = _in_place_group(p, k, done)
        if g is not None:
            parent[p.root[p.ops[k].outputs[0]]] = find(g)
            used.append(k)
    spans: dict[int, list] = {}
    last_step = len(order) - 1
    for r in sorted(p.members):
        lo = step[p.producer[r]] if r in p.producer else 0
        hi = max([lo] + [step[c] for c in p.consumers[r]] + ([last_step] if r in p.outputs else []))
        cur = spans.setdefault(find(r), [lo, hi, 0, []])
        cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
        cur[2] = max(cur[2], p.size(r))
        cur[3] += p.members[r]
    items = [(f"t{r}", size, lo, hi, tuple(sorted(ts))) for r, (lo, hi, size, ts) in sorted(spans.items())]
    items += [(f"scratch{k}", _align(n, p.alignment), step[k], step[k], ())
              for k, n in sorted(p.scratch.items(), key=lambda kv: step[kv[0]])]
    return items, tuple(used)


def _overlap_pairs(p: _Problem, order: Sequence[int], items: Sequence[_Item]) -> dict[int, tuple[int, int, int]]:
    """Op -> ``(input item, output item, distance)`` for every op with a declared distance whose output may
    overlap its first input: the input's buffer is read by no later op, holds no model input or output and
    no other operand of the op, and the output's buffer starts at the op."""
    where = {t: n for n, it in enumerate(items) for t in it[4]}
    io = set(p.graph.inputs) | set(p.graph.outputs)
    pairs = {}
    for s, k in enumerate(order):
        op = p.ops[k]
        if k not in p.overlap or not op.inputs or not op.outputs:
            continue
        g, x = where.get(op.inputs[0]), where.get(op.outputs[0])
        if g is None or x is None or g == x or items[g][3] != s or items[x][2] != s:
            continue
        if io & set(items[g][4]) or any(where.get(t) in (g, x) for t in (*op.inputs[1:], *op.outputs[1:])):
            continue
        pairs[k] = (g, x, p.overlap[k])
    return pairs


def _lower_bound(items: Sequence[_Item], pairs: Optional[Mapping[int, tuple[int, int, int]]] = None) -> int:
    """The largest sum of sizes of the buffers live at one step (an overlapping pair counted as the
    ``max(out, d + in)`` bytes it needs at its op's step)."""
    saving: dict[int, int] = {}
    for g, x, d in (pairs or {}).values():
        s = items[x][2]
        saving[s] = saving.get(s, 0) + min(items[g][1], max(0, items[x][1] - d))
    steps = {s for it in items for s in (it[2], it[3])}
    return max((sum(it[1] for it in items if it[2] <= s <= it[3]) - saving.get(s, 0) for s in steps), default=0)


# ----------------------------------------------------------------------------- reordering


def _transition(p: _Problem, done: frozenset[int], live: int, k: int, produced: Sequence[int]) -> tuple[int, int]:
    """(bytes live while ``k`` runs after ``done``, bytes live after it)."""
    after = done | {k}
    new = sum(p.size(r) for r in produced)
    peak = live + new + p.scratch.get(k, 0)
    g = _in_place_group(p, k, after)
    if g is not None:
        peak -= p.size(p.root[p.ops[k].outputs[0]])
    elif k in p.overlap and p.ops[k].inputs and p.ops[k].outputs and p.ops[k].inputs[0] in p.root:
        g, out = p.root[p.ops[k].inputs[0]], p.root.get(p.ops[k].outputs[0])
        if out is not None and out != g and g not in p.inputs | p.outputs and p.consumers[g] <= after:
            peak -= min(p.size(g), max(0, p.size(out) - p.overlap[k]))  # the pair needs max(out, d + in)
    freed = {p.root[t] for t in p.ops[k].inputs if t in p.root}
    freed = {r for r in freed if r not in p.outputs and p.consumers[r] <= after}
    dead = sum(p.size(r) for r in produced if r not in p.outputs and not p.consumers[r])
    return peak, live + new - dead - sum(p.size(r) for r in freed)


def _produced(p: _Problem) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {k: [] for k in p.ops}
    for r, k in p.producer.items():
        out[k].append(r)
    return out


def _best_order(p: _Problem) -> Optional[tuple[int, ...]]:
    """The topological order with the lowest peak of live bytes (dynamic programming over the sets of
    executed ops, visited in flatbuffer order so that ties keep it); None past ``_DP_STATES`` sets."""
    produced = _produced(p)
    live0 = sum(p.size(r) for r in p.inputs)
    layer: dict[frozenset[int], tuple[int, int, Any, int]] = {frozenset(): (0, live0, None, -1)}
    visited = 1
    for _ in range(len(p.ops)):
        nxt: dict[frozenset[int], tuple[int, int, Any, int]] = {}
        for done, (peak, live, _, _) in layer.items():
            for k in p.ops:
                if k in done or not p.preds[k] <= done:
                    continue
                step_peak, after = _transition(p, done, live, k, produced[k])
                key = done | {k}
                cand = (max(peak, step_peak), after, (done, layer), k)
                if key not in nxt or cand[:2] < nxt[key][:2]:
                    nxt[key] = cand
        visited += len(nxt)
        if visited > _DP_STATES or not nxt:
            return None
        layer = nxt
    ((_, entry),) = layer.items()
    order = []
    while entry[3] >= 0:
        order.append(entry[3])
        prev, prev_layer = entry[2]
        entry = prev_layer[prev]
    return tuple(reversed(order))


def _greedy_order(p: _Problem) -> tuple[int, ...]:
    """List scheduling: run the ready op with the smallest peak, then the largest drop in live bytes."""
    produced = _produced(p)
    done: frozenset[int] = frozenset()
    live = sum(p.size(r) for r in p.inputs)
    order = []
    while len(order) < len(p.ops):
        best = None
        for k in p.ops:
            if k not in done and p.preds[k] <= done:
                peak, after = _transition(p, done, live, k, produced[k])
                if best is None or (peak, after - live) < best[0]:
                    best = ((peak, after - live), k, after)
        _, k, live = best
        order.append(k)
        done = done | {k}
    return tuple(order)


# ----------------------------------------------------------------------------- placement


def _strategies(items: Sequence[_Item]) -> list[tuple[str, list[int]]]:
    """Orders to place the buffers in: TFLM's, then other classic greedy keys."""
    n = range(len(items))
    length = [it[3] - it[2] + 1 for it in items]
    return [
        ("tflm", sorted(reversed(n), key=lambda i: -items[i][1])),
        ("size", sorted(n, key=lambda i: (-items[i][1], -length[i], items[i][2]))),
        ("length", sorted(n, key=lambda i: (-length[i], -items[i][1], items[i][2]))),
        ("area", sorted(n, key=lambda i: (-items[i][1] * length[i], items[i][2]))),
        ("start", sorted(n, key=lambda i: (items[i][2], -items[i][1]))),
    ]


def _outputs_first(order: Sequence[int], reduced: Mapping[tuple[int, int], int]) -> list[int]:
    """``order`` with every overlapping output moved just before its input (so that it is placed first and
    its input can go ``d`` above it); chains of such pairs keep moving until no output follows its input."""
    order = list(order)
    for _ in range(len(order)):
        moved = False
        for x, g in reduced:
            if order.index(x) > order.index(g):
                order.remove(x)
                order.insert(order.index(g), x)
                moved = True
        if not moved:
            break
    return order


def _place(items: Sequence[_Item], bound: int,
           reduced: Optional[Mapping[tuple[int, int], int]] = None) -> tuple[list[int], int, str]:
    """The smallest of several greedy placements of ``items``: ``(offsets, total, strategy)``.

    ``reduced``: ``{(output item, input item): d}``, pairs whose output may start ``d`` below its input.
    """
    reduced = dict(reduced or {})
    sizes = [it[1] for it in items]
    spans = [(it[2], it[3]) for it in items]

    def total(offsets: Sequence[int]) -> int:
        return max((o + s for o, s in zip(offsets, sizes)), default=0)

    # TFLM's planner on 16-byte sizes, offsets kept: never larger than TFLM on these lifetimes.
    offs, _ = tflm_greedy([(it[1], it[2], it[3]) for it in items])
    best = (offs, total(offs), "tflm-16")
    strategies = _strategies(items)
    if reduced:
        strategies = [(f"{name}-outputs-first", _outputs_first(order, reduced)) for name, order in strategies] \
            + strategies
    candidates = [(f"{name}-{'best' if bf else 'first'}-fit", order, bf)
                  for name, order in strategies for bf in (False, True)]
    if len(items) <= _RANDOM_MAX_BUFFERS:
        rng = random.Random(15)
        for k in range(_RANDOM_PLACEMENTS):
            noise = [rng.uniform(0.75, 1.25) for _ in items]
            order = sorted(range(len(items)), key=lambda i: (-sizes[i] * noise[i], i))
            candidates.append((f"random-{k}", _outputs_first(order, reduced) if k % 4 < 2 else order, bool(k % 2)))
    for name, order, bf in candidates:
        if best[1] <= bound:
            break
        offs = _first_fit(order, sizes, spans, best_fit=bf, reduced=reduced)
        if total(offs) < best[1]:
            best = (offs, total(offs), name)
    return best


def plan_memory(graph: Graph, *, scratch: Optional[Mapping[int, int]] = None,
                aliases: Optional[Mapping[int, int]] = None, alignment: int = 4,
                in_place: Collection[int] = (), overlap: Optional[Mapping[int, Optional[int]]] = None) -> MemoryPlan:
    """Plan the activation buffer: execution order, in-place ops and every buffer's offset.

    Args:
        graph: The model.
        scratch: Op index -> scratch bytes it needs while it runs.
        aliases: Tensor -> tensor whose bytes it shares (a RESHAPE's output and input).
        alignment: Sizes and offsets are rounded up to this.
        in_place: Ops that may write their output over their first input (elementwise ops).
        overlap: Op index -> the least distance (bytes, :func:`overlap_distance`) its output may start
            below its first input and overlap it (raster-order kernels); used where that input is read by
            no later op and is no model input or output.

    Returns:
        The :class:`MemoryPlan`.
    """
    scratch = dict(scratch or {})
    p = _problem(graph, scratch, dict(aliases or {}), in_place, alignment, overlap)
    orders = [tuple(op.index for op in graph.ops)]
    if graph.ops:
        orders += [o for o in (_best_order(p), _greedy_order(p)) if o is not None and o not in orders]
    best = None
    for order in orders:
        items, used = _buffers(p, order)
        pairs = _overlap_pairs(p, order, items)
        bound = _lower_bound(items, pairs)
        offsets, total, strategy = _place(items, bound, {(x, g): d for g, x, d in pairs.values()})
        if best is None or total < best[0]:
            best = (total, order, items, used, bound, offsets, strategy, pairs)
    total, order, items, used, bound, offsets, strategy, pairs = best
    buffers = sorted((Buffer(name, size, lo, hi, off, ts) for (name, size, lo, hi, ts), off in zip(items, offsets)),
                     key=lambda b: (b.offset, b.name))
    _, tflm_total = tflm_greedy(tflm_lifetimes(graph, scratch))
    ops = {op.index: op for op in graph.ops}
    return MemoryPlan(order, tuple(buffers), {t: b.offset for b in buffers for t in b.tensors},
                      {int(b.name[7:]): b.offset for b in buffers if b.name.startswith("scratch")},
                      total, alignment, tflm_total, bound, used, strategy,
                      {k: (ops[k].inputs[0], ops[k].outputs[0], d) for k, (_, _, d) in sorted(pairs.items())})
