"""Pipeline fixtures: real digits data, no services."""

import pytest

from workers.pipeline import datasets
from workers.pipeline.images import Preprocessing


@pytest.fixture(scope="session")
def digits32():
    """scikit-learn's digits decoded at 32 px, and the preprocessing used."""
    pre = Preprocessing(image_size=32)
    return datasets.decode_set(datasets.load_raw("digits"), pre), pre
