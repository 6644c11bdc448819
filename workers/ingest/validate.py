"""Decode every image of a collection once, keep the valid ones, and report counts, sizes and what was left out."""

import stat
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from workers.ingest.errors import EmptyDataset
from workers.ingest.layout import Collection, Item, open_formats
from workers.ingest.limits import Limits

_EXIF_ORIENTATION = 0x0112
_SHOWN_IGNORED = 5
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class _Excluded(Exception):
    """An image left out, with the reason shown to the user."""


@dataclass
class Report:
    """The outcome of validation: the valid images, their counts and sizes, and the files left out and why."""

    items: list[Item]
    classes: list[str]
    counts: dict[str, Any]
    image_sizes: dict[str, float]
    excluded: list[dict[str, str]]
    warnings: list[str]
    modes: dict[str, int]
    labeled: bool
    layout: str
    dropped_classes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["items"] = [asdict(item) for item in self.items]
        return data


def validate(root: Path, collection: Collection, limits: Limits) -> Report:
    """Open and fully decode every image under `root`; `EmptyDataset` if none is valid. Decoded pixels are not kept."""
    root = root.resolve()
    kept, excluded, modes, sizes = [], [], Counter(), _Sizes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for item in collection.items:
            try:
                width, height, mode = _check_image(root, item.path, limits)
            except _Excluded as exc:
                excluded.append({"path": item.path, "reason": str(exc)})
                continue
            kept.append(replace(item, width=width, height=height))
            modes[mode] += 1
            sizes.add(width, height)
    if not kept:
        first = f"; first: {excluded[0]['path']}: {excluded[0]['reason']}" if excluded else ""
        raise EmptyDataset(f"no valid image: {len(excluded)} file(s) could not be used{first}")
    per_class = Counter(i.label for i in kept if i.label is not None)
    classes = sorted(c for c in collection.classes if per_class[c])
    dropped = sorted(c for c in collection.classes if not per_class[c])
    per_split: dict[str, Counter] = defaultdict(Counter)
    for item in kept:
        if item.split is not None and item.label is not None:
            per_split[item.split][item.label] += 1
    counts = {
        "total": len(kept),
        "per_class": {c: per_class[c] for c in classes},
        "per_split": {s: {c: n[c] for c in classes if n[c]} for s, n in sorted(per_split.items())},
        "unlabeled": sum(1 for i in kept if i.label is None),
    }
    notes = _warnings(collection, limits, classes, dropped, counts, len(excluded))
    return Report(kept, classes, counts, sizes.summary(), excluded, notes, dict(sorted(modes.items())),
                  collection.labeled and bool(classes), collection.layout, dropped)


def _check_image(root: Path, rel: str, limits: Limits) -> tuple[int, int, str]:
    """(width, height, mode) of the image at `root/rel` once fully decoded, EXIF rotation applied to the size."""
    path = root / rel
    if not path.resolve().is_relative_to(root):
        raise _Excluded("the path leads outside the dataset folder")
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise _Excluded("the file does not exist") from None
    except OSError as exc:
        raise _Excluded(f"the file cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Excluded("not a regular file")
    size = info.st_size
    if size == 0:
        raise _Excluded("the file is empty")
    if size > limits.max_member_bytes:
        raise _Excluded(f"the file is {size:,} bytes, more than the {limits.max_member_bytes:,} allowed")
    try:
        with Image.open(path, formats=open_formats()) as image:
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise _Excluded(f"the image declares {width}×{height} pixels, more than the "
                                f"{limits.max_image_pixels:,} allowed (decompression bomb?)")
            image.load()
            if image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
                width, height = height, width
            return width, height, image.mode
    except _Excluded:
        raise
    except UnidentifiedImageError:
        with path.open("rb") as fh:
            if fh.read(8).startswith(_SIGNATURES):
                raise _Excluded("the file starts like an image but its header is damaged or truncated") from None
        raise _Excluded(f"not an image Pillow can read (supported: {', '.join(open_formats())})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _Excluded(f"decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, struct.error…) on bad data
        if "truncated" in str(exc).lower():
            raise _Excluded("the image is truncated (the file ends before its image data does)") from None
        raise _Excluded(f"the image could not be decoded ({type(exc).__name__}: {exc})") from None


class _Sizes:
    """Running minimum, maximum and mean of image widths and heights."""

    def __init__(self) -> None:
        self.n = self.sum_w = self.sum_h = 0
        self.min_w = self.min_h = float("inf")
        self.max_w = self.max_h = 0

    def add(self, width: int, height: int) -> None:
        """Count one image."""
        self.n += 1
        self.sum_w, self.sum_h = self.sum_w + width, self.sum_h + height
        self.min_w, self.max_w = min(self.min_w, width), max(self.max_w, width)
        self.min_h, self.max_h = min(self.min_h, height), max(self.max_h, height)

    def summary(self) -> dict[str, float]:
        """The `image_sizes` of the report."""
        return {"min_width": int(self.min_w), "max_width": self.max_w, "min_height": int(self.min_h),
                "max_height": self.max_h, "mean_width": round(self.sum_w / self.n, 1),
                "mean_height": round(self.sum_h / self.n, 1)}


def _warnings(collection: Collection, limits: Limits, classes: list[str], dropped: list[str],
              counts: dict[str, Any], n_excluded: int) -> list[str]:
    """Things the user should know before training: dropped or small classes, gaps in splits, files left out."""
    notes = [f"class {c!r} has no valid image and was dropped" for c in dropped]
    notes += [f"class {c!r} has only {n} image(s); at least {limits.min_images_per_class_warning} are advised"
              for c, n in counts["per_class"].items() if n < limits.min_images_per_class_warning]
    if collection.labeled and len(classes) == 1:
        notes.append(f"only one class ({classes[0]!r}); a classifier needs at least two")
    for split, per_class in counts["per_split"].items():
        missing = [c for c in classes if c not in per_class]
        if missing:
            notes.append(f"split {split!r} has no image of class(es) {', '.join(map(repr, missing))}")
    if collection.labeled and counts["unlabeled"]:
        notes.append(f"{counts['unlabeled']} image(s) have no label and can only be used as unlabeled data")
    if n_excluded:
        notes.append(f"{n_excluded} file(s) were excluded because they are not valid images (see excluded)")
    ignored = collection.ignored
    if ignored:
        more = f" and {len(ignored) - _SHOWN_IGNORED} more" if len(ignored) > _SHOWN_IGNORED else ""
        notes.append(f"{len(ignored)} file(s) or folder(s) were passed over (not image files, or outside the "
                     f"detected layout): {', '.join(ignored[:_SHOWN_IGNORED])}{more}")
    return notes
