"""``check`` with an emulation: the 32-bit arena and the linked TFLM replace the host figure and the table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgekd.errors import InvalidArgumentError
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def emulated(tiny_tflite, digits, chirale):
    from edgekd.emulate.qemu import emulate

    return emulate(tiny_tflite[1], board="nucleo-l4r5zi", tflm=chirale, samples=digits.test, num_samples=8)


def test_ram_and_flash_rows_use_the_emulated_figures(emulated, tiny_tflite, digits):
    from edgekd.check import check

    plain = check(tiny_tflite[1], board="nucleo-l4r5zi", data=digits.test, host_latency=False)
    report = check(tiny_tflite[1], board="nucleo-l4r5zi", data=digits.test, host_latency=False,
                   emulation=emulated)
    rows = {r.name: r for r in report.rows}
    b = report.board
    assert rows["ram"].value == emulated.arena_used_bytes + b.runtime_ram_bytes
    assert rows["ram"].value < {r.name: r for r in plain.rows}["ram"].value  # 32-bit < 64-bit host
    assert rows["flash"].value == len(tiny_tflite[1]) + emulated.size.tflm_flash
    assert "emulated" in rows["ram"].how and "as linked" in rows["flash"].how
    assert rows["device_outputs"].passed and report.passed
    summary = report.to_dict()["emulation"]
    assert summary["arena_used_bytes"] == emulated.arena_used_bytes and "outputs" not in summary


def test_outputs_off_by_more_than_a_step_fail_the_check(emulated, tiny_tflite):
    from edgekd.check import check

    off = emulated.outputs.copy()
    off[0, 0] = np.int8(int(off[0, 0]) - 3 if off[0, 0] > -125 else 0)
    report = check(tiny_tflite[1], board="nucleo-l4r5zi", host_latency=False,
                   emulation=dataclasses.replace(emulated, outputs=off))
    assert "device_outputs" in report.failed_budgets and report.exit_code == 1


def test_an_emulation_of_another_board_is_refused(emulated, tiny_tflite):
    from edgekd.check import check

    with pytest.raises(InvalidArgumentError, match="emulation"):
        check(tiny_tflite[1], board="nano33ble", host_latency=False, emulation=emulated)


def test_cli_emulate_on_a_board_without_an_emulator(tiny_tflite):
    assert_clean_error(run_cli("check", tiny_tflite[0], "--board", "esp32", "--emulate"), "cannot be emulated",
                       "nucleo-l4r5zi")


def test_cli_check_emulate_prints_the_emulated_figures(tiny_tflite, chirale):
    proc = run_cli("check", tiny_tflite[0], "--board", "nano33ble", "--dataset", "digits", "--max-samples", "8",
                   "--emulate", "--tflm", chirale, "--no-host-latency")
    assert proc.returncode == 0, proc.stderr
    assert "Emulated: chirale-2.0.0 (cmsis-nn kernels) on QEMU mps2-an386" in proc.stdout
    assert "device_outputs" in proc.stdout


def test_emulate_reads_the_model_once_and_check_then_emulate_bisect_once(tiny_tflite, digits, chirale, monkeypatch):
    import edgekd.flatbuffer as flatbuffer
    import edgekd.check.core as core
    import edgekd.check.tflm as tflm
    import edgekd.firmware.project as project
    from edgekd.check import check
    from edgekd.emulate.qemu import emulate

    verified, bisections = [], []
    real_verify, real_run = flatbuffer.verify, tflm.run_tflm

    def run_tflm(model, **kwargs):
        bisections.append(kwargs.get("bisect", True))
        return real_run(model, **kwargs)

    monkeypatch.setattr(flatbuffer, "verify", lambda *a, **k: (verified.append(1), real_verify(*a, **k))[1])
    for module in (tflm, core, project):  # wherever it is called from
        monkeypatch.setattr(module, "run_tflm", run_tflm)
    em = emulate(tiny_tflite[0], board="nucleo-l4r5zi", tflm=chirale, samples=digits.test, num_samples=2)
    assert len(verified) == 1  # the file is read and parsed once (firmware render and profile share it)
    assert bisections == [True]  # a model without a measured arena: render bisects it, once
    assert em.model.emulation.arena_used_bytes == em.arena_used_bytes and em.model.arena_bytes > 0
    report = check(tiny_tflite[0], board="nucleo-l4r5zi", host_latency=False)
    del bisections[:]
    again = emulate(report.model, board="nucleo-l4r5zi", tflm=chirale, samples=digits.test, num_samples=2)
    assert bisections == [False]  # the arena edgekd check measured travels with the model
    assert again.model.arena_bytes == report.arena.arena_bytes
