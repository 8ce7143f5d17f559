import pytest

from tests.distill._models import trained_teacher


@pytest.fixture(scope="session")
def teacher(digits):
    """A small MLP teacher (logits output) trained on digits."""
    return trained_teacher(digits)
