"""edgekd.flatbuffer.read_tflite: as strict as the FlatBuffers verifier, and refuses what LiteRT's loader refuses."""

import struct

import numpy as np
import pytest

from edgekd import _fbverify, _litert_ops
from edgekd.errors import TFLiteFileError
from edgekd.flatbuffer import read_tflite
from edgekd.profile import profile
from tests.check.conftest import repack


def _schema():
    from tflite_micro.python.tflite_micro import runtime

    return runtime.schema_fb


def _litert_loads(data: bytes) -> bool:
    """Whether LiteRT's loader (verifier + InterpreterBuilder) accepts ``data`` (in a fork: it may crash)."""
    from edgekd._sandbox import in_fork

    def load(stage):
        from ai_edge_litert.interpreter import Interpreter

        stage("load")
        Interpreter(model_content=bytes(data))

    return in_fork(load, timeout=30)["ok"]


def _string_length_pos(data: bytes, text: bytes) -> int:
    i = data.find(text)
    assert i > 4
    assert struct.unpack_from("<I", data, i - 4)[0] == len(text) or data[i + len(text)] == 0
    return i - 4


def test_over_long_string_is_refused_not_truncated(split_tflite):
    """The generated reader silently cut a string whose length runs past the buffer; the verifier refuses it."""
    name = read_tflite(split_tflite).tensors[1].name.encode()
    pos = _string_length_pos(split_tflite, name)
    inside = next(n for n in range(len(name) + 1, len(split_tflite) - pos - 4) if split_tflite[pos + 4 + n] != 0)
    for length in (10 ** 6, inside):  # past the end of the file; inside it but with no NUL where it ends
        bad = bytearray(split_tflite)
        struct.pack_into("<I", bad, pos, length)
        with pytest.raises(TFLiteFileError, match=r"Tensor\.Name .*(outside|NUL)"):
            read_tflite(bytes(bad))
        with pytest.raises(TFLiteFileError):
            profile(bytes(bad))
        assert not _litert_loads(bytes(bad))


def test_verifier_checks_alignment_vtables_and_offsets(split_tflite):
    layout = _fbverify.layout(split_tflite, _schema())
    kinds = {k for k, *_ in layout}
    assert {"offset", "length", "vtable", "scalar4", "vec4"} <= kinds
    # a uoffset made odd (misaligned), a vtable made odd-sized, an offset to itself (0)
    off = next(loc for loc in layout if loc[0] == "offset" and loc[3] == "Model.Subgraphs")
    vt = next(loc for loc in layout if loc[0] == "vtable" and loc[3] == "Tensor vtable size")
    for pos, value, what in ((off[1], struct.unpack_from("<I", split_tflite, off[1])[0] + 1, "aligned"),
                             (vt[1], 7, "odd size"), (off[1], 0, "zero offset")):
        bad = bytearray(split_tflite)
        struct.pack_into("<I" if what != "odd size" else "<H", bad, pos, value)
        with pytest.raises(TFLiteFileError, match=what):
            read_tflite(bytes(bad))
        assert not _litert_loads(bytes(bad))


def _edit(data: bytes, fn) -> bytes:
    return repack(data, fn)


def _op(m, name):
    s = _schema()
    code = getattr(s.BuiltinOperator, name)
    for op in m.subgraphs[0].operators:
        oc = m.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return op, oc
    raise KeyError(name)


def _set_version(name, v):
    def edit(m):
        _op(m, name)[1].version = v
    return edit


def _shape(k, shape):
    def edit(m):
        m.subgraphs[0].tensors[k].shape = np.array(shape, np.int32)
    return edit


def _empty_data(m):  # the SPLIT axis constant keeps its buffer, with a present but empty data vector
    op, _ = _op(m, "SPLIT")
    m.buffers[m.subgraphs[0].tensors[op.inputs[0]].buffer].data = np.zeros((0,), np.uint8)


def _zero_points(m):
    op, _ = _op(m, "CONV_2D")
    q = m.subgraphs[0].tensors[op.inputs[1]].quantization
    q.zeroPoint = q.zeroPoint[:1]


def _quantized_dimension(m):
    op, _ = _op(m, "CONV_2D")
    m.subgraphs[0].tensors[op.inputs[1]].quantization.quantizedDimension = 7


def _lstm_without_options(m):
    op, oc = _op(m, "ADD")
    oc.builtinCode = oc.deprecatedBuiltinCode = _schema().BuiltinOperator.LSTM
    oc.version = 1


def _weights_format(m):
    _op(m, "FULLY_CONNECTED")[0].builtinOptions.weightsFormat = 5


def _shape_out_type(m):
    _op(m, "SHAPE")[0].builtinOptions.outType = 100


def _custom_without_code(m):
    _, oc = _op(m, "ADD")
    oc.builtinCode = oc.deprecatedBuiltinCode = _schema().BuiltinOperator.CUSTOM
    oc.customCode = None


@pytest.mark.parametrize("edit, message", [
    (_set_version("CONV_2D", 9), "CONV_2D version 9, which LiteRT does not implement"),
    (_set_version("SPLIT", 0), "SPLIT version 0"),
    (_shape(0, [1, -1, 8, 1]), r"shape \(1, -1, 8, 1\)"),
    (_shape(0, [65536] * 5), "more bytes than a 64-bit size can hold"),
    (_empty_data, "holds 0 bytes"),
    (_zero_points, "zero points for"),
    (_quantized_dimension, "quantized along dimension 7"),
    (_lstm_without_options, "no LSTMOptions"),
    (_weights_format, "weightsFormat = 5"),
    (_shape_out_type, "outType = 100"),
    (_custom_without_code, "CUSTOM without a custom code"),
])
def test_refuses_what_litert_refuses_to_load(split_tflite, edit, message):
    """Each of these passed the old reader (so `profile` and `export` succeeded) and LiteRT refuses to load it."""
    bad = _edit(split_tflite, edit)
    assert not _litert_loads(bad)
    with pytest.raises(TFLiteFileError, match=message):
        read_tflite(bad)


def _while_subgraph(index):
    def edit(m):
        m.subgraphs[0].operators[0].builtinOptions.bodySubgraphIndex = index
    return edit


def _bad_tensor_in_body(m):
    body = m.subgraphs[m.subgraphs[0].operators[0].builtinOptions.bodySubgraphIndex]
    body.operators[0].inputs[0] = len(body.tensors) + 5


def test_every_subgraph_is_checked(endless_while_tflite):
    """The old reader looked at subgraph 0 only: a WHILE body could name any tensor or subgraph."""
    data = open(endless_while_tflite, "rb").read()
    read_tflite(data)
    for edit, message in ((_bad_tensor_in_body, r"subgraph 2: operator 0 \(ADD\) refers to tensor 13 of 8"),
                          (_while_subgraph(7), r"operator 0 \(WHILE\) calls subgraph 7 of 3"),
                          (_while_subgraph(0), "subgraph 0 calls itself")):
        with pytest.raises(TFLiteFileError, match=message):
            read_tflite(_edit(data, edit))


def test_litert_version_table_is_litert_s():
    """The op-version table read_tflite uses is what the installed LiteRT registers (re-measured)."""
    assert _litert_ops.probe_versions() == _litert_ops.VERSIONS
    assert _litert_ops.supported("FULLY_CONNECTED", 9) and not _litert_ops.supported("CONV_2D", 9)
