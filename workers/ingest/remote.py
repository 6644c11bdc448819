"""Object-storage imports through fsspec (`s3://…`, `gs://…`, …): admitted only under configured URI prefixes,
copied file by file into a local folder with the same limits as an archive, once per listing."""

import hashlib
import json
import posixpath
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from workers.ingest.errors import IngestError
from workers.ingest.limits import Limits


def is_remote(uri: str) -> bool:
    """A URI for fsspec (any scheme but file)."""
    return urlsplit(uri).scheme not in ("", "file")


def check_remote_uri(uri: str, allowed_prefixes: list[str]) -> str:
    """`uri` without a trailing slash; `IngestError` unless it lies under one of the allowed prefixes."""
    if not allowed_prefixes:
        raise IngestError("importing from object storage is disabled; list the allowed URI prefixes in "
                          "GRAFT_IMPORT_URIS (e.g. s3://my-bucket/datasets/)")
    clean = uri.rstrip("/")
    if ".." in clean.split("/") or "\x00" in clean:
        raise IngestError(f"{uri!r} must not contain '..' segments")
    if not any((clean + "/").startswith(p if p.endswith("/") else p + "/") for p in allowed_prefixes):
        raise IngestError(f"{uri} is not under the allowed import URIs (setting GRAFT_IMPORT_URIS)")
    return clean


def materialize(uri: str, cache: Path, limits: Limits) -> Path:
    """Copy every file under `uri` into `cache/<hash of the listing>` (reused while the listing is unchanged)."""
    import fsspec

    try:
        fs, base = fsspec.core.url_to_fs(uri)
        listing = fs.find(base, detail=True)
    except ImportError as exc:
        raise IngestError(f"no fsspec backend for {urlsplit(uri).scheme}:// is installed ({exc})") from exc
    except (OSError, ValueError) as exc:
        raise IngestError(f"cannot list {uri}: {exc}") from exc
    files = sorted((name, info) for name, info in listing.items() if info.get("type", "file") == "file")
    if not files:
        raise IngestError(f"{uri} holds no files")
    if len(files) > limits.max_members:
        raise IngestError(f"{uri} holds {len(files)} files; the limit is {limits.max_members}")
    total = sum(int(info.get("size") or 0) for _, info in files)
    if total > limits.max_total_uncompressed:
        raise IngestError(f"{uri} holds {total} bytes; the limit is {limits.max_total_uncompressed}")
    fingerprint = json.dumps([[n, info.get("size"), str(info.get("ETag") or info.get("mtime") or info.get("created"))]
                              for n, info in files], default=str)
    root = cache / ("remote-" + hashlib.sha256((uri + fingerprint).encode()).hexdigest())
    if root.exists():
        return root
    work = Path(tempfile.mkdtemp(prefix="remote-", dir=cache.parent))
    try:
        prefix = base.rstrip("/") + "/"
        for name, info in files:
            rel = posixpath.normpath(name[len(prefix):] if name.startswith(prefix) else posixpath.basename(name))
            if rel.startswith("../") or rel == ".." or rel.startswith("/"):
                raise IngestError(f"{name} lies outside {uri}")
            if int(info.get("size") or 0) > limits.max_member_bytes:
                raise IngestError(f"{rel} is {info.get('size')} bytes; the limit per file is {limits.max_member_bytes}")
            target = work / "files" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(name, str(target))
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            (work / "files").rename(root)
        except OSError:
            if not root.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root
