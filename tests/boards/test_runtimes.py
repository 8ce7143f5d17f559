"""The TFLM runtime data (edgekd/boards/runtimes/*.toml) against the real source trees."""

from __future__ import annotations

import pytest

from edgekd.boards import runtime as runtimes
from edgekd.errors import BoardError, InvalidArgumentError
from edgekd.export.ops import TFLM_CUSTOM, TFLM_RESOLVER
from tests.firmware.test_tflm_headers import TREES


def test_every_target_has_one_runtime():
    for target in ("arduino", "platformio", "esp-idf"):
        rt = runtimes.for_target(target)
        assert target in rt.targets and rt.resolver_methods
    assert runtimes.get("chirale-2.0.0").per_channel_fully_connected is False
    with pytest.raises(InvalidArgumentError, match="Valid TFLM runtimes: chirale-2.0.0, esp-tflite-micro-1.4.0"):
        runtimes.get("tflm-9")


def test_runtime_methods_are_resolver_methods():
    known = set(TFLM_RESOLVER.values()) | set(TFLM_CUSTOM.values())
    for rt in runtimes.all_runtimes():
        assert all(m.startswith("Add") for m in rt.resolver_methods)
        # Core ops every distribution has; a data file that lost them is broken.
        core = {"AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected", "AddSoftmax", "AddReshape"}
        assert core <= rt.resolver_methods
        assert rt.resolver_methods & known


def test_tree_facts_refuses_a_folder_without_tflm(tmp_path):
    with pytest.raises(BoardError, match="not a TFLM source tree"):
        runtimes.tree_facts(tmp_path)


@pytest.mark.skipif(not TREES, reason="no TFLM source tree (put one in shared/tflm/; docs/firmware.md)")
@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_runtime_data_matches_the_tree(tree):
    facts = runtimes.tree_facts(tree)
    rt = facts.runtime()
    if rt is None:
        pytest.skip(f"{facts.distribution} {facts.version} has no runtime data file")
    assert sorted(facts.resolver_methods - rt.resolver_methods) == [], f"{rt.id}: methods the data file lacks"
    assert sorted(rt.resolver_methods - facts.resolver_methods) == [], f"{rt.id}: methods the tree lacks"
    assert facts.per_channel_fully_connected == rt.per_channel_fully_connected
    assert facts.kernels == rt.kernels
