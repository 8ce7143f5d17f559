"""Profile data: what a model costs, per layer and in total (no rendering here)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional
import csv
import io

# MAC kinds reported by ModelProfile.macs_by_kind (stable keys; edgekd.check relies on them).
MAC_KINDS = ("conv", "depthwise", "fully_connected", "other")

_KIND_OF = {
    # TFLite op names
    "CONV_2D": "conv", "TRANSPOSE_CONV": "conv", "CONV_3D": "conv",
    "DEPTHWISE_CONV_2D": "depthwise",
    "FULLY_CONNECTED": "fully_connected", "BATCH_MATMUL": "fully_connected",
    # Keras layer classes
    "Conv1D": "conv", "Conv2D": "conv", "Conv3D": "conv",
    "Conv1DTranspose": "conv", "Conv2DTranspose": "conv",
    "DepthwiseConv1D": "depthwise", "DepthwiseConv2D": "depthwise",
    "Dense": "fully_connected", "EinsumDense": "fully_connected",
}


def mac_kind(op_type: str) -> str:
    """The MAC kind (``conv``, ``depthwise``, ``fully_connected``, ``other``) of an op or layer type."""
    return _KIND_OF.get(op_type, "other")


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """The cost of one Keras layer or one TFLite operator (batch 1).

    Attributes:
        name: Layer name (Keras) or output tensor name (TFLite).
        op_type: Keras layer class (``"Conv2D"``) or TFLite builtin op (``"CONV_2D"``).
        output_shape: Shape of the (first) output, batch included (1).
        params: Parameters stored by the layer/op. Keras: ``layer.count_params()``
            (BatchNorm counts its 4 vectors); TFLite: elements of the constant
            weight/bias/scale operands (shape and axis constants excluded).
        macs: Multiply-accumulates for one inference (see docs/profile.md for
            the counting rules per layer type).
        weight_bytes_f32: Bytes of the parameters stored as float32.
        weight_bytes_int8: Bytes of the parameters in a full-int8 TFLite model:
            int8 weights, int32 biases; BatchNorm folded into the preceding
            conv/dense costs nothing (or an int32 bias when that layer had none).
        activation_bytes: Bytes of the output tensor(s) at int8 (1 byte/element;
            TFLite: the tensor's own type). Aliased outputs (layers TFLite fuses
            away: folded BatchNorm, fused ReLU, Dropout) count 0.
        activation_bytes_f32: Same at float32 (4 bytes/element).
        secondary: For SeparableConv2D, the pointwise part's MACs (already in
            ``macs``; used to split the depthwise/pointwise kinds).
    """

    name: str
    op_type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    weight_bytes_f32: int
    weight_bytes_int8: int
    activation_bytes: int
    activation_bytes_f32: int = 0
    secondary: int = 0

    @property
    def kind(self) -> str:
        """MAC kind of this layer: ``conv``, ``depthwise``, ``fully_connected`` or ``other``."""
        return mac_kind(self.op_type)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["output_shape"] = list(self.output_shape)
        d["kind"] = self.kind
        d.pop("secondary")
        return d


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """What a model costs: per-layer rows and totals (batch 1).

    Attributes:
        name: Model name (Keras) or file name (TFLite).
        source: ``"keras"`` or ``"tflite"``.
        input_shapes: Input shapes, batch included.
        layers: One :class:`LayerProfile` per layer/op, in execution order.
        params: Total parameters (Keras: ``model.count_params()``).
        inference_params: Parameters of the inference graph, BatchNorm folded
            into its conv/dense (equals ``params`` for TFLite). Compare this
            with a TFLite profile of the converted model.
        macs: Total multiply-accumulates per inference.
        weight_bytes_f32: Parameter bytes at float32.
        weight_bytes_int8: Parameter bytes in a full-int8 model.
        flash_int8_bytes: Flash the int8 model needs: the ``.tflite`` size for
            a TFLite profile; for Keras an estimate = int8 weight bytes +
            quantization parameters + flatbuffer overhead per op and tensor.
        peak_ram_bytes: Peak live activation bytes at int8, from tensor
            lifetimes over the execution order (see :func:`peak_live_bytes`).
        peak_ram_f32_bytes: The same at float32.
        peak_ram_at: Name of the layer/op during which the peak happens.
        live_bytes: Per layer/op, the int8 activation bytes live while it
            runs (see :func:`live_bytes`); its maximum is ``peak_ram_bytes``.
        unsupported: Layers whose MACs are unknown to the profiler (counted 0).
    """

    name: str
    source: str
    input_shapes: tuple[tuple[int, ...], ...]
    layers: tuple[LayerProfile, ...]
    params: int
    inference_params: int
    macs: int
    weight_bytes_f32: int
    weight_bytes_int8: int
    flash_int8_bytes: int
    peak_ram_bytes: int
    peak_ram_f32_bytes: int
    peak_ram_at: str = ""
    unsupported: tuple[str, ...] = ()
    live_bytes: tuple[int, ...] = ()

    @property
    def macs_by_kind(self) -> dict[str, int]:
        """Total MACs per kind: ``conv``, ``depthwise``, ``fully_connected``, ``other``.

        A Keras SeparableConv2D splits into ``depthwise`` and ``conv`` (its
        pointwise 1×1 conv), as it does after conversion to TFLite.
        """
        out = dict.fromkeys(MAC_KINDS, 0)
        for layer in self.layers:
            if layer.op_type in ("SeparableConv1D", "SeparableConv2D"):
                out["depthwise"] += layer.macs - layer.secondary
                out["conv"] += layer.secondary
            else:
                out[layer.kind] += layer.macs
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the first input, batch included."""
        return self.input_shapes[0] if self.input_shapes else ()

    def layer(self, name: str) -> Optional[LayerProfile]:
        """The row named ``name``, or None."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the totals and the per-layer rows."""
        return {
            "name": self.name,
            "source": self.source,
            "input_shapes": [list(s) for s in self.input_shapes],
            "params": self.params,
            "inference_params": self.inference_params,
            "macs": self.macs,
            "macs_by_kind": self.macs_by_kind,
            "weight_bytes_f32": self.weight_bytes_f32,
            "weight_bytes_int8": self.weight_bytes_int8,
            "flash_int8_bytes": self.flash_int8_bytes,
            "peak_ram_bytes": self.peak_ram_bytes,
            "peak_ram_f32_bytes": self.peak_ram_f32_bytes,
            "peak_ram_at": self.peak_ram_at,
            "unsupported": list(self.unsupported),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The profile as JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """Per-layer rows as CSV (header line first); totals are not included."""
        buf = io.StringIO()
        cols = ["name", "op_type", "kind", "output_shape", "params", "macs", "weight_bytes_f32",
                "weight_bytes_int8", "activation_bytes", "activation_bytes_f32"]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for layer in self.layers:
            d = layer.to_dict()
            d["output_shape"] = "x".join(str(s) for s in layer.output_shape)
            w.writerow([d[c] for c in cols])
        return buf.getvalue()


def peak_live_bytes(
    steps: list[tuple[tuple[int, ...], tuple[int, ...]]],
    sizes: dict[int, int],
    graph_inputs: tuple[int, ...],
    graph_outputs: tuple[int, ...],
) -> tuple[int, int]:
    """Peak of live tensor bytes over an execution order (the maximum of :func:`live_bytes`).

    Returns:
        ``(peak_bytes, step_index)``; ``step_index`` is -1 for an empty graph
        (whose peak is its inputs).
    """
    live = live_bytes(steps, sizes, graph_inputs, graph_outputs)
    if not live:
        return sum(sizes.get(t, 0) for t in graph_inputs), -1
    peak = max(live)
    return (peak, live.index(peak)) if peak > 0 else (0, -1)


def live_bytes(
    steps: list[tuple[tuple[int, ...], tuple[int, ...]]],
    sizes: dict[int, int],
    graph_inputs: tuple[int, ...],
    graph_outputs: tuple[int, ...],
) -> list[int]:
    """Bytes of the tensors live while each step runs: edgekd's one peak-live-activation model.

    The memory model (a greedy planner without fragmentation, like TFLM's arena
    lower bound): a tensor is allocated when its producer step runs (graph
    inputs before step 0) and freed after the last step that reads it (graph
    outputs live to the end). While step ``i`` runs, its inputs and outputs are
    all live, together with every tensor produced earlier and read later.

    Args:
        steps: ``(input ids, output ids)`` per step, in execution order.
        sizes: Bytes per tensor id (missing ids and constants count 0).
        graph_inputs: Tensor ids live from the start.
        graph_outputs: Tensor ids live until the end.

    Returns:
        One figure per step.
    """
    n = len(steps)
    start: dict[int, int] = {t: -1 for t in graph_inputs}
    end: dict[int, int] = {t: -1 for t in graph_inputs}
    for i, (ins, outs) in enumerate(steps):
        for t in outs:
            start.setdefault(t, i)
            end[t] = max(end.get(t, i), i)
        for t in ins:
            if t in start:
                end[t] = max(end[t], i)
    for t in graph_outputs:
        if t in start:
            end[t] = n
    return [sum(sizes.get(t, 0) for t in start if start[t] <= i <= end[t]) for i in range(n)]
