"""Archive extraction: real zip, tar and tar.gz files, and hostile ones built here, refused before anything escapes."""

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from workers.ingest.archive import detect, extract
from workers.ingest.errors import EmptyDataset, LimitExceeded, NotAnArchive, UnsafeArchive
from workers.ingest.limits import Limits

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits()
TAR_MODES = {"tar": "w", "tar.gz": "w:gz"}


def png(color: int = 128, size: tuple[int, int] = (8, 8)) -> bytes:
    """A small real grayscale PNG."""
    buf = io.BytesIO()
    Image.new("L", size, color).save(buf, "PNG")
    return buf.getvalue()


def write_zip(path: Path, members: list[tuple[str, bytes]], special: list[zipfile.ZipInfo] = ()) -> Path:
    """A zip of (name, data) members, then `special` members (data = their name), names kept exactly."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are built on purpose
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
        for info in special:
            zf.writestr(info, info.filename)
    return path


def write_tar(path: Path, members: list[tuple[str, bytes]], special: list[tarfile.TarInfo] = (),
              kind: str = "tar") -> Path:
    """A tar (or tar.gz) of (name, data) regular files, then `special` header-only members."""
    with tarfile.open(path, TAR_MODES[kind], format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return path


def write_archive(kind: str, path: Path, members: list[tuple[str, bytes]]) -> Path:
    """`members` as a zip, tar or tar.gz at `path` (whatever its name says)."""
    return write_zip(path, members) if kind == "zip" else write_tar(path, members, kind=kind)


def tar_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    """A header-only tar member of type `kind`."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def files_under(folder: Path) -> list[str]:
    """Every file below `folder`, relative and sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_ingest_imports_only_standard_library_and_pillow():
    """Importing every ingest module pulls in neither torch nor web, queue or database code."""
    code = (
        "import sys, workers.ingest.archive, workers.ingest.folder, workers.ingest.layout, workers.ingest.validate\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'numpy', "
        "'fastapi', 'starlette', 'celery', 'kombu', 'sqlalchemy', 'service', 'redis', 'psycopg'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_formats_are_told_apart_by_content_and_junk_is_skipped(tmp_path, kind):
    """A zip, tar or tar.gz named `upload.dat` unpacks its files; folders, hidden files and __MACOSX are skipped."""
    members = [("train/a/1.png", png(10)), ("train/b/2.png", png(20)), ("./val/a/3.png", png(30)),
               ("__MACOSX/train/a/._1.png", b"resource fork"), ("train/.DS_Store", b"finder"),
               (".hidden/x.png", png(40)), ("train/a/.secret.png", png(50)), ("Thumbs.db", b"")]
    archive = write_archive(kind, tmp_path / "upload.dat", members)
    dest = tmp_path / "dest"

    written = extract(archive, dest, LIMITS)

    assert detect(archive) == kind
    assert sorted(written) == ["train/a/1.png", "train/b/2.png", "val/a/3.png"]
    assert files_under(dest) == sorted(written)
    assert (dest / "val/a/3.png").read_bytes() == png(30)


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "..\\..\\evil.png",
                                  "C:/evil.png", "C:\\evil.png"])
def test_path_traversal_is_refused_and_nothing_escapes(tmp_path, kind, name):
    """Members named with `..`, absolute paths, drive letters or backslashes are refused, naming the member."""
    archive = write_archive(kind, tmp_path / "upload", [("ok/1.png", png()), (name, png())])
    dest = tmp_path / "box" / "dest"

    with pytest.raises(UnsafeArchive) as err:
        extract(archive, dest, LIMITS)

    assert repr(name) in str(err.value)
    assert files_under(tmp_path / "box") == []
    assert not list(tmp_path.rglob("*evil*")) and not Path("/abs/evil.png").exists()


@pytest.mark.parametrize("member, words", [
    (tar_info("link.png", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (tar_info("hard.png", tarfile.LNKTYPE, "ok.png"), "hard link"),
    (tar_info("tty.png", tarfile.CHRTYPE), "device"),
    (tar_info("disk.png", tarfile.BLKTYPE), "device"),
    (tar_info("pipe.png", tarfile.FIFOTYPE), "pipe"),
])
@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_tar_links_and_devices_are_refused(tmp_path, member, words, kind):
    """Symlinks, hard links, character/block devices and fifos in a tar are refused, naming the member."""
    archive = write_tar(tmp_path / "upload", [("ok.png", png())], [member], kind=kind)

    with pytest.raises(UnsafeArchive, match=words) as err:
        extract(archive, tmp_path / "dest", LIMITS)

    assert member.name in str(err.value)
    assert files_under(tmp_path / "dest") == []


@pytest.mark.parametrize("mode, words", [(stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFCHR | 0o644, "device")])
def test_zip_links_and_devices_are_refused(tmp_path, mode, words):
    """A zip member whose Unix mode says symlink or device is refused before anything is written."""
    info = zipfile.ZipInfo("link.png")
    info.create_system, info.external_attr = 3, mode << 16
    archive = write_zip(tmp_path / "upload.zip", [("ok.png", png())], [info])

    with pytest.raises(UnsafeArchive, match=words) as err:
        extract(archive, tmp_path / "dest", LIMITS)

    assert "link.png" in str(err.value)
    assert files_under(tmp_path / "dest") == []


def test_zip_bomb_is_refused_by_compression_ratio(tmp_path):
    """100 MB of zeros deflates about 1000:1, beyond the 200:1 limit: refused before a byte is written."""
    archive = tmp_path / "bomb.zip"
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.png", png())
        with zf.open("zeros.png", "w") as member:
            for _ in range(100):
                member.write(zeros)
    assert archive.stat().st_size < 200_000

    with pytest.raises(LimitExceeded, match="zip bomb") as err:
        extract(archive, tmp_path / "dest", LIMITS)

    assert "zeros.png" in str(err.value)
    assert files_under(tmp_path / "dest") == []


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_total_and_member_sizes_are_limited(tmp_path, kind):
    """Three 40 kB members exceed a 100 kB total; one exceeds a 10 kB member limit, named in the message."""
    archive = write_archive(kind, tmp_path / "upload", [(f"{i}.png", os.urandom(40_000)) for i in range(3)])

    with pytest.raises(LimitExceeded, match="expands"):
        extract(archive, tmp_path / "a", Limits(max_total_uncompressed=100_000))
    with pytest.raises(LimitExceeded, match="0.png"):
        extract(archive, tmp_path / "b", Limits(max_member_bytes=10_000))
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b") == []
    assert len(extract(archive, tmp_path / "c", Limits(max_total_uncompressed=120_000))) == 3


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_too_many_members_are_refused(tmp_path, kind):
    """Eleven members against `max_members=10` are refused; ten pass."""
    eleven = [(f"{i}.png", png(i)) for i in range(11)]
    with pytest.raises(LimitExceeded, match="members"):
        extract(write_archive(kind, tmp_path / "eleven", eleven), tmp_path / "a", Limits(max_members=10))
    ten = write_archive(kind, tmp_path / "ten", eleven[:10])
    assert len(extract(ten, tmp_path / "b", Limits(max_members=10))) == 10


def test_archive_size_is_limited(tmp_path):
    """An upload larger than `max_archive_bytes` is refused without being opened."""
    archive = write_zip(tmp_path / "upload.zip", [("1.png", png())])
    with pytest.raises(LimitExceeded, match="bytes"):
        extract(archive, tmp_path / "dest", Limits(max_archive_bytes=100))


def test_giant_tar_header_is_refused_without_buffering_it(tmp_path):
    """A tar.gz whose long-name header is 4 MB (compressing to a few kB) is refused, not read into memory."""
    archive = write_tar(tmp_path / "upload.tgz", [("d/" * 2_000_000 + "x.png", png())], kind="tar.gz")
    assert archive.stat().st_size < 100_000
    with pytest.raises(LimitExceeded, match="header"):
        extract(archive, tmp_path / "dest", LIMITS)


def test_duplicate_member_is_refused(tmp_path):
    """A second member with the same name would overwrite the first: refused."""
    archive = write_zip(tmp_path / "upload.zip", [("a/1.png", png(1)), ("a/1.png", png(2))])
    with pytest.raises(UnsafeArchive, match="clashes"):
        extract(archive, tmp_path / "dest", LIMITS)
    assert files_under(tmp_path / "dest") == []


def not_archives(tmp_path: Path) -> dict[str, Path]:
    """Files that are not zip, tar or tar.gz archives, some named as if they were."""
    zip_bytes = write_zip(tmp_path / "real.zip", [(f"{i}.png", os.urandom(2000)) for i in range(3)]).read_bytes()
    files = {
        "random.zip": os.urandom(4096),
        "image.zip": png(size=(64, 64)),
        "image.tgz": gzip.compress(png(size=(64, 64))),
        "empty.zip": b"",
        "cut.zip": zip_bytes[: len(zip_bytes) // 2],
        "cut.tgz": gzip.compress(write_tar(tmp_path / "t.tar", [("1.png", os.urandom(5000))]).read_bytes())[:700],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def test_files_that_are_not_archives_are_refused(tmp_path):
    """Random bytes, a PNG renamed .zip, a gzipped PNG, an empty file and cut-off archives → NotAnArchive."""
    for name, path in not_archives(tmp_path).items():
        with pytest.raises(NotAnArchive):
            extract(path, tmp_path / "dest" / name, LIMITS)
        assert files_under(tmp_path / "dest") == [], name


def test_empty_archives_are_empty_datasets(tmp_path):
    """Empty zip, tar and tar.gz, and a zip of folders and junk only → EmptyDataset."""
    uploads = [write_zip(tmp_path / "empty.zip", []), write_tar(tmp_path / "empty.tar", []),
               write_tar(tmp_path / "empty.tgz", [], kind="tar.gz"),
               write_zip(tmp_path / "junk.zip", [("train/", b""), ("__MACOSX/x", b"1"), (".DS_Store", b"2")])]
    for upload in uploads:
        with pytest.raises(EmptyDataset):
            extract(upload, tmp_path / "dest", LIMITS)
