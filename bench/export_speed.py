"""Writing the C array of a ~1 MB model vs `xxd -i` on the same file.

    python bench/export_speed.py

Goal: edgekd's C export is not slower than `xxd -i`.
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

from bench._report import write_section  # noqa: E402


def make_model() -> bytes:
    import keras
    import numpy as np

    from edgekd.convert import convert

    keras.utils.set_random_seed(0)
    inp = keras.Input((1024,))
    x = keras.layers.Dense(1000, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    rep = np.random.default_rng(0).random((32, 1024), dtype=np.float32)
    return convert(model, mode="int8", representative_data=rep)


def main(repeats: int = 15) -> None:
    from edgekd._io import atomic_write_text
    from edgekd.export import c_arrays

    if not shutil.which("xxd"):
        sys.exit("xxd is not installed (apt-get install xxd)")
    data = make_model()
    tmp = tempfile.mkdtemp()
    model_path = os.path.join(tmp, "model.tflite")
    with open(model_path, "wb") as f:
        f.write(data)
    ours, xxd = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        _, src = c_arrays(data)
        atomic_write_text(os.path.join(tmp, "model_data.cc"), src)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with open(os.path.join(tmp, "xxd.cc"), "wb") as out:
            subprocess.run(["xxd", "-i", model_path], stdout=out, check=True)
        xxd.append(time.perf_counter() - t)
    mo, mx = statistics.median(ours), statistics.median(xxd)
    body = (
        "## C-array export speed\n\n"
        f"Model: int8 TFLite of a 1024→1000→10 MLP, {len(data):,} bytes. Median of {repeats} runs.\n"
        "edgekd's time includes verifying the flatbuffer, the header constants and the atomic write; "
        "`xxd -i` only formats bytes (process start included).\n\n"
        "| writer | median time | ratio to xxd |\n|---|---|---|\n"
        f"| `edgekd.export.c_arrays` + write | {1000 * mo:.1f} ms | {mo / mx:.2f}× |\n"
        f"| `xxd -i model.tflite > model.cc` | {1000 * mx:.1f} ms | 1.00× |\n\n"
        f"Goal: ratio ≤ 1.0 — {'met' if mo <= mx else 'NOT met'}.\n"
    )
    write_section("export_speed", body, command="python bench/export_speed.py")
    print(body)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
