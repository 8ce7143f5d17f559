"""Derive a small student from a teacher's architecture (``shrink``)."""

from __future__ import annotations

import numbers
from typing import Any, Optional

from edgekd.distill.losses import softmax_kind
from edgekd.errors import UnsupportedLayerError, invalid_value
from edgekd.students.graph import Graph, GraphNode, walk
from edgekd.students.blocks import BN_MOMENTUM, make_divisible
from edgekd.students.builders import check_multipliers, scaled_shape

# Layers copied as they are (fresh weights): no channel count in their config.
_COPY = {
    "BatchNormalization", "LayerNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Add", "Subtract", "Multiply", "Average",
    "Maximum", "Minimum", "Concatenate", "ZeroPadding2D", "Cropping2D", "Rescaling", "UpSampling2D",
    "Resizing", "Reshape", "Permute",
}
_POOL = {"MaxPooling2D", "AveragePooling2D"}
_WEIGHTED = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Conv1D"}
_SUPPORTED = _COPY | _POOL | _WEIGHTED
# config keys ignored when comparing layers for repetition
_NOISE_KEYS = {"name", "trainable", "dtype", "seed", "kernel_initializer", "bias_initializer",
               "depthwise_initializer", "pointwise_initializer", "beta_initializer", "gamma_initializer",
               "moving_mean_initializer", "moving_variance_initializer"}


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _fit(
    cfg: dict, in_hw: tuple[int, int], *, kernel_key: Optional[str], stride_key: str, pool: bool
) -> dict:
    """Adjust kernel/stride/padding so a spatial op still fits a smaller input (never below 1×1)."""
    strides = _pair(cfg.get(stride_key) or 1)
    kernel = _pair(cfg[kernel_key]) if kernel_key else (1, 1)
    padding = cfg.get("padding", "valid")
    new_k, new_s = list(kernel), list(strides)
    for d in range(2):
        if in_hw[d] < strides[d]:
            new_s[d] = 1
        if padding == "valid" and kernel[d] > in_hw[d]:
            if pool:
                new_k[d] = in_hw[d]
            else:
                padding = "same"
    out = dict(cfg)
    out[stride_key] = tuple(new_s)
    if kernel_key:
        out[kernel_key] = tuple(new_k)
    if "padding" in cfg:
        out["padding"] = padding
    return out


def _signature(layer: Any) -> str:
    cfg = {k: v for k, v in layer.get_config().items() if k not in _NOISE_KEYS}
    return f"{type(layer).__name__}:{sorted(cfg.items(), key=lambda kv: kv[0])!r}"


def _chains(graph: Graph) -> list[list[int]]:
    """Maximal straight-line runs of node indices (each node feeds only the next)."""
    consumers = graph.consumers()
    chains: list[list[int]] = []
    cur: list[int] = []
    for i, node in enumerate(graph.nodes):
        linked = (
            bool(cur) and len(node.inputs) == 1 and node.inputs[0] in graph.nodes[cur[-1]].outputs
            and len(consumers.get(node.inputs[0], [])) == 1
        )
        if not linked:
            if len(cur) > 1:
                chains.append(cur)
            cur = []
        cur.append(i)
    if len(cur) > 1:
        chains.append(cur)
    return chains


def repeated_blocks(graph: Graph) -> list[tuple[int, int, int]]:
    """Runs of identical, shape-preserving blocks: ``(first node index, period, repeats)``.

    A block is a straight-line sequence of layers starting at a conv or dense
    layer, with the same types and configurations (names aside) as the next
    one, whose input and output shapes are equal (so any number of
    copies chain). Searched left to right in straight-line sections; for each
    start the longest coverage wins.
    """
    sigs = [_signature(n.layer) for n in graph.nodes]
    runs = []
    for chain in _chains(graph):
        i, m = 0, len(chain)
        while i < m:
            best = (0, 0)  # (coverage, period)
            for period in range(1, (m - i) // 2 + 1):
                first = chain[i:i + period]
                if type(graph.nodes[first[0]].layer).__name__ not in _WEIGHTED:
                    continue  # blocks start at a conv/dense layer
                in_shape = graph.shapes[graph.nodes[first[0]].inputs[0]]
                out_shape = graph.shapes[graph.nodes[first[-1]].outputs[0]]
                if in_shape != out_shape:
                    continue
                reps = 1
                while i + (reps + 1) * period <= m and all(
                    sigs[chain[i + reps * period + j]] == sigs[chain[i + j]] for j in range(period)
                ):
                    reps += 1
                if reps >= 2 and reps * period > best[0]:
                    best = (reps * period, period)
            if best[0]:
                runs.append((chain[i], best[1], best[0] // best[1]))
                i += best[0]
            else:
                i += 1
    return runs


def _prepare(teacher: Any, width: float, resolution: float, separable: bool, depth: Optional[int],
             upsample: bool) -> tuple[Graph, tuple[int, ...]]:
    """Check the options and the teacher: its walked graph and the student's input shape."""
    check_multipliers(width, resolution, upsample)
    if not isinstance(separable, bool):
        raise invalid_value("separable", "True or False", separable)
    if depth is not None and (not isinstance(depth, numbers.Integral) or isinstance(depth, bool) or depth < 1):
        raise invalid_value("depth", "None or an int >= 1 (copies kept of each repeated block)", depth)
    if not hasattr(teacher, "layers"):
        raise invalid_value("teacher", "a Sequential or Functional keras.Model", type(teacher).__name__)
    graph = walk(teacher)
    if len(graph.inputs) != 1:
        raise UnsupportedLayerError(
            f"shrink needs a single-input teacher; {teacher.name!r} has {len(graph.inputs)} inputs. "
            "Build the student with edgekd.students builders instead."
        )
    for node in graph.nodes:
        cls = type(node.layer).__name__
        if cls not in _SUPPORTED:
            raise UnsupportedLayerError(
                f"shrink cannot transform layer {node.name!r} ({cls}). Supported layers: "
                f"{', '.join(sorted(_SUPPORTED))}. Remove it or build the student with edgekd.students "
                "builders."
            )
    in_shape = graph.shapes[graph.inputs[0]][1:]
    if len(in_shape) == 3:
        return graph, scaled_shape(in_shape, resolution)
    if resolution != 1.0:
        raise invalid_value(
            "resolution", f"1.0 for a teacher whose input {in_shape} is not an image (H, W, C)", resolution
        )
    return graph, tuple(in_shape)


def _skipped(graph: Graph, depth: Optional[int]) -> set[int]:
    """Indices of the nodes dropped by ``depth`` (copies of a repeated block beyond the first ``depth``)."""
    if depth is None:
        return set()
    return {k for first, period, reps in repeated_blocks(graph) if reps > depth
            for k in range(first + int(depth) * period, first + reps * period)}


def _output_producers(graph: Graph) -> set[int]:
    """The weighted layers producing the model's outputs (seen through weightless layers): they keep their width."""
    producer = graph.producer()
    keep: set[int] = set()
    stack = [producer[t] for t in graph.outputs if t in producer]
    seen: set[int] = set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        if type(graph.nodes[k].layer).__name__ in _WEIGHTED:
            keep.add(k)
        else:
            stack.extend(producer[t] for t in graph.nodes[k].inputs if t in producer)
    return keep


def _final_softmaxes(graph: Graph) -> tuple[set[int], set[int]]:
    """The nodes ending the model in a softmax: ``(Softmax/Activation layers to drop, layers to make linear)``."""
    producer = graph.producer()
    drop: set[int] = set()
    linear: set[int] = set()
    for t in graph.outputs:
        k = producer.get(t)
        kind = None if k is None else softmax_kind(graph.nodes[k].layer)
        if kind == "layer" and len(graph.nodes[k].inputs) == 1:
            drop.add(k)
        elif kind == "activation":
            linear.add(k)
    return drop, linear


class _Rebuilder:
    """Rebuilds one teacher layer at a time for the student: scaled widths, fitted windows, separable convs."""

    def __init__(self, layers: Any, *, width: float, separable: bool, taken: set[str]) -> None:
        self.layers, self.width, self.separable = layers, width, separable
        self.used_names, self.block = set(taken), 0

    def unique(self, base: str) -> str:
        nm, k = base, 1
        while nm in self.used_names:
            k += 1
            nm = f"{base}_{k}"
        self.used_names.add(nm)
        return nm

    def __call__(self, layer: Any, xs: list[Any], *, keep_width: bool, linear: bool = False) -> Any:
        cls, cfg = type(layer).__name__, layer.get_config()
        if linear:
            cfg["activation"] = "linear"
        x = xs[0] if len(xs) == 1 else xs
        hw = tuple(int(d) for d in xs[0].shape[1:3]) if len(xs[0].shape) == 4 else None
        key = {"Conv2D": "filters", "SeparableConv2D": "filters", "Conv1D": "filters", "Dense": "units"}.get(cls)
        if key and not keep_width:
            cfg[key] = make_divisible(cfg[key] * self.width)
        if cls in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            cfg = _fit(cfg, hw, kernel_key="kernel_size", stride_key="strides", pool=False)
        elif cls in _POOL:
            cfg = _fit({**cfg, "strides": cfg.get("strides") or cfg["pool_size"]}, hw, kernel_key="pool_size",
                       stride_key="strides", pool=True)
        kernel = _pair(cfg["kernel_size"]) if cls == "Conv2D" else None
        if (cls == "Conv2D" and self.separable and kernel != (1, 1) and int(xs[0].shape[-1]) > 3
                and cfg.get("groups", 1) == 1):
            return self.separable_block(x, cfg, kernel)
        return type(layer).from_config(cfg)(x)

    def separable_block(self, x: Any, cfg: dict, kernel: tuple[int, int]) -> Any:
        """DepthwiseConv2D → BatchNormalization → ReLU6 → 1×1 Conv2D (the teacher conv's activation and bias)."""
        self.block += 1
        p, L = f"block{self.block}_", self.layers
        y = L.DepthwiseConv2D(kernel, strides=cfg["strides"], padding=cfg["padding"],
                              dilation_rate=cfg.get("dilation_rate", 1), use_bias=False, name=self.unique(p + "dw"))(x)
        y = L.BatchNormalization(momentum=BN_MOMENTUM, name=self.unique(p + "dw_bn"))(y)
        y = L.ReLU(6.0, name=self.unique(p + "dw_relu"))(y)
        return L.Conv2D(cfg["filters"], 1, use_bias=cfg["use_bias"], activation=cfg["activation"],
                        name=self.unique(p + "pw"))(y)


def shrink(
    teacher: Any,
    *,
    width: float = 0.5,
    resolution: float = 1.0,
    separable: bool = True,
    depth: Optional[int] = None,
    upsample: bool = False,
    softmax: bool = False,
    name: Optional[str] = None,
) -> Any:
    """Derive an untrained student from a teacher's Sequential/Functional architecture.

    The teacher's graph is rebuilt layer by layer with fresh weights:

    * ``Conv2D`` with a kernel larger than 1×1 and more than 3 input channels
      becomes a depthwise-separable pair when ``separable``:
      ``block{n}_dw`` (DepthwiseConv2D, same kernel/stride) → ``block{n}_dw_bn``
      → ``block{n}_dw_relu`` (ReLU6) → ``block{n}_pw`` (1×1 Conv2D with the
      teacher conv's activation and bias). The first conv on an image
      (≤ 3 channels) stays a full conv, as in MobileNet.
    * Every conv/dense width is ``make_divisible(filters × width)``, except a
      layer producing a model output (the classifier keeps ``num_classes``).
    * The input side is ``round(side × resolution)``; strided convs and
      poolings whose input became smaller than their stride stop striding, and
      ``valid`` windows larger than their input shrink (pooling) or switch to
      ``same`` padding (convs), so shapes stay ≥ 1×1. Data must be fed at the
      student's declared input size (edgekd's Distiller resizes it).
    * With ``depth=N``, each run of identical repeated blocks (e.g. the five
      512-channel blocks of MobileNet) keeps only its first ``N`` copies.
    * A final softmax of the teacher is dropped (a ``Softmax`` layer) or made
      linear (a layer with ``activation="softmax"``): the student outputs
      logits, what distillation trains. ``softmax=True`` ends it in a
      ``Softmax`` layer instead (the Distiller then trains that layer's input).

    Args:
        teacher: A Sequential or Functional ``keras.Model`` (nested models are
            expanded) with a single input.
        width: Width multiplier α in (0, 4].
        resolution: Resolution multiplier ρ in (0, 1] (> 1 needs ``upsample``).
        separable: Replace full convs by depthwise-separable blocks.
        depth: Keep at most this many copies of each repeated block (None: all).
        upsample: Allow ``resolution > 1`` (a larger input than the teacher's).
        softmax: End the student in a ``Softmax`` layer (default: logits).
        name: Student model name (default ``"<teacher>_student"``).

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        InvalidArgumentError: Invalid option.
        UnsupportedLayerError: A layer it cannot transform (the message names it).
    """
    import keras  # TensorFlow: `import edgekd.students` (and `edgekd --help`) stays without it

    graph, new_shape = _prepare(teacher, width, resolution, separable, depth, upsample)
    if not isinstance(softmax, bool):
        raise invalid_value("softmax", "True or False", softmax)
    drop, linear = _final_softmaxes(graph)
    skip, keep_width = _skipped(graph, depth) | drop, _output_producers(graph)
    rebuild = _Rebuilder(keras.layers, width=width, separable=separable, taken={n.layer.name for n in graph.nodes})
    tensors: dict[int, Any] = {graph.inputs[0]: keras.Input(new_shape, name="input")}
    for idx, node in enumerate(graph.nodes):
        if idx in skip:  # a dropped copy: its output is its input
            tensors[node.outputs[0]] = tensors[node.inputs[0]]
            continue
        try:
            out = rebuild(node.layer, [tensors[t] for t in node.inputs], keep_width=idx in keep_width,
                          linear=idx in linear)
        except UnsupportedLayerError:
            raise
        except Exception as e:  # Keras rejects the new shapes (e.g. a Reshape to the teacher's size)
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise UnsupportedLayerError(
                f"shrink cannot transform layer {node.name!r} ({type(node.layer).__name__}) for width={width}, "
                f"resolution={resolution}: {msg}. Use width/resolution that keep its shapes valid, "
                "or build the student with edgekd.students builders."
            ) from None
        for t, o in zip(node.outputs, out if isinstance(out, (list, tuple)) else [out]):
            tensors[t] = o
    outputs = [tensors[t] for t in graph.outputs]
    if softmax:
        outputs = [keras.layers.Softmax(name=rebuild.unique("probs"))(o) for o in outputs]
    return keras.Model(tensors[graph.inputs[0]], outputs[0] if len(outputs) == 1 else outputs,
                       name=name or f"{teacher.name}_student")


__all__ = ["shrink", "repeated_blocks", "GraphNode"]
