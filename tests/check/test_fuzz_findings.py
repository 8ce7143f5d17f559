"""What bench/fuzz.py found, each as a test: tracebacks in firmware and export on corrupted models."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.convert.runtime import dequantize
from edgekd.errors import InvalidArgumentError, TFLiteFileError
from edgekd.export import c_arrays
from edgekd.firmware import render
from edgekd.flatbuffer import read_tflite
from tests.check.conftest import repack


def _output_quant(edit):
    def fn(m):
        g = m.subgraphs[0]
        edit(g.tensors[g.outputs[0]].quantization)
    return fn


def _set_zero_point(value):
    def fn(q):
        q.zeroPoint = np.array([value], dtype=np.int64)
    return fn


def _set_scale(value):
    def fn(q):
        q.scale = np.array([value], dtype=np.float32)
    return fn


@pytest.mark.parametrize("edit, message", [
    (_set_zero_point(-4266036889624111114), r"zero point -4266036889624111114, outside -128\.\.127"),
    (_set_zero_point(200), r"zero point 200, outside -128\.\.127"),
    (_set_scale(np.nan), "non-finite scale"),
    (_set_scale(np.inf), "non-finite scale"),
])
def test_corrupted_output_quantization_is_refused(split_tflite, edit, message):
    """A zero point that does not fit (the firmware's dequantize raised OverflowError on it) or a NaN/inf
    scale (exported as `nanf`, which no C compiler takes)."""
    bad = repack(split_tflite, _output_quant(edit))
    with pytest.raises(TFLiteFileError, match=message):
        read_tflite(bad)
    with pytest.raises(TFLiteFileError):
        render(bad, board="esp32s3", target="esp-idf")


def test_dequantize_takes_any_stored_zero_point():
    q = np.array([-128, 0, 127], np.int8)
    expected = (0.5 * (q.astype(np.float64) - (1 << 40))).astype(np.float32)  # float32, as the kernel
    np.testing.assert_allclose(dequantize(q, 0.5, 1 << 40), expected, rtol=1e-6)


def test_firmware_refuses_a_huge_input_tensor_before_allocating_it(split_tflite):
    """An input dim of 1,440,529,366: render tried to allocate a 343 GiB sample array (MemoryError)."""
    def edit(m):
        g = m.subgraphs[0]
        g.tensors[g.inputs[0]].shape = np.array([1, 8, 8, 1440529366], np.int32)

    bad = repack(split_tflite, edit)
    read_tflite(bad)  # well-formed: only its size is absurd
    with pytest.raises(InvalidArgumentError, match=r"input tensor has shape \(1, 8, 8, 1440529366\)"):
        render(bad, board="esp32s3", target="esp-idf")


def test_export_of_a_scalar_output(split_tflite):
    """An output tensor of shape () made c_arrays index an empty shape (IndexError)."""
    def edit(m):
        g = m.subgraphs[0]
        g.tensors[g.outputs[0]].shape = np.array([], np.int32)

    arrays = c_arrays(repack(split_tflite, edit))
    assert "static const int kNumClasses = 1;" in arrays.header


def test_names_are_printed_not_interpreted_as_markup(split_tflite, tmp_path, cli):
    """A tensor or file name such as "[/x]" made rich raise MarkupError in `profile` and `check --layers`."""
    name = "evil[/x][bold]name"

    def edit(m):
        g = m.subgraphs[0]
        for op in g.operators:  # every op's output, so the layer tables show it whatever they pick
            g.tensors[op.outputs[0]].name = f"{name}{op.outputs[0]}".encode()

    (tmp_path / "odd[").mkdir()
    path = tmp_path / "odd[" / "b]name.tflite"  # the path, as given, holds "[/b]"
    path.write_bytes(repack(split_tflite, edit))
    for args in (("profile", path), ("check", path, "--board", "esp32s3", "--layers", "--no-host-latency")):
        proc = cli(*args)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and name in "".join(proc.stdout.split()), proc.stdout[-3000:]
    assert "odd[/b]name.tflite" in "".join(proc.stdout.split())  # the title, wrapped


def test_custom_op_names_are_printed_not_interpreted_as_markup(split_tflite, tmp_path, cli):
    """`export` listed the model's ops in a rich table: a custom op named "[/x]" raised MarkupError."""
    def edit(m):
        from tflite_micro.python.tflite_micro import runtime

        oc = m.operatorCodes[m.subgraphs[0].operators[2].opcodeIndex]  # ADD
        oc.builtinCode = oc.deprecatedBuiltinCode = runtime.schema_fb.BuiltinOperator.CUSTOM
        oc.customCode = b"Odd[/x]Op"

    path = tmp_path / "custom.tflite"
    path.write_bytes(repack(split_tflite, edit))
    proc = cli("export", path, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CUSTOM:Odd[/x]Op" in "".join(proc.stdout.split()) and "Traceback" not in proc.stderr
