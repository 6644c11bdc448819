"""Checkpoints are stored in chunks and streamed, never held in memory whole."""

import hashlib
import io
import os
import tracemalloc

from service.blobstore import iter_blob, read_to_file, write_blob
from service.db import session_scope
from service.tables import Blob, BlobChunk


class RandomStream(io.RawIOBase):
    """`size` pseudo-random bytes produced on demand (the stream itself holds no copy)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = os.urandom(n)
        self.left -= n
        self.digest.update(data)
        return data


def test_blob_round_trip_in_chunks(database_url, tmp_path):
    payload = os.urandom(3 * 4096 + 123)
    with session_scope(database_url) as session:
        blob = write_blob(session, io.BytesIO(payload), media_type="application/octet-stream", chunk_size=4096)
        blob_id = blob.id
    with session_scope(database_url) as session:
        stored = session.get(Blob, blob_id)
        assert (stored.size, stored.complete) == (len(payload), True)
        assert stored.sha256 == hashlib.sha256(payload).hexdigest()
        assert session.query(BlobChunk).filter_by(blob_id=blob_id).count() == 4
        assert b"".join(iter_blob(session, blob_id)) == payload
        assert read_to_file(session, blob_id, tmp_path / "out.bin").read_bytes() == payload


def test_large_blob_is_streamed_not_buffered(database_url, tmp_path):
    """Writing and reading back 64 MiB keeps Python's peak allocation near one chunk, far below the blob size."""
    size, chunk = 64 << 20, 1 << 20
    stream = RandomStream(size)
    tracemalloc.start()
    with session_scope(database_url) as session:
        blob_id = write_blob(session, stream, media_type="application/octet-stream", chunk_size=chunk).id
    with session_scope(database_url) as session:
        out = read_to_file(session, blob_id, tmp_path / "big.bin")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.stat().st_size == size
    assert hashlib.sha256(out.read_bytes()).hexdigest() == stream.digest.hexdigest()
    assert peak < 12 * chunk, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB blob"
