"""The TFLite profiler on ops with missing or omitted operands: a row with 0 MACs, never IndexError/AttributeError.

Such a model passes the flatbuffer verifier (an omitted input is -1, a short input list is well-formed) and
fails only when an interpreter prepares the op, so the profiler sees it first.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.flatbuffer import read_tflite
from edgekd.profile import profile
from tests.check.conftest import repack


def _inputs(op_name: str, keep):
    def edit(m):
        from tflite_micro.python.tflite_micro import runtime

        code = getattr(runtime.schema_fb.BuiltinOperator, op_name)
        for op in m.subgraphs[0].operators:
            oc = m.operatorCodes[op.opcodeIndex]
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                op.inputs = np.array(keep(list(op.inputs)), dtype=np.int32)
    return edit


@pytest.mark.parametrize("op_name, keep", [
    ("CONV_2D", lambda ins: ins[:1]),  # weights and bias missing
    ("CONV_2D", lambda ins: [ins[0], -1, ins[2]]),  # weights omitted
    ("FULLY_CONNECTED", lambda ins: [ins[0], -1]),
    ("FULLY_CONNECTED", lambda ins: []),
    ("MAX_POOL_2D", lambda ins: []),
])
def test_missing_operands_profile_as_zero_macs(small_cnn_tflite, op_name, keep):
    _, data = small_cnn_tflite
    bad = repack(data, _inputs(op_name, keep))
    model = read_tflite(bad)  # well-formed: the verifier has no reason to refuse it
    p = profile(bad)
    rows = [r for r, op in zip(p.layers, model.operators) if op.op_name == op_name]
    assert rows and all(r.macs == 0 or op_name == "MAX_POOL_2D" for r in rows)
    good = profile(data)
    assert p.macs <= good.macs and len(p.layers) == len(good.layers)
