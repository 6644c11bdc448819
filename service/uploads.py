"""Receiving uploaded files: streamed to a temporary file under a size limit, never held in memory whole."""

import shutil
import tempfile
from pathlib import Path

from fastapi import UploadFile

from service.errors import PayloadTooLarge

COPY_CHUNK = 1 << 20


def spool_to_file(upload: UploadFile, directory: Path, *, max_bytes: int, field: str) -> Path:
    """Copy an upload to a new temporary file in `directory`; 413 as soon as it passes `max_bytes`."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, suffix=".upload")
    path = Path(name)
    written = 0
    try:
        with open(fd, "wb") as out:
            while chunk := upload.file.read(COPY_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise PayloadTooLarge(f"{field} is larger than the {max_bytes}-byte limit", limit=max_bytes)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def remove(path: Path) -> None:
    """Delete a spooled upload (or a directory of them)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
