"""Untrusted models: interpreter crashes and hangs stay in child processes and become reports or typed errors.

Each model here took edgekd down before (a SIGSEGV in LiteRT inside edgekd's process, or a WHILE loop that
hung ``check`` forever); the CLI tests run edgekd as a real child process so a signal would show as one.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgekd._sandbox import in_fork, run_worker
from edgekd.check import check
from edgekd.convert.runtime import LiteRTJob, make_interpreter, predict, run_litert
from edgekd.errors import LiteRTError
from tests._interrupt import tagged_pids


def test_litert_segfault_under_xnnpack_is_a_report(cli, split_xnnpack_crash_tflite):
    """XNNPACK segfaults preparing this SPLIT: it used to end `edgekd check` with exit 139 and no message."""
    proc = cli("check", split_xnnpack_crash_tflite, "--board", "esp32s3")
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "LiteRT crashed with SIGSEGV during allocate at op 1 (SPLIT) (host latency, XNNPACK delegate)" \
        in proc.stdout
    assert "FAIL (litert)" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert "Created TensorFlow Lite XNNPACK delegate" not in proc.stderr  # item 13: no LiteRT banner
    r = check(split_xnnpack_crash_tflite, board="esp32s3", host_latency_runs=5)
    (f,) = r.litert_failures
    assert (f.signal, f.stage, f.op_index, f.op_name, f.task) == ("SIGSEGV", "allocate", 1, "SPLIT", "host latency")
    assert r.arena.failure is None and r.arena.arena_bytes > 0  # TFLM runs it
    d = r.to_dict()
    assert d["failed"] == ["litert"] and d["litert_failures"][0]["signal"] == "SIGSEGV" and r.exit_code == 1


def test_reshape_without_shape_input(cli, tmp_path, reshape_no_shape_tflite):
    """TFLM runs a RESHAPE whose shape input is omitted; LiteRT's builtin kernel segfaults on it: in `check`
    (host latency and parity), in `firmware` (host predictions) and in the API's predict()."""
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    r = check(reshape_no_shape_tflite, board="esp32s3", data=x, host_latency_runs=5)
    assert {(f.task, f.signal, f.stage, f.op_index, f.op_name) for f in r.litert_failures} == {
        ("host latency", "SIGSEGV", "allocate", 6, "RESHAPE"),
        ("accuracy and parity", "SIGSEGV", "allocate", 6, "RESHAPE")}
    assert r.accuracy.tflm_accuracy is None and r.accuracy.litert_accuracy is None  # no labels
    assert r.accuracy.max_diff_steps is None and r.exit_code == 1
    with pytest.raises(LiteRTError, match=r"LiteRT crashed with SIGSEGV during allocate at op 6 \(RESHAPE\)") as e:
        predict(open(reshape_no_shape_tflite, "rb").read(), x)
    assert e.value.exit_code == 1
    with pytest.raises(LiteRTError, match="SIGSEGV"):
        make_interpreter(open(reshape_no_shape_tflite, "rb").read())
    proc = cli("firmware", reshape_no_shape_tflite, "-b", "esp32s3", "-t", "esp-idf", "-o", tmp_path / "fw")
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Created TensorFlow Lite XNNPACK" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "LiteRT crashed with SIGSEGV during allocate at op 6 (RESHAPE)" in line
    assert not (tmp_path / "fw").exists()


def test_endless_while_is_reported_with_its_stage(endless_while_tflite):
    """A WHILE that never ends: `check` used to hang forever (the probe deadline never fired, host latency had
    none) and to blame "allocate"; now TFLM and LiteRT are both stopped in invoke and nothing is left running."""
    code = (
        "import json, sys, time\n"
        "from edgekd.check import check\n"
        "t = time.monotonic()\n"
        f"r = check({endless_while_tflite!r}, board='esp32s3', timeout=6, host_latency_runs=5)\n"
        "print(json.dumps({'seconds': time.monotonic() - t, 'report': r.to_dict()}))\n"
    )
    tag = f"endless-while-{os.getpid()}-{time.monotonic_ns()}"  # inherited by every worker and fork
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
               EDGEKD_TEST_RUN=tag)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    d = out["report"]
    tflm = d["arena"]["failure"]
    assert tflm["timed_out"] and tflm["stage"] == "invoke" and tflm["op_index"] == 0 and tflm["op_name"] == "WHILE"
    assert "TFLM timed out after" in tflm["message"] and "during invoke at op 0 (WHILE)" in tflm["message"]
    (lit,) = d["litert_failures"]
    assert lit["timed_out"] and lit["stage"] == "invoke" and lit["op_name"] == "WHILE"
    assert d["exit_code"] == 1 and "tflm" in d["failed"] and "litert" in d["failed"]
    assert out["seconds"] < 30  # two 6-second budgets, not forever
    time.sleep(0.5)
    assert not tagged_pids(tag), "a worker or its fork outlived the check"


def test_endless_while_through_the_api_keeps_no_orphans(endless_while_tflite):
    data = open(endless_while_tflite, "rb").read()
    t = time.monotonic()
    (lat, outs) = run_litert(data, [LiteRTJob("latency", task="host latency"),
                                    LiteRTJob("outputs", kernels="builtin", inputs=np.zeros((2, 1, 4), np.float32))],
                             timeout=4)
    assert time.monotonic() - t < 20
    for res in (lat, outs):
        assert res.failure.timed_out and res.failure.stage == "invoke" and res.failure.op_name == "WHILE"
    with pytest.raises(LiteRTError, match=r"LiteRT timed out after .* during invoke at op 0 \(WHILE\)"):
        predict(data, np.zeros((2, 4), np.float32), timeout=3)


def test_in_fork_deadline_fires_while_the_child_hangs():
    """The old probe blocked reading its pipe before it looked at the deadline: a hang was never timed out."""
    t = time.monotonic()

    def hang(stage):
        stage("invoke")
        while True:
            time.sleep(1)

    res = in_fork(hang, timeout=0.5)
    assert time.monotonic() - t < 5
    assert res["timed_out"] and not res["ok"] and res["stage"] == "invoke"

    def crash(stage):
        stage("allocate")
        os.kill(os.getpid(), signal.SIGSEGV)

    res = in_fork(crash, timeout=5)
    assert res["signal"] == "SIGSEGV" and res["stage"] == "allocate"

    def noisy(stage):
        os.write(1, b"hello from native code\n")  # as C code writes: straight to fd 1
        return {"x": 1}

    res = in_fork(noisy, timeout=5)
    assert res["ok"] and res["value"] == {"x": 1} and "hello from native code" in res["log"]


def test_run_worker_kills_the_whole_process_group(tmp_path):
    """A worker's own children die with it on a time-out (the old worker left its forked grandchild at 100 % CPU)."""
    tag = f"orphan-{os.getpid()}-{time.monotonic_ns()}"
    script = tmp_path / "hang_worker.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "sys.stderr.write('edgekd-stage: waiting\\n'); sys.stderr.flush()\n"
        "time.sleep(120)\n")
    sys.path.insert(0, str(tmp_path))
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "EDGEKD_TEST_RUN")}
    os.environ["PYTHONPATH"] = str(tmp_path) + os.pathsep + (saved["PYTHONPATH"] or "")
    os.environ["EDGEKD_TEST_RUN"] = tag  # the worker and its child inherit it
    try:
        t = time.monotonic()
        ex = run_worker("hang_worker", timeout=2)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sys.path.remove(str(tmp_path))
    assert ex.timed_out and ex.stage == "waiting" and time.monotonic() - t < 10
    time.sleep(0.3)
    assert not tagged_pids(tag)


def test_no_litert_banner_on_stderr(cli, digits_tflite):
    """Every `check` used to print LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."."""
    proc = cli("check", digits_tflite, "--board", "pico")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "XNNPACK" not in proc.stderr and "INFO:" not in proc.stderr, proc.stderr
    assert "Latency: board estimate" in proc.stdout and "host LiteRT median" in proc.stdout
