"""The source tree's own rules, read from the code (AST), not from a list kept by hand.

- Dependencies point one way: nothing outside ``edgekd/cli`` imports ``edgekd.cli``.
- Nothing outside a package imports its underscored names: a stage's private modules and names
  (``edgekd.fit._estimate``, ``edgekd.students._graph``) stay inside ``edgekd/<stage>/`` (and its tests
  in ``tests/<stage>/``); a top-level module's private names (``edgekd._io._writable_parent``) stay in
  that module. edgekd's private top-level modules (``edgekd._io``, ``edgekd._tmp``) serve the whole
  package and the project's own tooling (tests/, bench/), never examples/ (what users copy).
- No fallback for a stage "not built yet": an ``except ImportError`` around an ``edgekd`` import would
  turn a broken module into a silently missing feature.
- Issue numbers live in git history, not in docs or test names.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edgekd"


def _python_files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``edgekd…`` dotted name ``path`` imports (``from a import b`` gives ``a.b``), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name == "edgekd" or name.startswith("edgekd.")]


def _stage_dirs() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def _allowed(importer: Path, dotted: str) -> bool:
    """Whether ``importer`` may import ``dotted`` under the rule of the module docstring."""
    rel = importer.relative_to(ROOT).parts
    parts = dotted.split(".")
    stages = _stage_dirs()
    for k, part in enumerate(parts[1:], start=1):
        if not part.startswith("_") or part.startswith("__"):
            continue
        if k == 1:  # edgekd._io, edgekd._tmp: the package's own helpers
            if rel[0] not in ("edgekd", "tests", "bench"):
                return False
        elif parts[1] in stages:  # edgekd.<stage>._x or edgekd.<stage>.mod._x
            if rel[:2] not in (("edgekd", parts[1]), ("tests", parts[1])):
                return False
        else:  # edgekd.<module>._x (flatbuffer.py, _io.py): private to that module
            if rel != ("edgekd", parts[1] + ".py"):
                return False
    return True


def test_nothing_outside_cli_imports_edgekd_cli():
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}"
             for p in _python_files("edgekd", "bench", "examples")
             if not p.is_relative_to(PACKAGE / "cli") and p != PACKAGE / "__main__.py"  # `python -m edgekd`
             for line, name in _imports(p) if name == "edgekd.cli" or name.startswith("edgekd.cli.")]
    assert not found, "\n".join(found)


def test_no_underscored_names_imported_across_packages():
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}"
             for p in _python_files("edgekd", "tests", "bench", "examples")
             for line, name in _imports(p) if not _allowed(p, name)]
    assert not found, "make these public (or move the code into the package that owns them):\n" + "\n".join(found)


def test_the_rule_catches_what_it_should(tmp_path):
    """The checker itself: a bench script importing a private helper, a stage reaching into another's."""
    assert not _allowed(ROOT / "bench" / "x.py", "edgekd.fit._estimate")
    assert not _allowed(ROOT / "examples" / "x.py", "edgekd._io.atomic_write_bytes")
    assert not _allowed(PACKAGE / "cli" / "x.py", "edgekd.students._graph.walk")
    assert not _allowed(PACKAGE / "fit" / "x.py", "edgekd._io._writable_parent")
    assert _allowed(PACKAGE / "fit" / "x.py", "edgekd._io.atomic_write_bytes")
    assert _allowed(PACKAGE / "students" / "shrink.py", "edgekd.students._graph.walk")
    assert _allowed(ROOT / "tests" / "students" / "t.py", "edgekd.students._graph.walk")
    assert _allowed(PACKAGE / "_io.py", "edgekd._io._writable_parent")


def test_no_fallback_for_stages_not_built_yet():
    found = []
    for p in _python_files("edgekd"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if not isinstance(node, ast.Try):
                continue
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not any("ImportError" in c or "ModuleNotFoundError" in c for c in caught):
                continue
            body = ast.Module(body=node.body, type_ignores=[])
            inner = [n for n in ast.walk(body) if isinstance(n, (ast.Import, ast.ImportFrom))]
            names = [a.name for n in inner if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in inner if isinstance(n, ast.ImportFrom) and n.level == 0]
            text = ast.unparse(body)
            if any(n.startswith("edgekd") for n in names) or re.search(r"import_module\(\s*['\"]edgekd", text):
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not found, "an edgekd module that fails to import must fail loudly:\n" + "\n".join(found)


def test_a_broken_command_module_is_an_error_not_a_missing_command(monkeypatch):
    """`edgekd <cmd>` whose module cannot be imported raised "No such command" (the stage "not built yet")."""
    from edgekd import cli

    monkeypatch.setitem(cli.COMMANDS, "ghost", ("edgekd.cli.ghost_cmd", "ghost", "A command whose module is gone."))
    with pytest.raises(ModuleNotFoundError, match="ghost_cmd"):
        cli.cli.get_command(click.Context(cli.cli), "ghost")


_ISSUE = re.compile(r"\bissue[ _-]*#?\d+|\bthe issue\b", re.IGNORECASE)


def test_no_issue_numbers_in_docs_and_tests():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] + _python_files("tests", "bench")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in texts
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if _ISSUE.search(line) and p != Path(__file__)]
    assert not found, "keep issue numbers in git history:\n" + "\n".join(found)


def test_pyproject_license_and_pins():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # an SPDX string (PEP 639); the table form makes setuptools warn on every install
    assert isinstance(meta["project"]["license"], str)
    setuptools_req = next(r for r in meta["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=\s*(\d+)", setuptools_req).group(1)) >= 77  # the first to read the string form
    # edgekd.fit calls Trial.set_constraint, new in Optuna 5.0
    optuna_req = next(r for r in meta["project"]["dependencies"] if r.startswith("optuna"))
    assert int(re.search(r">=\s*(\d+)", optuna_req).group(1)) >= 5
    import optuna

    assert hasattr(optuna.trial.Trial, "set_constraint")


def test_tests_mirror_the_package():
    """Every test folder names a stage (or is tests/cli for the command line)."""
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders <= _stage_dirs(), folders - _stage_dirs()
    assert all(any(f.name.startswith("test_") for f in (ROOT / "tests" / d).iterdir()) for d in folders)
    assert os.path.isdir(ROOT / "tests" / "cli")


# Function-level imports without a comment saying why (none left; a count here may only go down)
_UNEXPLAINED_DEFERRED: dict[str, int] = {}


def test_imports_are_at_the_top_unless_a_comment_says_why():
    """Deferred imports are for TensorFlow-heavy modules (fast `import edgekd` and `edgekd --help`), each saying so."""
    found: dict[str, list[int]] = {}
    for p in _python_files("edgekd"):
        lines = p.read_text().splitlines()
        seen = set()
        for fn in ast.walk(ast.parse("\n".join(lines), str(p))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in seen:
                    seen.add(node.lineno)
                    if "#" not in lines[node.lineno - 1]:
                        found.setdefault(str(p.relative_to(ROOT)), []).append(node.lineno)
    over = {f: lines for f, lines in found.items() if len(lines) > _UNEXPLAINED_DEFERRED.get(f, 0)}
    assert not over, f"move these imports to the module top, or say on the line why they wait: {over}"


def test_no_stage_imports_tensorflow_when_imported():
    """Nor Optuna or matplotlib: `edgekd fit --help` took 2 s when edgekd.fit imported them at its top."""
    stages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    commands = sorted({mod for mod, _, _ in __import__("edgekd.cli", fromlist=["COMMANDS"]).COMMANDS.values()})
    code = ("import importlib, sys\n"
            f"for m in {['edgekd'] + [f'edgekd.{s}' for s in stages] + commands!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras', 'ai_edge_litert', 'optuna', 'matplotlib')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
