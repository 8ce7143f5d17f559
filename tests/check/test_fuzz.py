"""Seeded mutants of three small models through profile, check, export and firmware: no signal, hang or traceback.

The short version of ``bench/fuzz.py`` (same mutators, same classification): 300 mutants through the
in-process API in two worker processes (a signal there would be edgekd's process dying), the interpreters
(``check``, ``firmware``) on every 15th, one through the CLI. Every outcome must be a report, a
typed error or a clean run, and no mutant edgekd's reader accepts may be one LiteRT's loader refuses.
"""

from __future__ import annotations

import time


def test_fuzz_a_few_hundred_mutants(tmp_path):
    from bench import fuzz

    t = time.monotonic()
    s = fuzz.campaign(str(tmp_path / "fuzz"), mutants=300, jobs=2, seed=2024, cli_every=300, timeout=8,
                      hang=120, interp_every=15, log=lambda line: None)
    assert s["bad"] == 0, s["bad_cases"]
    assert s["api_mutants"] == 300 and s["cli_mutants"] == 1
    assert s["litert_load_refused_but_accepted"] == 0
    api = s["api"]
    # the mutants reach every path: verifier refusals, accepted models, interpreter reports, clean runs
    assert api["profile"].get("typed", 0) >= 60 and api["profile"].get("ok", 0) >= 60, api
    assert sum(api["check"].values()) == 20 and api["check"].get("ok", 0) >= 1, api
    assert set(s["families"]) == set(fuzz.FAMILIES)
    assert time.monotonic() - t < 120
