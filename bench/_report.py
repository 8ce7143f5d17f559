"""Write one benchmark's section of docs/benchmarks.md.

Each benchmark owns the text between ``<!-- BEGIN name -->`` and
``<!-- END name -->``; rerunning it replaces only that section.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")


def machine() -> str:
    """One line describing where the benchmark ran."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {platform.system()}"


def write_section(name: str, body: str, *, command: str, doc: str = DOC) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md.

    Args:
        name: Section id (the benchmark script's name).
        body: Markdown for the section, starting with its ``## `` heading.
        command: The command that regenerates the section.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    stamp = datetime.date.today().isoformat()
    section = (
        f"{begin}\n{body.rstrip()}\n\n"
        f"_Regenerate: `{command}` — last run {stamp} on {machine()}._\n{end}"
    )
    text = open(doc, encoding="utf-8").read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = doc + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, doc)
