"""Firmware rendering: time per project, arena, Arm object sizes, and TFLM-vs-LiteRT class parity.

    python bench/firmware.py

Goals: rendering a project takes well under a second once the arena is known; the
embedded-sample parity the firmware prints holds — TFLM (the interpreter the boards run, host
build) predicts the same class as the host LiteRT interpreter for the same int8 inputs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import machine, write_section  # noqa: E402


def main() -> None:
    import numpy as np

    from edgekd.convert import convert
    from edgekd.convert.runtime import make_interpreter
    from edgekd.firmware import measure_arena, quantize, render, write_project
    from examples.firmware_digits import small_digits_model
    from tflite_micro.python.tflite_micro import runtime as tflm

    model, ds = small_digits_model(15)
    data = convert(model, mode="int8", representative_data=ds.train.x[:300])

    t0 = time.perf_counter()
    arena = measure_arena(data)
    t_arena = time.perf_counter() - t0

    rows = []
    projects = {}
    for target, board in (("arduino", "nano33ble"), ("esp-idf", "esp32s3"), ("platformio", "esp32")):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            p = render(data, board=board, target=target, samples=ds.val, arena_size=arena,
                       host_predictions=[0] * 5)
            times.append(time.perf_counter() - t0)
        projects[target] = p
        rows.append(f"| {target} | {board} | {len(p.files)} | {statistics.median(times) * 1000:.1f} ms |")

    # Arm (Cortex-M4, -Os) object sizes of the generated C++ that needs no TFLM headers.
    sizes = []
    if shutil.which("arm-none-eabi-g++"):
        with tempfile.TemporaryDirectory() as tmp:
            write_project(projects["arduino"], tmp)
            src = os.path.join(tmp, "edgekd_model")
            for stem in ("model_data", "model_io", "samples"):
                obj = os.path.join(tmp, stem + ".o")
                subprocess.run(["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                "-mfpu=fpv4-sp-d16", "-Os", "-std=gnu++17", "-c", os.path.join(src, stem + ".cpp"),
                                "-o", obj], check=True)
                out = subprocess.run(["arm-none-eabi-size", obj], capture_output=True, text=True, check=True)
                text, dat, bss = out.stdout.splitlines()[1].split()[:3]
                sizes.append(f"| {stem}.cpp | {text} | {dat} | {bss} |")

    # Parity: TFLM (host build, reference kernels) vs LiteRT on the same int8 validation inputs.
    interp = make_interpreter(data)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    tm = tflm.Interpreter.from_bytes(data, arena_size=arena + 4096)
    agree = exact = 0
    t_litert = t_tflm = 0.0
    x = ds.val.x
    for i in range(len(x)):
        q = quantize(x[i:i + 1], scale, zp)
        t0 = time.perf_counter()
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        a = interp.get_tensor(out["index"])[0].copy()
        t1 = time.perf_counter()
        tm.set_input(q, 0)
        tm.invoke()
        b = tm.get_output(0)[0].copy()
        t2 = time.perf_counter()
        t_litert += t1 - t0
        t_tflm += t2 - t1
        agree += int(a.argmax() == b.argmax())
        exact += int(np.array_equal(a, b))
    n = len(x)
    p = projects["esp-idf"]
    body = "\n".join([
        f"Model: the digits CNN of `examples/firmware_digits.py` (15 epochs), int8, {len(data)} bytes, ops "
        f"{', '.join(o[3:] for o in p.ops)}.",
        "",
        f"Arena: {arena} B measured by `edgekd check`'s TFLM bisection ({t_arena:.1f} s, child process); "
        f"`kTensorArenaSize` = {p.arena.size} B with the default 25% / 1024 B margin.",
        "",
        "| target | board | files | render (median of 5, arena given) |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        *(["Cortex-M4 (-Os, hard float) object sizes of the TFLM-free sources, bytes:", "",
           "| file | text | data | bss |", "| --- | --- | --- | --- |", *sizes, ""] if sizes else []),
        f"Parity on all {n} validation digits, same int8 input bytes: TFLM (host build, reference kernels) "
        f"predicts the same class as LiteRT for **{agree}/{n}**; identical int8 output vectors for "
        f"{exact}/{n}. Host time per inference: LiteRT {t_litert / n * 1e6:.0f} µs, TFLM "
        f"{t_tflm / n * 1e6:.0f} µs.",
        "",
        f"Machine: {machine()}",
    ])
    print(body)
    write_section("firmware", body, command="python bench/firmware.py")


if __name__ == "__main__":
    main()
