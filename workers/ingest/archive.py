"""Unpack a zip, tar or tar.gz upload into a folder, refusing anything that could escape it or exhaust the machine."""

import errno
import gzip
import lzma
import re
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import IO

from workers.ingest.errors import EmptyDataset, IngestError, LimitExceeded, NotAnArchive, UnsafeArchive
from workers.ingest.limits import KiB, MiB, Limits

CHUNK = MiB
JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_DRIVE = re.compile(r"^[A-Za-z]:")
_DAMAGE = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError)


def shown(name: str) -> str:
    """`name` quoted for an error message: control characters escaped, at most 200 characters."""
    return repr(name if len(name) <= 200 else name[:200] + "…")


def is_junk(part: str) -> bool:
    """Whether a path part is skipped silently: hidden (dot-files, `._*`, `.DS_Store`) or OS clutter (`__MACOSX`)."""
    return part.startswith(".") or part in JUNK_NAMES


def safe_parts(name: str, what: str = "member") -> tuple[str, ...]:
    """`name` as relative path parts (`\\` read as `/`, `.` dropped); `UnsafeArchive` if absolute or climbing out."""
    posix = name.replace("\\", "/")
    parts = posix.split("/")
    if "\x00" in name or posix.startswith("/") or _DRIVE.match(posix) or ".." in parts:
        raise UnsafeArchive(f"{what} {shown(name)} points outside the dataset folder (absolute path or '..'); refused")
    return tuple(p for p in parts if p not in ("", "."))


def detect(path: Path) -> str:
    """`"zip"`, `"tar"` or `"tar.gz"`, told from the file's first bytes (never its name); `NotAnArchive` otherwise."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if not head:
        raise NotAnArchive("the file is empty, not an archive")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if _is_tar_block(head):
        return "tar"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path) as gz:
                inner = gz.read(512)
        except (OSError, EOFError, zlib.error) as exc:
            raise NotAnArchive(f"the gzip stream is damaged: {exc}") from None
        if _is_tar_block(inner):
            return "tar.gz"
        raise NotAnArchive("the file is gzip-compressed but holds no tar archive")
    raise NotAnArchive("the file is not a zip, tar or tar.gz archive")


def extract(archive_path: Path, dest: Path, limits: Limits) -> list[str]:
    """Unpack `archive_path` into `dest` within `limits`; the relative paths written (removed again on error)."""
    size = archive_path.stat().st_size
    if size > limits.max_archive_bytes:
        raise LimitExceeded(f"the archive is {size:,} bytes; the limit is {limits.max_archive_bytes:,}")
    kind = detect(archive_path)
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest, limits)
    try:
        if kind == "zip":
            _extract_zip(archive_path, writer, limits)
        else:
            _extract_tar(archive_path, kind == "tar.gz", writer, limits)
    except BaseException:
        writer.discard()
        raise
    if not writer.written:
        raise EmptyDataset("the archive holds no files (folders, hidden files and __MACOSX are skipped)")
    return writer.written


def _is_tar_block(block: bytes) -> bool:
    """A POSIX/GNU tar header, or the all-zero block that ends (or is all of) an empty tar."""
    return len(block) == 512 and (block[257:262] == b"ustar" or block == bytes(512))


def _read(source: IO[bytes], name: str) -> bytes:
    """The next chunk of a member; a decoding failure becomes `NotAnArchive` naming the member."""
    try:
        return source.read(CHUNK)
    except _DAMAGE as exc:
        raise NotAnArchive(f"the archive is damaged at member {shown(name)}: {exc}") from None


class _Writer:
    """Writes members under one folder only, counting the bytes actually written against the limits."""

    def __init__(self, dest: Path, limits: Limits) -> None:
        self.root = dest.resolve()
        self.limits = limits
        self.written: list[str] = []
        self.total = 0
        self._created: set[Path] = set()

    def write(self, parts: tuple[str, ...], name: str, source: IO[bytes], compressed: int | None = None) -> None:
        """Stream `source` into `root/parts` in chunks; `compressed` (zip) also bounds the ratio as it goes."""
        target = self.root.joinpath(*parts)
        if not target.resolve().is_relative_to(self.root):
            raise UnsafeArchive(f"member {shown(name)} would be written outside the dataset folder; refused")
        top = self.root / parts[0]
        if len(parts) > 1 and not top.exists():
            self._created.add(top)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = target.open("xb")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise UnsafeArchive(f"member {shown(name)} clashes with another member of the same name") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise IngestError(f"member {shown(name)} has a name too long for the file system") from None
            raise
        self.written.append("/".join(parts))
        size, limits = 0, self.limits
        with out:
            while chunk := _read(source, name):
                size += len(chunk)
                self.total += len(chunk)
                if size > limits.max_member_bytes:
                    raise LimitExceeded(f"member {shown(name)} is larger than {limits.max_member_bytes:,} bytes")
                if compressed is not None and size > limits.max_compression_ratio * max(compressed, 1):
                    raise LimitExceeded(f"member {shown(name)} expands more than "
                                        f"{limits.max_compression_ratio:g}× (a zip bomb?); refused")
                if self.total > limits.max_total_uncompressed:
                    raise LimitExceeded(f"the archive expands to more than {limits.max_total_uncompressed:,} bytes")
                out.write(chunk)

    def discard(self) -> None:
        """Remove every file, and every top-level folder, this writer created."""
        for rel in self.written:
            (self.root / rel).unlink(missing_ok=True)
        for path in self._created:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def _check_zip_directory(path: Path, limits: Limits) -> None:
    """Refuse a zip whose central directory lists too many members, before `zipfile` loads all of it into memory."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - (22 + 0xFFFF)))
        tail = fh.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) - end < 22:
            raise NotAnArchive("the zip archive has no central directory; it is damaged or truncated")
        entries, cd_size = struct.unpack_from("<HI", tail, end + 10)
        locator = end - 20
        if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
            fh.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
            record = fh.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack_from("<QQ", record, 32)
    if entries > limits.max_members:
        raise LimitExceeded(f"the archive holds {entries:,} members; the limit is {limits.max_members:,}")
    if cd_size > limits.max_members * KiB:
        raise LimitExceeded(f"the archive's directory is {cd_size:,} bytes, "
                            f"too large for {limits.max_members:,} members")


def _extract_zip(path: Path, writer: _Writer, limits: Limits) -> None:
    """Check every member of a zip first (names, types, sizes, ratios), then stream the files out."""
    _check_zip_directory(path, limits)
    try:
        archive = zipfile.ZipFile(path)
    except (*_DAMAGE, ValueError, struct.error) as exc:
        raise NotAnArchive(f"the zip archive is damaged: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise LimitExceeded(f"the archive holds {len(infos):,} members; the limit is {limits.max_members:,}")
        plan, total = [], 0
        for info in infos:
            name, parts = info.filename, safe_parts(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise UnsafeArchive(f"member {shown(name)} is a symbolic link; links are refused")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchive(f"member {shown(name)} is a device, pipe or socket; refused")
            if info.is_dir() or not parts or any(is_junk(p) for p in parts):
                continue
            if info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
                raise LimitExceeded(f"member {shown(name)} expands {info.file_size / max(info.compress_size, 1):,.0f}× "
                                    f"(limit {limits.max_compression_ratio:g}×, a zip bomb?); refused")
            if info.file_size > limits.max_member_bytes:
                raise LimitExceeded(f"member {shown(name)} is {info.file_size:,} bytes; "
                                    f"the limit is {limits.max_member_bytes:,}")
            total += info.file_size
            plan.append((info, parts))
        if total > limits.max_total_uncompressed:
            raise LimitExceeded(f"the archive expands to {total:,} bytes; the limit is "
                                f"{limits.max_total_uncompressed:,}")
        for info, parts in plan:
            try:
                source = archive.open(info)
            except RuntimeError:
                raise IngestError(f"member {shown(info.filename)} is encrypted; upload it without a password") from None
            except NotImplementedError as exc:
                raise IngestError(f"member {shown(info.filename)} uses an unsupported compression ({exc})") from None
            except _DAMAGE as exc:
                raise NotAnArchive(f"the archive is damaged at member {shown(info.filename)}: {exc}") from None
            with source:
                writer.write(parts, info.filename, source, compressed=info.compress_size)


class _BoundedReads:
    """A file whose single reads are capped, so `tarfile` cannot be made to buffer a giant long-name or pax header."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._fileobj = fileobj

    def read(self, size: int | None = -1) -> bytes:
        """At most `CHUNK` bytes; `LimitExceeded` for a larger or unbounded read."""
        if size is None or size < 0 or size > CHUNK:
            raise LimitExceeded(f"a header in the archive (long name or pax record) is larger than {CHUNK:,} bytes")
        return self._fileobj.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Delegates to the wrapped file."""
        return self._fileobj.seek(offset, whence)

    def tell(self) -> int:
        """Delegates to the wrapped file."""
        return self._fileobj.tell()


def _next_member(archive: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next tar header, or None at the end; a damaged stream becomes `NotAnArchive`."""
    try:
        return archive.next()
    except _DAMAGE as exc:
        raise NotAnArchive(f"the tar archive is damaged: {exc}") from None


def _extract_tar(path: Path, gzipped: bool, writer: _Writer, limits: Limits) -> None:
    """Walk a (gzipped) tar front to back, refusing links and devices, and stream regular files out."""
    with path.open("rb") as raw, (gzip.GzipFile(fileobj=raw) if gzipped else nullcontext(raw)) as stream:
        try:
            archive = tarfile.open(fileobj=_BoundedReads(stream), mode="r:")
        except _DAMAGE as exc:
            raise NotAnArchive(f"the tar archive is damaged: {exc}") from None
        with archive:
            count = declared = 0
            while (member := _next_member(archive)) is not None:
                count += 1
                if count > limits.max_members:
                    raise LimitExceeded(f"the archive holds more than {limits.max_members:,} members")
                name, parts = member.name, safe_parts(member.name)
                if member.issym():
                    raise UnsafeArchive(f"member {shown(name)} is a symbolic link; links are refused")
                if member.islnk():
                    raise UnsafeArchive(f"member {shown(name)} is a hard link; links are refused")
                if member.ischr() or member.isblk() or member.isfifo():
                    raise UnsafeArchive(f"member {shown(name)} is a device or pipe; refused")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise UnsafeArchive(f"member {shown(name)} has an unsupported type; refused")
                if member.size > limits.max_member_bytes:
                    raise LimitExceeded(f"member {shown(name)} is {member.size:,} bytes; "
                                        f"the limit is {limits.max_member_bytes:,}")
                declared += member.size  # skipped members cost decompression too
                if declared > limits.max_total_uncompressed:
                    raise LimitExceeded(f"the archive expands to more than {limits.max_total_uncompressed:,} bytes")
                if not parts or any(is_junk(p) for p in parts):
                    continue
                with archive.extractfile(member) as source:
                    writer.write(parts, name, source)
