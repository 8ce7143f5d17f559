"""Every fenced python/bash/sh/console snippet of README.md and docs/*.md runs as written.

A page's snippets run in order, in one scratch folder holding the files the docs name (``teacher.keras``,
``student.keras``, ``model.keras``, ``model.h5``, ``model.tflite``, ``model_int8.tflite``,
``student_int8.tflite``, ``train.npz``), and its Python snippets share one namespace, as a reader
following the page would. Shell snippets run with ``bash -e`` (``$ `` prompts of console blocks are
stripped, their other lines are output). An HTML comment right above a fence may say:

- ``<!-- docs-test: skip (why) -->``: not run; the reason is required.
- ``<!-- docs-test: quick PREFIX: ARGS -->``: shell lines starting with PREFIX get ARGS appended (click
  keeps the last value of an option), e.g. fewer trials for ``edgekd fit`` or ``--dry-run`` for
  ``edgekd flash`` when there is no board.

Pages whose snippets train for long are marked slow.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgekd import students

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("python", "bash", "sh", "console")
SLOW = {"README.md", "fit.md", "optimize.md", "firmware.md", "distill.md"}

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")


@dataclass
class Snippet:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    quick: list[tuple[str, str]] = field(default_factory=list)


def snippets(path: Path) -> list[Snippet]:
    text = path.read_text()
    out = []
    for m in _FENCE.finditer(text):
        lang = m.group(1)
        if lang not in RUN:
            continue
        s = Snippet(path.name, text[:m.start()].count("\n") + 1, lang, m.group(2))
        before = text[:m.start()].rstrip("\n").split("\n")
        while before and _DIRECTIVE.fullmatch(before[-1].strip()):
            d = _DIRECTIVE.fullmatch(before.pop().strip()).group(1)
            if d.startswith("skip"):
                s.skip = d[len("skip"):].strip().strip("()")
            elif d.startswith("quick "):
                prefix, _, args = d[len("quick "):].partition(":")
                s.quick.append((prefix.strip(), args.strip()))
            else:
                raise AssertionError(f"{path.name}:{s.line}: unknown docs-test directive {d!r}")
        out.append(s)
    return out


def shell_script(s: Snippet) -> str:
    lines = []
    for line in s.code.splitlines():
        if s.lang == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        code, hash_, comment = line.partition(" #")
        for prefix, args in s.quick:
            if code.strip().startswith(prefix):
                code = f"{code.rstrip()} {args}"
        lines.append(code + (hash_ + comment if hash_ else ""))
    return "set -e\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_cnn, small_cnn_tflite, digits):
    """The files the docs name, made once: a trained teacher, a small student, their int8 models, data."""
    import keras

    d = tmp_path_factory.mktemp("docs_files")
    small_cnn.save(d / "teacher.keras")
    small_cnn.save(d / "model.keras")
    student = students.get("ds_cnn:width=0.25")(input_shape=(8, 8, 1), num_classes=10)
    student.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(digits.train.x, digits.train.y, epochs=2, verbose=0)
    student.save(d / "student.keras")
    for name in ("model.tflite", "model_int8.tflite", "student_int8.tflite"):
        (d / name).write_bytes(small_cnn_tflite[1])
    np.savez(d / "train.npz", x=digits.train.x, y=digits.train.y)
    inp = keras.Input((None, None, 1))  # an .h5 whose input size is unknown: profile needs --input-shape
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))).save(d / "model.h5")
    return d


def test_every_skip_states_why():
    for page in PAGES:
        for s in snippets(page):
            if s.skip is not None:
                assert len(s.skip) > 10, f"{s.page}:{s.line}: a skip must say why"


@pytest.mark.parametrize("page", [pytest.param(p, marks=[pytest.mark.slow] if p.name in SLOW else [], id=p.name)
                                  for p in PAGES if any(not s.skip for s in snippets(p))])
def test_page_snippets_run(page, files, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(files, work)
    (work / ".venv").symlink_to(sys.prefix)  # the environment running the tests: `source .venv/bin/activate`
    monkeypatch.chdir(work)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    namespace: dict = {"__name__": "__docs__"}
    registered = set(students.names())
    for s in snippets(page):
        where = f"{s.page}:{s.line}"
        if s.skip:
            continue
        if s.lang == "python":
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    exec(compile(s.code, where, "exec"), namespace)
                except Exception as e:  # noqa: BLE001 - the snippet failed as written
                    pytest.fail(f"{where}: {type(e).__name__}: {e}")
        else:
            proc = subprocess.run(["bash", "-c", shell_script(s)], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=900)
            assert proc.returncode == 0, (where, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    for name in set(students.names()) - registered:  # a page that adds an architecture leaves none behind
        students.unregister(name)


def test_the_parser_sees_directives():
    page = ROOT / "README.md"
    found = {s.line: s for s in snippets(page)}
    assert any(s.skip for s in found.values()) and any(s.quick for s in found.values())
    quick = next(s for s in found.values() if s.quick)
    script = shell_script(quick)
    assert "--trials 1 --epochs 2" in script and "--dry-run" in script
    assert (Path(sys.executable).parent / "edgekd").exists()  # the snippets' shell finds edgekd there
