"""The TFLM API the generated C++ calls exists in the TFLM build edgekd pins.

The ``tflite-micro`` wheel's ``_runtime.so`` is TFLM compiled from tflite-micro
main. It ships no headers (docs/firmware.md), but its dynamic symbol table keeps
every kernel's registration function and the interpreter's out-of-line members
with their parameter types: the resolver table, the constructor call and the
namespaces the templates rely on are checked against those, short of compiling
the firmware against TFLM's headers (test_tflm_headers.py does that where a
TFLM source tree is present).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekd.export.ops import TFLM_CUSTOM, TFLM_RESOLVER

# Builtins whose kernel tflite-micro main has but whose MicroMutableOpResolver method name
# edgekd has seen neither in the header its table follows nor in code calling TFLM:
# left out rather than guessed (an entry is added once the name is seen, as
# AddDynamicUpdateSlice was). test_tflm_headers.py compiles every method against real trees.
NOT_IN_TABLE: dict[str, str] = {}
CUSTOM_KERNELS = {"TFLite_Detection_PostProcess": "DETECTION_POSTPROCESS", "CIRCULAR_BUFFER": "CIRCULAR_BUFFER"}


@functools.lru_cache(maxsize=1)
def tflm_symbols() -> frozenset[str]:
    """Demangled symbols defined by the pinned TFLM build (``nm -D -C --defined-only``)."""
    import tflite_micro

    so = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "_runtime.so"
    if not so.is_file():
        pytest.fail(f"{so} is missing: the pinned tflite-micro wheel changed layout")
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(["nm", "-D", "-C", "--defined-only", str(so)], capture_output=True, text=True,
                         check=True).stdout
    return frozenset(line.split(" ", 2)[2] for line in out.splitlines() if line.count(" ") >= 2)


def _registered_kernels() -> set[str]:
    return {m.group(1) for s in tflm_symbols() if (m := re.search(r"::Register_([A-Z0-9_]+)\(\)$", s))}


def test_every_op_in_the_resolver_table_has_a_kernel_in_tflm():
    kernels = _registered_kernels()
    assert len(kernels) > 80, "the symbol table did not list TFLM's kernels"
    missing = sorted(op for op in TFLM_RESOLVER if op not in kernels)
    missing += sorted(code for code, k in CUSTOM_KERNELS.items() if k not in kernels)
    assert missing == [], f"edgekd would register ops TFLM has no kernel for: {missing}"
    assert set(CUSTOM_KERNELS) == set(TFLM_CUSTOM)


def test_every_builtin_kernel_of_tflm_is_in_the_resolver_table():
    from edgekd.flatbuffer import enum_names, schema as fb_schema

    builtins = set(enum_names(fb_schema().BuiltinOperator).values())
    kernels = _registered_kernels() & builtins
    left_out = sorted(k for k in kernels if k not in TFLM_RESOLVER and k not in NOT_IN_TABLE)
    assert left_out == [], f"TFLM has kernels for {left_out}, which edgekd would refuse as unsupported"
    stale = sorted(k for k in NOT_IN_TABLE if k in TFLM_RESOLVER or k not in kernels)
    assert stale == [], f"NOT_IN_TABLE is out of date: {stale}"


def _member(cls: str, member: str) -> list[str]:
    pat = re.compile(rf"^tflite::(?:micro::)?{cls}::{member}\(")
    return [s for s in tflm_symbols() if pat.match(s)]


@pytest.mark.parametrize("target", ["arduino", "esp-idf", "platformio"])
def test_generated_main_calls_the_interpreter_tflm_has(target, generated_sources):
    main = generated_sources[target].read_text()

    # The constructor the firmware calls: (model, resolver, arena, arena size), the rest defaulted.
    call = re.search(r"MicroInterpreter static_interpreter\(([^)]*)\);", main)
    assert call and [a.strip() for a in call.group(1).split(",")] == [
        "model", "resolver", "tensor_arena", "kTensorArenaSize"]
    assert "const tflite::Model* model" in main and "alignas(16) uint8_t tensor_arena[" in main
    ctors = _member("MicroInterpreter", "MicroInterpreter")
    # tflite::Model stays in the schema's namespace: the templates qualify it (and tflite::GetModel).
    want = re.compile(r"\(tflite::Model const\*, tflite::(?:micro::)?MicroOpResolver const&, "
                      r"unsigned char\*, unsigned long(?:, |\))")
    assert any(want.search(c) for c in ctors), ctors

    # Every interpreter member it calls; arena_used_bytes() is inline in micro_interpreter.h
    # (allocator_.used_bytes()), so the allocator's member stands for it.
    used = sorted(set(re.findall(r"interpreter->(\w+)\(", main)))
    assert used == ["AllocateTensors", "Invoke", "arena_used_bytes", "input", "output"]
    for member in used:
        cls, name = ("MicroAllocator", "used_bytes") if member == "arena_used_bytes" else ("MicroInterpreter", member)
        assert _member(cls, name), f"TFLM has no {cls}::{name}"
    for member in ("input", "output"):  # called with an index: (size_t), unsigned long on the 64-bit host
        assert [s.split("::")[-1] for s in _member("MicroInterpreter", member)] == [f"{member}(unsigned long)"]

    # Each resolver call registers a kernel TFLM has.
    method_to_op = {m: op for op, m in TFLM_RESOLVER.items()}
    kernels = _registered_kernels()
    for method in re.findall(r"resolver\.(Add\w+)\(\)", main):
        assert method_to_op[method] in kernels, method
