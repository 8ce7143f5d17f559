"""What an IDE or `help()` shows of the public API."""

from __future__ import annotations

import inspect

import pytest

import edgekd


@pytest.mark.parametrize("name, first", [("convert", "model"), ("distill", "teacher"), ("fit", "teacher")])
def test_stage_packages_show_their_functions_signature(name, first):
    """`edgekd.convert` is a package callable as its function: its signature is the function's, first parameter too."""
    package = getattr(edgekd, name)
    fn = getattr(package, name)
    assert inspect.signature(package) == inspect.signature(fn)
    assert next(iter(inspect.signature(package).parameters)) == first
