import os
import pathlib
import subprocess
import sys

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


#: 256 train and 256 test images of Fashion-MNIST (the first of each split, same IDX format):
#: the data the trainer's mechanics tests read, so that they run on a machine without the
#: Debian package (tests/data/README.md).
FASHION_MNIST_MINI = DATA / "fashion-mnist-mini"


def fashion_mnist_missing():
    """None when the full Fashion-MNIST files are where fidkit looks for them; else why not."""
    import os

    from fidkit.sources import DATASETS
    for folder, name in DATASETS.values():
        path = pathlib.Path(os.environ.get("FIDKIT_DATASETS", folder)) / name
        if not path.is_file():
            return (f"needs the full Fashion-MNIST ({path} not found): `apt-get install dataset-fashion-mnist`, "
                    f"or set FIDKIT_DATASETS to the folder holding its IDX files")
    return None


def pytest_runtest_setup(item):
    """Tests marked ``dataset`` skip, with how to get the data, where it is missing. Checked
    here, before any fixture of theirs reads the data."""
    if item.get_closest_marker("dataset"):
        reason = fashion_mnist_missing()
        if reason:
            pytest.skip(reason)


def run_fidkit(*args, check=True, env=None):
    """``python -m fidkit ARGS`` in a subprocess with warnings shown (``env``: further environment
    variables); asserts exit 0 when ``check``."""
    r = subprocess.run([sys.executable, "-m", "fidkit", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "default", **(env or {})})
    if check:
        assert r.returncode == 0, r.stderr
    return r
