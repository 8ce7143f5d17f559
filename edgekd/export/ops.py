"""TFLite builtin ops → TFLM ``MicroMutableOpResolver`` registrations.

The table mirrors the ``Add…()`` methods of
``tensorflow/lite/micro/micro_mutable_op_resolver.h`` in tflite-micro main
(2025 header, ``TFLMRegistration`` API), the same mapping TFLM's
``gen_micro_mutable_op_resolver`` tool derives from a model. An op that is not
in the table has no TFLM kernel: a model using it cannot run on a
microcontroller, and edgekd says so before writing any file.
``tests/firmware/test_tflm_binary.py`` checks the table both ways against the
kernels (``Register_<OP>()``) compiled into the pinned ``tflite-micro`` wheel.
Which of these methods each distribution the firmware links really has is
runtime data (:mod:`edgekd.boards.runtime`); pass ``runtime=`` to check a model
against one.
"""

from __future__ import annotations

from typing import Optional

from edgekd.boards import runtime as runtimes
from edgekd.errors import UnsupportedOpError
from edgekd.flatbuffer import TFLiteModel

# BuiltinOperator name -> MicroMutableOpResolver method.
TFLM_RESOLVER: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu", "EQUAL": "AddEqual",
    "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad",
    "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape",
    "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv", "TRANSPOSE": "AddTranspose",
    "UNPACK": "AddUnpack", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

# Custom ops TFLM ships kernels for: custom code -> resolver method.
TFLM_CUSTOM: dict[str, str] = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
}


def _advice(op: str) -> str:
    if op.startswith("CUSTOM:Flex") or op == "CUSTOM:FlexOp":
        return "it is a TensorFlow (SELECT_TF_OPS) op; convert with builtin ops only (edgekd export --mode int8)"
    if op.startswith("CUSTOM:"):
        return "it is a custom op with no TFLM kernel; replace the layer or register your own kernel"
    return "replace the layer that produces it with one TFLM supports"


def unsupported_ops(model: TFLiteModel) -> list[str]:
    """Ops of ``model`` with no TFLM kernel, in order of first use (custom ops as ``CUSTOM:<code>``)."""
    bad = []
    for name in model.op_names:
        if name.startswith("CUSTOM:"):
            if name.split(":", 1)[1] not in TFLM_CUSTOM:
                bad.append(name)
        elif name not in TFLM_RESOLVER:
            bad.append(name)
    return bad


def per_channel_dense_layers(model: TFLiteModel) -> list[str]:
    """Names of the FULLY_CONNECTED ops whose weights are quantized per channel (output names)."""
    found = []
    for op in model.operators:
        if op.op_name != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        q = model.tensors[op.inputs[1]].quantization
        if q is not None and len(q.scale) > 1:
            found.append(model.tensors[op.outputs[0]].name if op.outputs else f"op {op.index}")
    return found


def resolver_calls(model: TFLiteModel, *, runtime: Optional[runtimes.Runtime | str] = None) -> list[str]:
    """The ``MicroMutableOpResolver`` methods a model needs, one per distinct op, in order of first use.

    Args:
        model: A verified model from :func:`edgekd.flatbuffer.read_tflite`.
        runtime: The TFLM distribution the firmware links (a
            :class:`edgekd.boards.runtime.Runtime` or its id). When given, the
            model must also be computed correctly by it: every op must be in
            its resolver, and Dense weights must be per-tensor where its
            FULLY_CONNECTED kernel ignores per-channel scales.

    Returns:
        Method names such as ``["AddConv2D", "AddFullyConnected"]``; the
        resolver's template size ``N`` is ``len(result)``.

    Raises:
        UnsupportedOpError: An op has no TFLM kernel, or none in ``runtime``,
            or ``runtime`` would compute an op wrong (the message names the op,
            the runtime and version, and the alternatives).
    """
    bad = unsupported_ops(model)
    if bad:
        raise UnsupportedOpError(
            f"TFLM has no kernel for op {bad[0]}"
            + (f" (and {', '.join(bad[1:])})" if len(bad) > 1 else "")
            + f": {_advice(bad[0])}."
        )
    calls = []
    for name in model.op_names:
        calls.append(TFLM_CUSTOM[name.split(":", 1)[1]] if name.startswith("CUSTOM:") else TFLM_RESOLVER[name])
    if runtime is not None:
        _check_runtime(model, calls, runtimes.get(runtime))
    return calls


def _check_runtime(model: TFLiteModel, calls: list[str], rt: runtimes.Runtime) -> None:
    missing = [(op, m) for op, m in zip(model.op_names, calls) if m not in rt.resolver_methods]
    if missing:
        op, method = missing[0]
        others = [f"{r.label} (--target {'/'.join(r.targets)})" for r in runtimes.all_runtimes()
                  if r.id != rt.id and all(m in r.resolver_methods for _, m in missing)]
        raise UnsupportedOpError(
            f"{rt.label} (target {'/'.join(rt.targets)}) has no kernel for op {op} ({method}())"
            + (f" nor {', '.join(o for o, _ in missing[1:])}" if len(missing) > 1 else "")
            + ": " + (f"{' or '.join(others)} has it, or " if others else "")
            + "replace the layer that produces it with one this runtime supports."
        )
    dense = per_channel_dense_layers(model) if not rt.per_channel_fully_connected else []
    if dense:
        raise UnsupportedOpError(
            f"{rt.label} (target {'/'.join(rt.targets)}) computes FULLY_CONNECTED with per-channel weight "
            f"scales wrong (it applies the first channel's scale to every output), and this model has "
            f"{len(dense)} such layer(s) ({', '.join(dense[:3])}): re-export it for this runtime "
            f"(`edgekd export MODEL --target {rt.targets[0]}`, or convert(..., per_channel_dense=False)), "
            "which quantizes Dense weights per tensor."
        )
