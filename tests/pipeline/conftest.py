"""Pipeline fixtures: real digits data, no services."""

import pytest
import torch

from workers.pipeline import datasets
from workers.pipeline.images import Preprocessing


@pytest.fixture(scope="session")
def digits32():
    """scikit-learn's digits decoded at 32 px, and the preprocessing used."""
    pre = Preprocessing(image_size=32)
    return datasets.decode_set(datasets.load_raw("digits"), pre), pre


@pytest.fixture
def hub_dir(torch_home):
    """Point torch.hub (torchvision's weights cache) at `torch_home` for one test."""
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(torch_home / "hub"))
    yield torch_home / "hub"
    torch.hub.set_dir(before)
