"""Feature extraction support: run a grafted model without its head."""

import contextlib
from collections.abc import Iterator

from torch import nn

from workers.pipeline.backbones import Grafted, _set_submodule


@contextlib.contextmanager
def headless(grafted: Grafted) -> Iterator[nn.Module]:
    """Temporarily replace the head by the identity, so the model outputs the features the head would see."""
    head = grafted.head
    _set_submodule(grafted.model, grafted.head_path, nn.Identity())
    try:
        yield grafted.model
    finally:
        _set_submodule(grafted.model, grafted.head_path, head)
