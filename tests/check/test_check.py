"""edgekd check against the real TFLM and LiteRT interpreters."""

import json

import numpy as np
import pytest

from edgekd.check import check, parse_size, run_tflm
from edgekd.errors import BoardError, DataError, InvalidArgumentError, TFLiteFileError, UnsupportedOpError
from edgekd.flatbuffer import read_tflite
from tests.conftest import assert_clean_error


def test_parse_size():
    assert parse_size("512KB") == 512 * 1024
    assert parse_size("128KiB") == 128 * 1024
    assert parse_size("1.5MB") == 1536 * 1024
    assert parse_size("2048") == 2048 and parse_size(4096) == 4096
    for bad in ("-1KB", "12 parsecs", "", 0, True):
        with pytest.raises(InvalidArgumentError, match="max_ram"):
            parse_size(bad, name="max_ram")


def test_bisection_agrees_with_tflm_allocation_record(digits_model):
    data = digits_model[1]
    model = read_tflite(data)
    meas, _, _ = run_tflm(data, max_arena=256 * 1024, num_ops=len(model.operators))
    assert meas.failure is None
    # TFLM's RecordingMicroAllocator total (steady state, at a generous arena) vs the bisected
    # minimum: never below it by more than the 16-byte arena alignment, and above it by at most
    # the transient temporaries of Prepare (a few TfLiteTensor structs, 64 B each on this host,
    # which a small activation head cannot absorb).
    assert meas.record_total_bytes - 16 <= meas.arena_bytes <= meas.record_total_bytes + 512
    assert meas.record_head_bytes + meas.record_tail_bytes == meas.record_total_bytes
    # minimal: 32 bytes less does not allocate (a too-small arena crashes TFLM: the
    # child process must turn that into a failure, not kill us)
    small, _, _ = run_tflm(data, max_arena=meas.arena_bytes - 32, num_ops=len(model.operators), narrow=False)
    assert small.failure is not None and small.arena_bytes is None
    # 64-bit over-statement: a positive part of the persistent tail, never of the activations
    assert 0 < meas.host_overstatement_bytes < meas.record_tail_bytes
    assert meas.seconds < 20


def test_digits_parity_litert_vs_tflm(digits_model, digits):
    keras_model, data = digits_model
    r = check(data, board="nano33ble", data=digits.test, float_model=keras_model, host_latency=False)
    acc = r.accuracy
    assert acc.samples == len(digits.test)
    assert acc.max_diff_steps <= 1
    assert acc.tflm_accuracy == pytest.approx(acc.litert_accuracy, abs=0.01)
    assert acc.float_accuracy > 0.5 and abs(acc.float_accuracy - acc.litert_accuracy) < 0.1
    assert r.exit_code == 0


def test_report_contents(digits_tflite):
    r = check(digits_tflite, board="pico", host_latency_runs=10)
    d = json.loads(r.to_json())
    assert d["passed"] and {b["name"] for b in d["budgets"]} == {"flash", "ram", "latency"}
    flash = next(b for b in d["budgets"] if b["name"] == "flash")
    assert flash["value"] == read_tflite(digits_tflite).size_bytes + r.board.runtime_flash_bytes
    ram = next(b for b in d["budgets"] if b["name"] == "ram")
    assert ram["value"] == r.arena.arena_bytes + r.board.runtime_ram_bytes
    assert r.host_latency.median_ms <= r.host_latency.p90_ms
    # per-layer view: one row per op; the RAM peak equals the arena's activation head here
    # (a linear graph: the planner cannot beat the largest input+output pair)
    assert len(r.layers) == len(read_tflite(digits_tflite).operators)
    peak = max(layer.live_activation_bytes for layer in r.layers)
    assert sum(layer.is_ram_peak for layer in r.layers) >= 1
    assert peak == r.arena.record_head_bytes
    # ... and the profiler's peak-RAM estimate (same lifetimes, computed independently) agrees
    assert r.profiler_peak_ram_bytes == peak
    # board estimate = Σ MACs × cycles/MAC / clock + overhead, recomputed by hand
    b = r.board
    classes = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fully_connected"}
    by_hand = sum(layer.macs * b.coefficient(classes.get(layer.op_name, "other")) + b.per_op_overhead_cycles
                  for layer in r.layers) / b.clock_hz * 1e3
    assert r.board_latency.total_ms == pytest.approx(by_hand)


def test_uno_rejected_with_reason(digits_tflite):
    with pytest.raises(BoardError, match="cannot run TFLM.*32-bit"):
        check(digits_tflite, board="uno")


def test_unsupported_ops_named(topk_tflite, flex_tflite):
    with pytest.raises(UnsupportedOpError, match="TOPK_V2"):
        check(topk_tflite, board="esp32")
    with pytest.raises(UnsupportedOpError, match="SELECT_TF_OPS"):
        check(flex_tflite, board="esp32")


def test_too_big_for_nano_cli(cli, big_tflite):
    proc = cli("check", big_tflite, "--board", "nano33ble", "--json", "--no-host-latency")
    assert proc.returncode == 1, proc.stderr
    d = json.loads(proc.stdout)
    assert d["failed"] == ["flash"]
    proc = cli("check", big_tflite, "--board", "nano33ble", "--no-host-latency")
    assert proc.returncode == 1 and "FAIL (flash)" in proc.stdout


def test_overrides_beat_the_board(capsys, big_tflite, digits_tflite):
    def cli(*args):
        return _inproc(capsys, *args)

    # the board says no; a larger flash override says yes
    proc = cli("check", big_tflite, "--board", "nano33ble", "--max-flash", "4MB", "--json",
               "--no-host-latency")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flash = next(b for b in json.loads(proc.stdout)["budgets"] if b["name"] == "flash")
    assert flash["source"] == "override" and flash["budget"] == 4 * 1024 * 1024
    # the board says yes; tighter overrides say no, naming each budget
    proc = cli("check", digits_tflite, "--board", "esp32s3", "--max-ram", "1KB", "--max-latency-ms", "0.001",
               "--json", "--no-host-latency")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["failed"] == ["ram", "latency"]


def test_cli_dataset_layers(capsys, digits_tflite):
    proc = _inproc(capsys, "check", digits_tflite, "--board", "nano33ble", "--dataset", "digits", "--layers")
    assert proc.returncode == 0, proc.stderr
    for frag in ("PASS", "RAM peak", "quantized step", "over-states"):
        assert frag in proc.stdout, frag


def _inproc(capsys, *args):
    """Run the CLI in this process (TensorFlow is already loaded here): (exit code, stdout, stderr)."""
    import subprocess

    from edgekd.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, e.value.code, out, err)


def test_bad_inputs_exit_2(cli, capsys, tmp_path, digits_tflite):
    data = open(digits_tflite, "rb").read()
    (tmp_path / "text.tflite").write_text("hello, not a model")
    (tmp_path / "trunc.tflite").write_bytes(data[: len(data) // 3])
    (tmp_path / "bad.toml").write_text("id = 'x'\n")
    # one real subprocess, end to end
    assert_clean_error(cli("check", str(tmp_path / "missing.tflite"), "--board", "pico"), "not found")
    for args, frags in [
        ((tmp_path / "text.tflite", "--board", "pico"), ("not a valid TFLite",)),
        ((tmp_path / "trunc.tflite", "--board", "pico"), ("not a valid TFLite",)),
        ((digits_tflite, "--board", "nano34"), ("nano33ble", "esp32s3")),
        ((digits_tflite, "--board-file", tmp_path / "bad.toml"), ("bad.toml",)),
        ((digits_tflite, "--board-file", tmp_path / "nope.toml"), ("not found",)),
        ((digits_tflite, "--board", "pico", "--board-file", tmp_path / "bad.toml"), ("exactly one of --board",)),
        ((digits_tflite, "--board", "pico", "--max-ram", "lots"), ("--max-ram",)),
        ((digits_tflite, "--board", "uno"), ("32-bit",)),
        ((digits_tflite, "--board", "pico", "--dataset", "mnist"), ("digits",)),
        ((digits_tflite,), ("--board",)),
    ]:
        assert_clean_error(_inproc(capsys, "check", *args), *frags)


def test_corrupted_files_never_crash(digits_tflite):
    """Flip bytes all over the flatbuffer: every outcome is a report or a clean error, and both occur."""
    data = bytearray(open(digits_tflite, "rb").read())
    rng = np.random.default_rng(0)
    outcomes = []
    for trial in range(12):
        bad = bytearray(data)
        for pos in rng.integers(8, len(bad), size=4):
            bad[pos] = int(rng.integers(0, 256))
        try:
            r = check(bytes(bad), board="nano33ble", host_latency=False)
            outcomes.append("report")
            if r.arena.failure is not None:
                assert r.arena.failure.stage in ("allocate", "invoke")
        except (TFLiteFileError, UnsupportedOpError) as e:
            outcomes.append(type(e).__name__)
    # every corruption was accounted for; some were refused and some (in weights) still gave a report,
    # so the verifier neither lets everything through nor refuses everything
    assert len(outcomes) == 12, outcomes
    assert "report" in outcomes and set(outcomes) - {"report"}, outcomes


def test_huge_activations_fail_fast_without_tflm(huge_activation_tflite):
    r = check(huge_activation_tflite, board="esp32s3", host_latency=False)
    assert r.exit_code == 1 and "ram" in r.failed_budgets
    ram = next(row for row in r.rows if row.name == "ram")
    # lower bound = input (4 MiB) + output (32 MiB) int8 activations, alive together in the one conv
    assert ram.value == 2048 * 2048 * (1 + 8) + r.board.runtime_ram_bytes
    assert "lower bound" in ram.how and r.arena.seconds == 0.0


def test_tflm_abort_becomes_a_report(cli, softmax_abort_tflite):
    """TFLM aborts the process preparing this SOFTMAX; edgekd reports signal, stage and op, and lives."""
    model = read_tflite(softmax_abort_tflite)
    r = check(softmax_abort_tflite, board="pico", host_latency=False)
    f = r.arena.failure
    assert f is not None and f.signal == "SIGABRT" and f.stage == "allocate"
    assert f.op_index == 1 and model.operators[1].op_name == "SOFTMAX" == f.op_name
    assert r.exit_code == 1 and r.rows[1].value is None  # RAM unknown: TFLM never allocated
    proc = cli("check", softmax_abort_tflite, "--board", "pico", "--no-host-latency")
    assert proc.returncode == 1, proc.stderr
    assert "TFLM crashed with SIGABRT during allocate at op 1 (SOFTMAX)" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_api_validates_arguments_first(digits_tflite, digits):
    with pytest.raises(InvalidArgumentError, match="max_latency_ms"):
        check(digits_tflite, board="pico", max_latency_ms="fast")
    with pytest.raises(InvalidArgumentError, match="max_flash"):
        check(digits_tflite, board="pico", max_flash="-3KB")
    with pytest.raises(DataError, match="shape"):
        check(digits_tflite, board="pico", data=np.zeros((4, 9, 9, 1), np.float32))
    with pytest.raises(DataError, match="labels"):
        check(digits_tflite, board="pico", data=digits.test.x[:5], labels=[1, 2])
    with pytest.raises(BoardError, match="Known boards"):
        check(digits_tflite, board="arduino-mega")


def test_python_data_goes_through_the_one_validator(digits_tflite):
    """check()'s data is checked by edgekd.datasets.validate: its messages, and a resize hint for Python callers."""
    from edgekd.errors import ResizeNeededError

    with pytest.raises(DataError, match="data has 3 inputs but 2 labels"):
        check(digits_tflite, board="nano33ble", data=np.zeros((3, 8, 8, 1), np.float32), labels=[1, 2],
              host_latency=False)
    with pytest.raises(DataError, match="contains NaN or Inf"):
        check(digits_tflite, board="nano33ble", data=np.full((2, 8, 8, 1), np.nan, np.float32), host_latency=False)
    with pytest.raises(ResizeNeededError, match=r"pass edgekd\.datasets\.resize\(x, \(8, 8, 1\)\) as `data`"):
        check(digits_tflite, board="nano33ble", data=np.zeros((2, 16, 16, 1), np.float32), host_latency=False)
