"""Layouts found in extracted folders, images validated by decoding them, and server-folder import roots."""

import io
import json
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers.ingest.archive import extract
from workers.ingest.errors import EmptyDataset, IngestError, InvalidManifest, LimitExceeded, UnsafeArchive
from workers.ingest.folder import check_import_root
from workers.ingest.layout import scan
from workers.ingest.limits import Limits
from workers.ingest.validate import validate

LIMITS = Limits()


def png(color: int = 128, size: tuple[int, int] = (8, 8), mode: str = "L") -> bytes:
    """A small real PNG."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def noise_png(size: int = 64) -> bytes:
    """A PNG of random pixels, large enough that cutting it leaves a truncated image stream."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims `width`×`height` (CRC fixed), the pixel data left as it was."""
    ihdr = data[12:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + data[24:29]
    return data[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + data[33:]


def put(root: Path, files: dict[str, bytes]) -> Path:
    """Write `files` (relative path → bytes) under `root`."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def ingest(root: Path, limits: Limits = LIMITS):
    """scan + validate, as the service runs them."""
    collection = scan(root, limits)
    return collection, validate(root, collection, limits)


@pytest.fixture(scope="module")
def digits_upload(tmp_path_factory):
    """scikit-learn's digits as PNGs in a zip, ImageFolder under train/ and val/, with three broken files mixed in."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    archive = tmp_path_factory.mktemp("upload") / "digits.zip"
    expected: Counter = Counter()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
            split = "val" if i % 5 == 0 else "train"
            buf = io.BytesIO()
            Image.fromarray(image, mode="L").save(buf, "PNG")
            zf.writestr(f"{split}/{label}/{i:04d}.png", buf.getvalue())
            expected[split, str(label)] += 1
        cut = noise_png()
        zf.writestr("train/3/truncated.png", cut[: len(cut) // 2])
        zf.writestr("train/5/notes.png", b"remember to relabel the fives\n")
        zf.writestr("val/7/empty.png", b"")
        zf.writestr("__MACOSX/train/3/._0003.png", b"resource fork")
        zf.writestr("train/.DS_Store", b"finder")
    return archive, expected


def test_digits_round_trip_reports_exactly_the_bad_files(digits_upload, tmp_path):
    """extract → scan → validate: the 1,797 digits are counted per class and split; the 3 broken files excluded."""
    archive, expected = digits_upload
    extract(archive, tmp_path, LIMITS)

    collection, report = ingest(tmp_path)

    assert collection.layout == "imagefolder+splits" and collection.labeled
    reasons = {e["path"]: e["reason"] for e in report.excluded}
    assert set(reasons) == {"train/3/truncated.png", "train/5/notes.png", "val/7/empty.png"}
    assert "truncated" in reasons["train/3/truncated.png"]
    assert "not an image" in reasons["train/5/notes.png"]
    assert "empty" in reasons["val/7/empty.png"]
    assert report.classes == [str(d) for d in range(10)]
    assert report.counts["total"] == len(report.items) == 1797
    assert report.counts["per_split"] == {s: {c: expected[s, c] for c in report.classes} for s in ("train", "val")}
    assert report.counts["per_class"] == {c: expected["train", c] + expected["val", c] for c in report.classes}
    assert report.image_sizes == {"min_width": 8, "max_width": 8, "min_height": 8, "max_height": 8,
                                  "mean_width": 8.0, "mean_height": 8.0}
    assert report.modes == {"L": 1797}
    assert report.dropped_classes == [] and "3 file(s) were excluded" in " ".join(report.warnings)
    assert json.loads(json.dumps(report.to_dict()))["counts"]["total"] == 1797


def test_single_wrapper_folder_and_split_aliases(tmp_path):
    """`digits/<split>/<class>/…` is read through its wrapper; `valid/` and `validation/` mean val."""
    put(tmp_path, {f"digits/{split}/{c}/{i}.png": png(i * 40) for split in ("train", "valid", "test")
                   for c in ("cat", "dog") for i in range(3)})

    collection, report = ingest(tmp_path)

    assert collection.classes == ["cat", "dog"]
    assert {i.split for i in collection.items} == {"train", "val", "test"}
    assert all(i.path.startswith("digits/") for i in collection.items)
    assert report.counts["per_split"]["val"] == {"cat": 3, "dog": 3}


def test_wrapper_folder_of_class_folders(tmp_path):
    """`digits/<class>/<image>` without splits: classes from the folders, no split."""
    put(tmp_path, {f"digits/{c}/sub/{i}.png": png(i) for c in ("0", "1", "2") for i in range(5)})
    collection, report = ingest(tmp_path)
    assert collection.layout == "imagefolder" and collection.classes == ["0", "1", "2"]
    assert report.counts["per_class"] == {"0": 5, "1": 5, "2": 5} and report.counts["per_split"] == {}
    assert report.warnings == []


def test_manifest_csv_layout(tmp_path):
    """labels.csv (path,label,split) gives labels and splits; a listed file that is missing is excluded."""
    put(tmp_path, {f"images/{i}.png": png(i) for i in range(6)})
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "".join(
        f"images/{i}.png,{'odd' if i % 2 else 'even'},{'train' if i < 4 else 'validation'}\n" for i in range(6))
        + "images/missing.png,odd,train\n")

    collection, report = ingest(tmp_path)

    assert collection.layout == "manifest" and collection.classes == ["even", "odd"]
    assert report.excluded == [{"path": "images/missing.png", "reason": "the file does not exist"}]
    assert report.counts["per_split"] == {"train": {"even": 2, "odd": 2}, "val": {"even": 1, "odd": 1}}


def test_manifest_jsonl_layout(tmp_path):
    """manifest.jsonl objects with integer labels and an optional split, inside a wrapper folder."""
    put(tmp_path, {f"set/img/{i}.png": png(i) for i in range(4)})
    (tmp_path / "set" / "manifest.jsonl").write_text("\n".join(
        json.dumps({"path": f"img/{i}.png", "label": i % 2, **({"split": "test"} if i == 3 else {})})
        for i in range(4)) + "\n\n")

    collection, report = ingest(tmp_path)

    assert collection.classes == ["0", "1"]
    assert [(i.path, i.label, i.split) for i in report.items] == [
        ("set/img/0.png", "0", None), ("set/img/1.png", "1", None), ("set/img/2.png", "0", None),
        ("set/img/3.png", "1", "test")]


@pytest.mark.parametrize("path", ["../outside.png", "/etc/hostname", "img/../../outside.png", "link.png"])
def test_manifest_paths_must_stay_inside_the_root(tmp_path, path):
    """A manifest path that is absolute, climbs with `..`, or is a link leading outside is refused."""
    (tmp_path / "outside.png").write_bytes(png())
    root = put(tmp_path / "root", {"img/1.png": png()})
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "labels.csv").write_text(f"path,label\nimg/1.png,a\n{path},b\n")
    with pytest.raises(UnsafeArchive, match="line 3"):
        scan(root, LIMITS)


@pytest.mark.parametrize("name, text, words", [
    ("labels.csv", "file,class\na.png,x\n", "header"),
    ("labels.csv", "path,label,split\na.png,x,holdout\n", "split"),
    ("labels.csv", "path,label\na.png,x\na.png,y\n", "twice"),
    ("labels.jsonl", '{"path": "a.png", "label": "x"}\nnot json\n', "line 2"),
    ("labels.jsonl", '["a.png", "x"]\n', "object"),
])
def test_malformed_manifests_are_refused(tmp_path, name, text, words):
    """Missing columns, unknown splits, repeated paths and non-JSON lines → InvalidManifest with the place."""
    put(tmp_path, {"a.png": png(), name: text.encode()})
    with pytest.raises(InvalidManifest, match=words):
        scan(tmp_path, LIMITS)


def test_flat_folder_is_unlabeled(tmp_path):
    """Images directly in the folder: one unlabeled collection; non-image files are passed over with a warning."""
    put(tmp_path, {**{f"{i}.png": png(i) for i in range(3)}, "README.md": b"about"})

    collection, report = ingest(tmp_path)

    assert collection.layout == "flat" and not collection.labeled and collection.classes == []
    assert [i.label for i in report.items] == [None] * 3 and report.counts["unlabeled"] == 3
    assert collection.ignored == ["README.md"] and "README.md" in report.warnings[-1]


def test_class_without_valid_image_is_dropped_with_a_warning(tmp_path):
    """Class `c` holds only broken files: it is dropped and listed; `b` has fewer than 5 images: warned."""
    put(tmp_path, {**{f"a/{i}.png": png(i) for i in range(5)}, **{f"b/{i}.png": png(i) for i in range(2)},
                   "c/broken.jpg": b"not a jpeg", "c/cut.png": noise_png()[:300], "empty/.keep": b""})

    _, report = ingest(tmp_path)

    assert report.classes == ["a", "b"] and report.dropped_classes == ["c", "empty"]
    assert "class 'c' has no valid image and was dropped" in report.warnings
    assert any("class 'b' has only 2" in w for w in report.warnings)
    assert {e["path"] for e in report.excluded} == {"c/broken.jpg", "c/cut.png"}


def test_no_valid_image_at_all(tmp_path):
    """Only broken files → EmptyDataset from validate; no image file at all → EmptyDataset from scan."""
    put(tmp_path / "broken", {"a/1.png": b"text", "b/2.png": b""})
    with pytest.raises(EmptyDataset, match="no valid image"):
        ingest(tmp_path / "broken")
    put(tmp_path / "none", {"a/notes.txt": b"text"})
    with pytest.raises(EmptyDataset, match="no image files"):
        scan(tmp_path / "none", LIMITS)


def test_link_out_of_an_image_folder_is_refused(tmp_path):
    """A class folder holding a link to a file outside the dataset is refused, not followed."""
    (tmp_path / "secret.png").write_bytes(png())
    root = put(tmp_path / "root", {"a/1.png": png(), "b/1.png": png()})
    (root / "b" / "2.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(UnsafeArchive, match="b/2.png"):
        scan(root, LIMITS)


def test_decompression_bombs_are_excluded_before_decoding(tmp_path):
    """Headers declaring 30000², 10000² or 8000² pixels, and a 20×20 image over a 100-pixel limit, are excluded."""
    small = png(size=(20, 20))
    put(tmp_path, {"a/huge.png": with_declared_size(small, 30000, 30000),
                   "a/large.png": with_declared_size(small, 10000, 10000),
                   "a/big.png": with_declared_size(small, 8000, 8000), "a/ok.png": png(), "b/small.png": small})

    reasons = {e["path"]: e["reason"] for e in ingest(tmp_path)[1].excluded}
    assert set(reasons) == {"a/huge.png", "a/large.png", "a/big.png"}
    assert all("decompression bomb" in r for r in reasons.values())
    assert "8000×8000" in reasons["a/big.png"]

    pillow_check = {e["path"] for e in ingest(tmp_path, Limits(max_image_pixels=200_000_000))[1].excluded}
    assert {"a/huge.png", "a/large.png"} <= pillow_check  # Pillow's own bomb error and warning, both caught

    _, report = ingest(tmp_path, Limits(max_image_pixels=100))
    assert "b/small.png" in {e["path"] for e in report.excluded} and report.classes == ["a"]


def test_unusual_modes_and_exif_rotation_are_valid(tmp_path):
    """RGBA, palette (PNG with transparency, GIF), 16-bit, 1-bit, LA, CMYK, TIFF, WebP, BMP, PPM and an
    EXIF-rotated JPEG all decode; the rotated one reports its displayed size."""
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB")
    palette = rgb.quantize(8)
    palette.info["transparency"] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    gray16 = Image.fromarray((np.arange(600, dtype=np.uint16).reshape(20, 30) * 100))
    images = {"rgba.png": (rgb.convert("RGBA"), {}), "palette.png": (palette, {}), "palette.gif": (palette, {}),
              "gray16.png": (gray16, {}), "gray16.tif": (gray16, {}), "bits.png": (rgb.convert("1"), {}),
              "la.png": (rgb.convert("LA"), {}), "cmyk.jpg": (rgb.convert("CMYK"), {}), "rgb.webp": (rgb, {}),
              "rgb.bmp": (rgb, {}), "rgb.ppm": (rgb, {}), "rotated.jpg": (rgb, {"exif": exif})}
    for name, (image, options) in images.items():
        image.save(tmp_path / name, **options)

    _, report = ingest(tmp_path)

    assert report.excluded == [] and report.counts["total"] == len(images)
    sizes = {i.path: (i.width, i.height) for i in report.items}
    assert sizes["rotated.jpg"] == (20, 30) and sizes["rgba.png"] == (30, 20)
    assert {"RGBA", "P", "1", "LA", "CMYK", "RGB"} <= set(report.modes)
    assert any(mode.startswith("I") for mode in report.modes)


def test_import_root_accepts_folders_under_allowed_roots(tmp_path):
    """A file:// URI under an allowed root resolves to its folder (percent-escapes decoded)."""
    folder = tmp_path / "allowed" / "my data"
    folder.mkdir(parents=True)
    assert check_import_root(f"file://{tmp_path}/allowed/my%20data", [tmp_path / "allowed"]) == folder.resolve()
    assert check_import_root(f"file://localhost{folder}", [tmp_path / "allowed"]) == folder.resolve()


def test_import_root_refuses_everything_else(tmp_path):
    """Outside the roots (directly, by `..`, or through a link), not a file URI, missing, or no roots set."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    roots = [allowed]
    for uri in (f"file://{outside}", f"file://{allowed}/../outside", f"file://{allowed}/link"):
        with pytest.raises(IngestError, match="GRAFT_IMPORT_ROOTS") as err:
            check_import_root(uri, roots)
        assert "not under the allowed import roots" in str(err.value)
    for uri in (f"http://host{allowed}", "file:relative/path", f"file://otherhost{allowed}", f"file://{allowed}/nope"):
        with pytest.raises(IngestError):
            check_import_root(uri, roots)
    with pytest.raises(IngestError, match="GRAFT_IMPORT_ROOTS"):
        check_import_root(f"file://{allowed}", [])


def test_linked_split_folder_and_manifest_are_not_followed(tmp_path):
    """A `train` link to a folder outside is passed over; a `labels.csv` link to outside is refused."""
    put(tmp_path / "outside", {"cat/1.png": png()})
    root = put(tmp_path / "root", {"val/cat/1.png": png()})
    (root / "train").symlink_to(tmp_path / "outside")
    collection = scan(root, LIMITS)
    assert [i.path for i in collection.items] == ["val/cat/1.png"] and collection.ignored == ["train"]
    (tmp_path / "outside" / "labels.csv").write_text("path,label\ncat/1.png,cat\n")
    (root / "labels.csv").symlink_to(tmp_path / "outside" / "labels.csv")
    with pytest.raises(UnsafeArchive, match="labels.csv"):
        scan(root, LIMITS)


def test_folder_scan_is_limited_in_size(tmp_path):
    """A folder with more files than `max_members` is refused while scanning."""
    put(tmp_path, {f"a/{i}.png": png() for i in range(11)})
    with pytest.raises(LimitExceeded, match="more than 10"):
        scan(tmp_path, Limits(max_members=10))
    assert len(scan(tmp_path, Limits(max_members=12)).items) == 11
