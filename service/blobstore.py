"""Chunked, streamed storage of large byte strings (checkpoints) inside the database."""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from service.tables import Blob, BlobChunk


def write_blob(session: Session, stream: BinaryIO, *, media_type: str, chunk_size: int) -> Blob:
    """Store `stream` chunk by chunk (one chunk in memory at a time) and return the finished blob row."""
    blob = Blob(media_type=media_type, size=0)
    session.add(blob)
    session.flush()
    digest = hashlib.sha256()
    seq = 0
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
        # Core insert: the chunk is not kept in the session's identity map once written.
        session.execute(insert(BlobChunk).values(blob_id=blob.id, seq=seq, data=chunk))
        blob.size += len(chunk)
        seq += 1
    blob.sha256 = digest.hexdigest()
    blob.complete = True
    session.flush()
    return blob


def write_file(session: Session, path: Path, *, media_type: str, chunk_size: int) -> Blob:
    """Store the file at `path` as a blob."""
    with path.open("rb") as fh:
        return write_blob(session, fh, media_type=media_type, chunk_size=chunk_size)


def iter_blob(session: Session, blob_id: str) -> Iterator[bytes]:
    """Yield a blob's chunks in order, one row fetched at a time."""
    seq = 0
    while True:
        data = session.execute(
            select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq)
        ).scalar_one_or_none()
        if data is None:
            return
        yield data
        seq += 1


def read_to_file(session: Session, blob_id: str, path: Path) -> Path:
    """Stream a blob into a file at `path` (written to a temporary name, then renamed)."""
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as fh:
        for chunk in iter_blob(session, blob_id):
            fh.write(chunk)
    tmp.replace(path)
    return path


def delete_blob(session: Session, blob_id: str) -> None:
    """Remove a blob and all its chunks."""
    session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))
    session.execute(delete(Blob).where(Blob.id == blob_id))
