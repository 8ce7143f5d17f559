"""Child process of tests/test_io.py: write one output folder with edgekd._io.staged_dir, as the CLI would.

``python tests/_staged_writer.py OUTDIR VERSION [--no-exchange] [--file]`` writes a small tree whose
every file names VERSION (or, with ``--file``, one file OUTDIR through atomic_write_bytes). SIGTERM is
handled as the CLI handles it; ``--no-exchange`` takes the two-rename fallback. EDGEKD_TEST_PAUSE_AT
makes it wait at a stage.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgekd import _io  # noqa: E402
from edgekd.cli import handle_signals  # noqa: E402

FILES = ("model.tflite", "model_data.h", "model_data.cc", "sub/model_io.h", "sub/deeper/samples.cc")


def tree(version: str) -> dict[str, bytes]:
    """What version ``version`` of the output holds, relative path -> bytes."""
    return {rel: f"{rel} of {version}\n".encode() * 50 for rel in FILES}


def main() -> int:
    outdir, version = sys.argv[1], sys.argv[2]
    handle_signals()
    if "--no-exchange" in sys.argv:
        _io._exchange = lambda a, b: False
    try:
        if "--file" in sys.argv:
            _io.atomic_write_bytes(outdir, tree(version)["model.tflite"])
            return 0
        with _io.staged_dir(outdir) as stage:
            for rel, data in tree(version).items():
                _io.atomic_write_bytes(os.path.join(stage, rel), data)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
