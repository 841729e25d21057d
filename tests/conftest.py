import pathlib

import pytest

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def real_weights():
    """The weights a user gets after set-up (fetched through the documented resolution)."""
    from fidkit.api import load_weights
    return load_weights()


@pytest.fixture(scope="session")
def real_a():
    return DATA / "real_a"


@pytest.fixture(scope="session")
def real_b():
    return DATA / "real_b"
