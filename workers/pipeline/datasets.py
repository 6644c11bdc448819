"""Labeled image sets as uint8 tensors, built-in real datasets, and stratified splits."""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from workers.pipeline.errors import PipelineError
from workers.pipeline.images import Preprocessing


@dataclass
class ImageSet:
    """Images decoded once into a uint8 N×3×S×S tensor, with integer labels and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """The images at `index`, same class list."""
        return ImageSet(self.images[index], self.labels[index], self.classes)


@dataclass(frozen=True)
class RawSet:
    """Undecoded form of a built-in dataset: PIL images in class order."""

    images: list[Image.Image]
    labels: list[int]
    classes: list[str]


def _sklearn_digits() -> RawSet:
    """scikit-learn's 1,797 UCI handwritten digits (8×8, ink 0–16), as 8-bit grayscale images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = [Image.fromarray(p, mode="L") for p in pixels]
    return RawSet(images, [int(t) for t in digits.target], [str(c) for c in digits.target_names])


BUILTINS: dict[str, Callable[[], RawSet]] = {"digits": _sklearn_digits}


def builtin_names() -> list[str]:
    """Names accepted by `{"source": {"builtin": ...}}`."""
    return sorted(BUILTINS)


def load_raw(name: str) -> RawSet:
    """The built-in dataset `name`, undecoded."""
    try:
        loader = BUILTINS[name]
    except KeyError:
        raise PipelineError(f"unknown builtin dataset {name!r}; choose one of {builtin_names()}") from None
    return loader()


def class_counts(labels: Iterable[int], classes: list[str]) -> dict[str, int]:
    """Images per class name, every class listed."""
    counts = Counter(labels)
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def decode_set(raw: RawSet, preprocessing: Preprocessing) -> ImageSet:
    """Decode every image once through `preprocessing.to_uint8` (the exact path predict uses)."""
    from workers.pipeline.images import to_rgb

    images = torch.stack([preprocessing.to_uint8(to_rgb(img)) for img in raw.images])
    return ImageSet(images, torch.tensor(raw.labels, dtype=torch.int64), list(raw.classes))


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, held-out): `fraction` of every class held out, at least one where a class has two or more."""
    gen = torch.Generator().manual_seed(seed)
    train, held = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = int(round(len(idx) * fraction))
        if fraction > 0 and len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(held)).values
