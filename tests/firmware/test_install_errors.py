"""A broken installation (a template without a banner rule) is a typed edgekd error, not an AssertionError."""

from __future__ import annotations

import pytest

from edgekd.errors import EdgeKDError, InstallationError
from edgekd.firmware import project
from edgekd import boards


def test_template_without_a_banner_rule_is_an_installation_error():
    with pytest.raises(InstallationError, match="no banner rule.*Reinstall edgekd") as e:
        project._banner("model.xyz", "text", boards.get("nano33ble"), "arduino", "0.1.0")
    assert isinstance(e.value, EdgeKDError) and e.value.exit_code == 2  # the CLI prints one line, exit 2
