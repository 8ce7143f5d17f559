"""Profile a Keras model layer by layer (batch 1)."""

from __future__ import annotations

import math
from typing import Any, Optional

from edgekd.profile._types import LayerProfile, ModelProfile, peak_live_bytes
from edgekd.students.graph import Graph, walk

# Layers that compute nothing: their output is their input (TFLite drops them).
_IDENTITY = {
    "InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity", "Masking",
}
# Layers that move data only (0 MACs, new tensor).
_DATA_MOVE = {
    "Flatten", "Reshape", "Permute", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
    "Cropping2D", "Cropping3D", "Concatenate", "RepeatVector", "UpSampling1D", "UpSampling3D",
}
# Producers a following BatchNorm / ReLU can be folded or fused into by the TFLite converter.
_LINEAR = {
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "Dense", "Conv1DTranspose", "Conv2DTranspose",
}
# Per-element activations that cost one op per output element in TFLite.
_COSTLY_ACT = {"sigmoid", "tanh", "softmax", "hard_sigmoid", "hard_swish", "swish", "silu", "gelu", "elu",
               "selu", "softplus", "softsign", "exponential", "log_softmax", "leaky_relu", "mish"}

# Flatbuffer overhead of an int8 .tflite beyond its weight bytes, fitted on converted edgekd students
# (TF 2.21 converter): a fixed part (header, metadata, signature), per tensor (table, shape, buffer
# entry, and its name, ~120 chars), and 12 bytes per quantization parameter (float32 scale + int64
# zero point; per output channel for weights and biases, one per activation tensor).
_FB_BASE, _FB_PER_TENSOR, _FB_PER_QPARAM = 850, 230, 12


def _prod(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape)) if shape else 1


def _act_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    name = getattr(act, "__name__", None) or type(act).__name__
    return str(name).lower()


def _layer_act_name(layer: Any) -> Optional[str]:
    """Activation a standalone activation layer applies, or None."""
    cls = type(layer).__name__
    if cls == "Activation":
        return _act_name(layer)
    if cls == "ReLU":
        neg = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        thr = float(getattr(layer, "threshold", 0.0) or 0.0)
        mx = getattr(layer, "max_value", None)
        if neg == 0.0 and thr == 0.0 and (mx is None or float(mx) == 6.0):
            return "relu" if mx is None else "relu6"
        return "leaky_relu"
    if cls == "Softmax":
        return "softmax"
    if cls in ("LeakyReLU", "PReLU", "ELU"):
        return cls.lower()
    return None


def _layer_cost(
    layer: Any, in_shapes: list, out_shape: tuple, producer_cls: str
) -> tuple[int, int, int, int, bool]:
    """(macs, secondary macs, int8 weight bytes, inference params, known) of one layer call.

    Linear layers are counted as the TFLite converter emits them: int8 kernel
    plus an int32 bias per output channel (added when the layer has none, as
    a folded BatchNorm or the int8 kernels need it).
    """
    cls = type(layer).__name__
    out_n = _prod(out_shape)
    in_shape = in_shapes[0] if in_shapes else out_shape
    in_n = _prod(in_shape)
    act = _act_name(layer) if cls in _LINEAR else "linear"
    act_macs = out_n if act in _COSTLY_ACT else 0

    def linear(kernel_elems: int, biases: int) -> tuple[int, int]:
        return kernel_elems + 4 * biases, kernel_elems + biases

    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        k = tuple(int(d) for d in layer.kernel.shape)  # (*kernel, cin/groups, cout)
        macs = out_n * _prod(k[:-1])  # each output element: kh*kw*cin/groups multiply-adds
        return (macs + act_macs, 0, *linear(_prod(k), k[-1]), True)
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        k = tuple(int(d) for d in layer.kernel.shape)  # (*kernel, cin, depth_multiplier)
        macs = out_n * _prod(k[:-2])  # each output element: kh*kw multiply-adds
        return (macs + act_macs, 0, *linear(_prod(k), int(out_shape[-1])), True)
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        dk = tuple(int(d) for d in layer.depthwise_kernel.shape)  # (*kernel, cin, dm)
        pk = tuple(int(d) for d in layer.pointwise_kernel.shape)  # (*1, cin*dm, filters)
        spatial = out_n // int(out_shape[-1])
        cmid = dk[-2] * dk[-1]
        dw = spatial * cmid * _prod(dk[:-2])
        pw = spatial * cmid * pk[-1]
        # TFLite: DEPTHWISE_CONV_2D (with a zero bias) then a 1x1 CONV_2D
        w8, ip = linear(_prod(dk) + _prod(pk), cmid + pk[-1])
        return dw + pw + act_macs, pw, w8, ip, True
    if cls in ("Conv1DTranspose", "Conv2DTranspose"):
        k = tuple(int(d) for d in layer.kernel.shape)  # (*kernel, cout, cin)
        macs = in_n * _prod(k[:-2]) * k[-2]  # each input element scatters kh*kw*cout multiply-adds
        return (macs + act_macs, 0, *linear(_prod(k), k[-2]), True)
    if cls == "Dense":
        k = tuple(int(d) for d in layer.kernel.shape)  # (in, units)
        macs = out_n * k[0]  # each output element: `in` multiply-adds
        return (macs + act_macs, 0, *linear(_prod(k), k[1]), True)
    if cls == "BatchNormalization":
        c = int(out_shape[-1])
        if producer_cls in _LINEAR:
            return 0, 0, 0, 0, True  # folded: the conv's weights are rescaled, its bias absorbs the shift
        return 2 * out_n, 0, 2 * c, 2 * c, True  # MUL + ADD by per-channel constants
    if cls in ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
               "AveragePooling3D"):
        return out_n * _prod(tuple(layer.pool_size)), 0, 0, 0, True  # one op per window element
    if cls in ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
               "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D"):
        return in_n, 0, 0, 0, True  # one op per input element
    if cls in ("Add", "Subtract", "Multiply", "Maximum", "Minimum"):
        return out_n * max(len(in_shapes) - 1, 1), 0, 0, 0, True
    if cls == "Average":
        return out_n * len(in_shapes), 0, 0, 0, True
    if cls in _DATA_MOVE or cls in _IDENTITY:
        return 0, 0, 0, 0, True
    if cls == "UpSampling2D":
        bilinear = getattr(layer, "interpolation", "nearest") == "bilinear"
        return (4 * out_n if bilinear else 0), 0, 0, 0, True
    if cls == "Resizing":
        nearest = getattr(layer, "interpolation", "bilinear") == "nearest"
        return (0 if nearest else 4 * out_n), 0, 0, 0, True
    if cls == "Rescaling":
        offset = layer.offset
        has_offset = not (isinstance(offset, (int, float)) and float(offset) == 0.0)
        return out_n * (2 if has_offset else 1), 0, 0, 0, True
    act_name = _layer_act_name(layer)
    if act_name is not None:
        params = int(layer.count_params())
        if act_name in ("relu", "relu6", "linear"):
            return 0, 0, 0, 0, True
        return out_n, 0, params, params, True
    params = int(layer.count_params()) if layer.built else 0
    return 0, 0, params, params, False


def profile_keras(model: Any, *, input_shape: Optional[tuple[int, ...]] = None) -> ModelProfile:
    """Profile a Keras model; see :func:`edgekd.profile.profile`."""
    graph: Graph = walk(model, input_shape)
    producer = graph.producer()
    consumers = graph.consumers()
    rows: list[LayerProfile] = []
    step_rows: list[str] = []
    sizes8: dict[int, int] = {}
    alias: dict[int, int] = {}
    steps: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    unsupported: list[str] = []
    inference_params = 0
    n_act = n_const = channels = 0

    def root(t: int) -> int:
        while t in alias:
            t = alias[t]
        return t

    def real_producer(t: int) -> str:
        """Class of the layer that computes tensor ``t`` (looking through identity layers)."""
        while t in producer:
            layer = graph.nodes[producer[t]].layer
            cls = type(layer).__name__
            if cls not in _IDENTITY:
                return cls
            ins = graph.nodes[producer[t]].inputs
            if not ins:
                break
            t = ins[0]
        return "InputLayer"

    for t in graph.inputs:
        sizes8[t] = _prod(graph.shapes[t])
        n_act += 1

    for node in graph.nodes:
        layer = node.layer
        cls = type(layer).__name__
        in_shapes = [graph.shapes[t] for t in node.inputs]
        out_shape = graph.shapes[node.outputs[0]] if node.outputs else ()
        prod_cls = real_producer(node.inputs[0]) if node.inputs else ""
        single_use = len(node.inputs) == 1 and len(consumers.get(node.inputs[0], [])) == 1
        if cls == "BatchNormalization" and not single_use:
            prod_cls = ""  # the converter cannot fold into a conv whose output is also read elsewhere
        macs, secondary, w8, ip, known = _layer_cost(layer, in_shapes, out_shape, prod_cls)
        if not known:
            unsupported.append(node.name)
        params = int(layer.count_params()) if layer.built else 0
        inference_params += ip
        act = _layer_act_name(layer)
        aliased = _aliases_input(cls, act, prod_cls, single_use)
        n_out = sum(_prod(graph.shapes[t]) for t in node.outputs)
        if aliased and node.inputs:
            for t in node.outputs:
                alias[t] = root(node.inputs[0])
            act8 = 0
        else:
            for t in node.outputs:
                sizes8[t] = _prod(graph.shapes[t])
            act8 = n_out
            steps.append((tuple(root(t) for t in node.inputs), node.outputs))
            step_rows.append(node.name)
            n_act += len(node.outputs)
            if cls in _LINEAR:
                n_const += 4 if cls.startswith("Separable") else 2
                channels += int(out_shape[-1]) + (int(in_shapes[0][-1]) if cls.startswith("Separable") else 0)
            elif w8 or cls.startswith("GlobalAverage") or cls in ("Reshape", "Flatten"):
                n_const += 1  # MUL/ADD constants, MEAN axis, RESHAPE shape
        rows.append(LayerProfile(
            name=node.name, op_type=cls, output_shape=tuple(out_shape), params=params, macs=int(macs),
            weight_bytes_f32=4 * params, weight_bytes_int8=int(w8), activation_bytes=int(act8),
            activation_bytes_f32=4 * int(act8), secondary=int(secondary),
        ))

    outs = tuple(root(t) for t in graph.outputs)
    return _assemble(model, graph, rows, steps, step_rows, sizes8, outs,
                     tensors=n_act + n_const, qparams=2 * channels + n_act, inference_params=inference_params,
                     unsupported=unsupported)


def _aliases_input(cls: str, act: Optional[str], prod_cls: str, single_use: bool) -> bool:
    """Does the layer's output alias its input in the TFLite graph (the layer is fused away or a no-op)?"""
    fused_into = prod_cls in _LINEAR or prod_cls in ("Add", "BatchNormalization")
    return cls in _IDENTITY or (single_use and (
        (cls == "BatchNormalization" and prod_cls in _LINEAR)
        or (act in ("relu", "relu6") and fused_into)
    ))


def _assemble(model: Any, graph: Graph, rows: list[LayerProfile], steps: list, step_rows: list[str],
              sizes8: dict[int, int], outs: tuple[int, ...], *, tensors: int, qparams: int, inference_params: int,
              unsupported: list[str]) -> ModelProfile:
    """The model's totals, peak live activations (int8 and float32) and estimated int8 flash."""
    sizes32 = {t: 4 * n for t, n in sizes8.items()}
    peak8, at8 = peak_live_bytes(steps, sizes8, graph.inputs, outs)
    peak32, _ = peak_live_bytes(steps, sizes32, graph.inputs, outs)
    w8_total = sum(r.weight_bytes_int8 for r in rows)
    flash = w8_total + _FB_BASE + _FB_PER_TENSOR * tensors + _FB_PER_QPARAM * qparams
    params_total = sum(r.params for r in rows)
    return ModelProfile(
        name=str(getattr(model, "name", "model")),
        source="keras",
        input_shapes=tuple(tuple(graph.shapes[t]) for t in graph.inputs),
        layers=tuple(rows),
        params=int(params_total),
        inference_params=int(inference_params),
        macs=sum(r.macs for r in rows),
        weight_bytes_f32=4 * int(params_total),
        weight_bytes_int8=int(w8_total),
        flash_int8_bytes=int(flash),
        peak_ram_bytes=int(peak8),
        peak_ram_f32_bytes=int(peak32),
        peak_ram_at=step_rows[at8] if 0 <= at8 < len(step_rows) else "",
        unsupported=tuple(unsupported),
    )
