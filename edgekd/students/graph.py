"""Walk a Keras model's layer graph in execution order.

Shared by :mod:`edgekd.profile` (which counts what each layer costs) and
:func:`edgekd.students.shrink` (which rebuilds the graph). Sequential models
are walked through their functional graph; layers that are themselves models
are expanded into their own layers, prefixed with the sub-model's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from edgekd.errors import invalid_value


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """One layer call: the layer, its input and output tensor ids."""

    layer: Any
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Graph:
    """A flat, topologically ordered view of a Keras model."""

    nodes: tuple[GraphNode, ...]
    shapes: dict  # tensor id -> shape tuple with batch 1
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def consumers(self) -> dict[int, list[int]]:
        """Tensor id -> indices of the nodes reading it."""
        out: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for t in n.inputs:
                out.setdefault(t, []).append(i)
        return out

    def producer(self) -> dict[int, int]:
        """Tensor id -> index of the node writing it."""
        return {t: i for i, n in enumerate(self.nodes) for t in n.outputs}


def _flat(x: Any) -> list:
    """Tensors of a node's inputs/outputs as a flat list (tf-keras gives a bare tensor for one)."""
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _flat(item)]
    return [] if x is None else [x]


def _shape(t: Any) -> tuple[int, ...]:
    dims = tuple(t.shape)
    return tuple(1 if d is None else int(d) for d in dims)


def ensure_built(model: Any, input_shape: Optional[tuple[int, ...]] = None) -> Any:
    """Return a functional view of ``model`` (building a Sequential if needed)."""
    import keras  # Keras pulls TensorFlow: loaded on first use (import edgekd, edgekd --help stay fast)

    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None:
            if input_shape is None:
                raise invalid_value(
                    "input_shape", "the input shape (H, W, C) of a Sequential model that has no Input layer",
                    input_shape,
                )
            model.build((None, *input_shape))
        if getattr(model, "_functional", None) is None:
            # Built Sequential without an explicit Input layer: wrap it in a functional graph.
            shape = tuple(model.input_shape[1:]) if input_shape is None else tuple(input_shape)
            inp = keras.Input(shape=shape)
            x = inp
            for layer in model.layers:
                x = layer(x)
            return keras.Model(inp, x, name=model.name)
        return model._functional
    if not hasattr(model, "_nodes_by_depth"):
        raise invalid_value("model", "a Sequential or Functional keras.Model", type(model).__name__)
    return model


def walk(model: Any, input_shape: Optional[tuple[int, ...]] = None) -> Graph:
    """Flatten ``model`` into a :class:`Graph` (nested models are expanded).

    Args:
        model: A Sequential or Functional ``keras.Model``.
        input_shape: Needed only for a Sequential model without an Input layer.
    """
    fn = ensure_built(model, input_shape)
    nodes: list[GraphNode] = []
    shapes: dict[int, tuple[int, ...]] = {}
    alias: dict[int, int] = {}

    def key(t: Any) -> int:
        k = id(t)
        while k in alias:
            k = alias[k]
        return k

    def visit(fn: Any, prefix: str) -> None:
        nb = fn._nodes_by_depth
        for depth in sorted(nb, reverse=True):
            for node in nb[depth]:
                op = getattr(node, "operation", None) or node.layer  # Keras 3 / tf-keras
                if node.is_input:
                    for t in _flat(node.outputs):
                        shapes.setdefault(key(t), _shape(t))
                    continue
                ins = tuple(key(t) for t in _flat(node.input_tensors))
                if hasattr(op, "_nodes_by_depth") or hasattr(op, "_functional"):
                    inner = ensure_built(op)
                    for it, ot in zip(_flat(inner.inputs), _flat(node.input_tensors)):
                        alias[id(it)] = key(ot)
                    visit(inner, f"{prefix}{op.name}/")
                    for it, ot in zip(_flat(inner.outputs), _flat(node.outputs)):
                        alias[id(ot)] = key(it)
                    continue
                outs = tuple(key(t) for t in _flat(node.outputs))
                for t in _flat(node.outputs):
                    shapes[key(t)] = _shape(t)
                nodes.append(GraphNode(op, prefix + op.name, ins, outs))

    visit(fn, "")
    return Graph(
        nodes=tuple(nodes),
        shapes=shapes,
        inputs=tuple(key(t) for t in _flat(fn.inputs)),
        outputs=tuple(key(t) for t in _flat(fn.outputs)),
    )
