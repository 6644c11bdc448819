"""Find the images in an extracted folder and their labels: ImageFolder (with splits), a manifest, or a flat folder."""

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from PIL import Image

from workers.ingest.archive import is_junk, safe_parts, shown
from workers.ingest.errors import EmptyDataset, InvalidManifest, LimitExceeded, UnsafeArchive
from workers.ingest.limits import Limits

IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM")
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MANIFESTS = ("labels.csv", "labels.jsonl", "manifest.jsonl")


@dataclass(frozen=True, slots=True)
class Item:
    """One image: its path relative to the dataset root (posix), its class and split; its size once validated."""

    path: str
    label: str | None = None
    split: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class Collection:
    """The images found in a dataset folder, how they were laid out, and the files passed over by name."""

    items: list[Item]
    classes: list[str]
    labeled: bool
    layout: str = "flat"
    ignored: list[str] = field(default_factory=list)


@cache
def image_suffixes() -> frozenset[str]:
    """File name endings taken for images: those Pillow registers for `IMAGE_FORMATS`."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in IMAGE_FORMATS)


@cache
def open_formats() -> tuple[str, ...]:
    """The `IMAGE_FORMATS` this Pillow opens (newer ones open MPO through JPEG)."""
    Image.init()
    return tuple(fmt for fmt in IMAGE_FORMATS if fmt in Image.OPEN)


def split_name(value: str) -> str:
    """`train`, `val` or `test` for a split folder or manifest value (`valid`/`validation` → `val`); KeyError else."""
    return SPLITS[value.strip().lower()]


def scan(root: Path, limits: Limits) -> Collection:
    """The images under `root` with labels and splits, detected from the layout; `EmptyDataset` if there is none."""
    root = root.resolve()
    base = _unwrap(root)
    manifest = next((base / name for name in MANIFESTS if (base / name).is_file()), None)
    found = _Found(root, limits)
    if manifest is not None:
        if not manifest.resolve().is_relative_to(root):
            raise UnsafeArchive(f"{manifest.name} is a link to outside the dataset folder; refused")
        items = _read_manifest(manifest, root, limits)
        classes, layout = sorted({i.label for i in items if i.label is not None}), "manifest"
    else:
        entries = _entries(base)
        splits = {e: split_name(e.name) for e in entries
                  if e.is_dir() and not e.is_symlink() and e.name.lower() in SPLITS}
        if splits:
            for entry in entries:
                if entry in splits:
                    found.folder(entry, splits[entry])
                else:
                    found.ignored.append(_rel(entry, root))
            layout = "imagefolder+splits"
        else:
            found.folder(base, None)
            layout = "imagefolder" if found.classes else "flat"
        items = sorted(found.items, key=lambda i: (i.split or "", i.path))
        classes = sorted(found.classes | {i.label for i in items if i.label is not None})
    if not items:
        raise EmptyDataset(f"no image files found (looked for {', '.join(sorted(image_suffixes()))})")
    labeled = any(i.label is not None for i in items)
    return Collection(items, classes, labeled, layout, sorted(found.ignored))


def _entries(folder: Path) -> list[Path]:
    """The visible entries of `folder`, sorted, junk left out."""
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if not is_junk(e.name))


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root`, posix."""
    return path.relative_to(root).as_posix()


def _unwrap(root: Path) -> Path:
    """Step into single wrapper folders (`digits/<class>/…`) that hold nothing else and are not a split."""
    base = root
    while True:
        entries = _entries(base)
        if len(entries) != 1 or entries[0].is_symlink() or not entries[0].is_dir():
            return base
        if entries[0].name.lower() in SPLITS:
            return base
        base = entries[0]


class _Found:
    """Images gathered from folders: class folders become labels, loose files are unlabeled or passed over."""

    def __init__(self, root: Path, limits: Limits) -> None:
        self.root, self.limits = root, limits
        self.items: list[Item] = []
        self.classes: set[str] = set()
        self.ignored: list[str] = []
        self._seen = 0

    def folder(self, folder: Path, split: str | None) -> None:
        """Subfolders of `folder` are classes (images found at any depth); loose images count only without them."""
        entries = _entries(folder)
        class_dirs = {e for e in entries if e.is_dir() and not e.is_symlink()}
        for class_dir in sorted(class_dirs):
            self.classes.add(class_dir.name)
            for path in self._files(class_dir):
                self._add(path, class_dir.name, split)
        for entry in entries:
            if entry in class_dirs:
                continue
            if not self._is_file(entry) or class_dirs:
                self.ignored.append(_rel(entry, self.root))
            else:
                self._add(entry, None, split)

    def _add(self, path: Path, label: str | None, split: str | None) -> None:
        """Keep `path` as an item if its name says image, else note it as ignored."""
        rel = _rel(path, self.root)
        if path.suffix.lower() in image_suffixes():
            self.items.append(Item(rel, label, split))
        else:
            self.ignored.append(rel)

    def _tick(self) -> None:
        """Count one file or folder visited; `LimitExceeded` past `max_members`."""
        self._seen += 1
        if self._seen > self.limits.max_members:
            raise LimitExceeded(f"the folder holds more than {self.limits.max_members:,} files and folders")

    def _is_file(self, path: Path) -> bool:
        """A regular file, or a link to one inside the root (`UnsafeArchive` if it leads outside); counted."""
        self._tick()
        if path.is_symlink() and not path.resolve().is_relative_to(self.root):
            raise UnsafeArchive(f"{shown(_rel(path, self.root))} is a link to outside the dataset folder; refused")
        return path.is_file()

    def _files(self, top: Path) -> Iterator[Path]:
        """Files under `top` at any depth, junk and linked folders left out (the latter noted as ignored)."""
        stack = [top]
        while stack:
            for entry in _entries(stack.pop()):
                if entry.is_dir() and not entry.is_symlink():
                    self._tick()
                    stack.append(entry)
                elif self._is_file(entry):
                    yield entry
                else:
                    self.ignored.append(_rel(entry, self.root))


def _read_manifest(manifest: Path, root: Path, limits: Limits) -> list[Item]:
    """Items from `labels.csv` (path,label[,split]) or JSONL records; paths relative to the manifest's folder."""
    size = manifest.stat().st_size
    if size > limits.max_member_bytes:
        raise LimitExceeded(f"{manifest.name} is {size:,} bytes; the limit is {limits.max_member_bytes:,}")
    records = _csv_records(manifest) if manifest.suffix == ".csv" else _jsonl_records(manifest)
    items, seen = [], set()
    for line, path, label, split in records:
        where = f"{manifest.name} line {line}"
        parts = safe_parts(path, f"{where}: path")
        if not parts:
            raise InvalidManifest(f"{where}: the path is empty")
        target = manifest.parent.joinpath(*parts)
        if not target.resolve().is_relative_to(root):
            raise UnsafeArchive(f"{where}: path {shown(path)} leads outside the dataset folder; refused")
        rel = _rel(target, root)
        if rel in seen:
            raise InvalidManifest(f"{where}: {shown(path)} is listed twice")
        seen.add(rel)
        try:
            split = split_name(split) if split else None
        except KeyError:
            raise InvalidManifest(f"{where}: split {shown(split)} is not one of train, val, test") from None
        items.append(Item(rel, label or None, split))
        if len(items) > limits.max_members:
            raise LimitExceeded(f"{manifest.name} lists more than {limits.max_members:,} images")
    return sorted(items, key=lambda i: (i.split or "", i.path))


def _csv_records(manifest: Path) -> Iterator[tuple[int, str, str, str]]:
    """(line, path, label, split) from a CSV with a `path,label[,split]` header."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            if "path" not in header or "label" not in header:
                raise InvalidManifest(f"{manifest.name} needs a header row with columns path and label "
                                      f"(and optionally split); found {header}")
            col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise InvalidManifest(f"{manifest.name} line {reader.line_num}: expected {len(header)} "
                                          f"columns, found {len(row)}")
                cells = {name: row[i].strip() for name, i in col.items()}
                yield reader.line_num, cells["path"], cells["label"], cells.get("split", "")
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"{manifest.name} is not valid UTF-8 CSV: {exc}") from None


def _jsonl_records(manifest: Path) -> Iterator[tuple[int, str, str, str]]:
    """(line, path, label, split) from JSON objects, one a line, with `path`, `label` and optionally `split`."""
    try:
        with manifest.open(encoding="utf-8-sig") as fh:
            for line, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InvalidManifest(f"{manifest.name} line {line}: not JSON ({exc})") from None
                if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                    raise InvalidManifest(f"{manifest.name} line {line}: expected an object with a string path")
                label, split = record.get("label"), record.get("split")
                if isinstance(label, bool) or not isinstance(label, str | int | None):
                    raise InvalidManifest(f"{manifest.name} line {line}: label must be a string or an integer")
                if not isinstance(split, str | None):
                    raise InvalidManifest(f"{manifest.name} line {line}: split must be a string")
                yield line, record["path"], "" if label is None else str(label).strip(), split or ""
    except UnicodeDecodeError as exc:
        raise InvalidManifest(f"{manifest.name} is not valid UTF-8: {exc}") from None
