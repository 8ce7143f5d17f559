"""Shared fixtures: the digits data, small trained models, and a CLI runner.

Trained models are cached per session (and per xdist worker) so the suite
trains each small model once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TFLM libraries built from the real trees (edgekd.emulate) are cached in the checkout's build folder.
os.environ.setdefault("EDGEKD_BUILD_DIR", os.path.join(ROOT, "build", "edgekd"))
# A suite started in the background by a shell without job control (`make test &` in a script) inherits SIGINT
# ignored, and so would every edgekd child the interrupt tests send Ctrl-C to (Python then installs no
# KeyboardInterrupt handler): a handler here is reset to the default in each child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Likewise a suite started under nohup passes SIGHUP ignored to its children, and the CLI rightly keeps an
# inherited SIG_IGN (tests/cli/test_signals.py): a handler that does nothing keeps this process immune to a
# hang-up, as nohup asked, while each child starts with the default again.
if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)


@pytest.fixture(scope="session")
def digits():
    from edgekd.datasets import digits as load

    return load()


def _train_small_cnn(ds, *, epochs: int = 10, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="small_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(ds.train.x, ds.train.y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def small_cnn(digits):
    """A small CNN (logits output) trained on digits, ~95%+ test accuracy."""
    return _train_small_cnn(digits)


@pytest.fixture(scope="session")
def small_cnn_path(small_cnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small_cnn.keras"
    small_cnn.save(path)
    return str(path)


@pytest.fixture(scope="session")
def small_cnn_tflite(small_cnn, digits, tmp_path_factory):
    """(path, bytes) of the small CNN as full-int8 TFLite."""
    from edgekd.convert import convert

    data = convert(small_cnn, mode="int8", representative_data=digits.val.x)
    path = tmp_path_factory.mktemp("tflite") / "small_cnn_int8.tflite"
    path.write_bytes(data)
    return str(path), data


def run_cli(*args: str, cwd: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m edgekd ARGS`` in a child process; returns the completed process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "edgekd", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def run_main(capsys, *args: object) -> subprocess.CompletedProcess:
    """``edgekd ARGS`` run by ``edgekd.cli.main`` in this process (no second TensorFlow start), as a
    completed process for :func:`assert_clean_error`."""
    from edgekd.cli import main

    capsys.readouterr()  # what earlier steps printed is not this command's
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def main_output(capsys, *args: object) -> tuple[int, str, str]:
    """:func:`run_main` as ``(exit code, stdout, stderr)``."""
    proc = run_main(capsys, *args)
    return proc.returncode, proc.stdout, proc.stderr


def assert_clean_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A bad-input failure: exit 2, one ``error:`` line naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1, proc.stderr
    assert not any(ln.lower().startswith("error:") and not ln.startswith("error:") for ln in proc.stderr.splitlines())
    for frag in fragments:
        assert frag.lower() in err_lines[0].lower(), (frag, err_lines[0])


@pytest.fixture
def cli():
    return run_cli


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
