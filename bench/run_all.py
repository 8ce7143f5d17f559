"""Run every benchmark of bench/ in turn; each rewrites its own section of docs/benchmarks.md.

    python bench/run_all.py            # all of them
    python bench/run_all.py engine fit # only these (script names without .py)

A benchmark that fails is reported and the others still run; the exit status is 1 when any failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Modules that are helpers, not benchmarks.
HELPERS = {"_report", "refmodels", "distill_common", "run_all"}


def benchmarks() -> list[str]:
    """The benchmark scripts' names, in alphabetical order."""
    return sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py") and f[:-3] not in HELPERS)


def main(argv: list[str]) -> int:
    names = argv or benchmarks()
    unknown = sorted(set(names) - set(benchmarks()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benchmarks())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        t0 = time.perf_counter()
        print(f"== bench/{name}.py", flush=True)
        if subprocess.run([sys.executable, os.path.join(HERE, f"{name}.py")]).returncode != 0:
            failed.append(name)
        print(f"== bench/{name}.py: {time.perf_counter() - t0:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
