"""Validates a dataset: materialize it, find its layout, decode every image, record the report."""

import base64
import io
import logging
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from service.blobstore import read_to_file
from service.db import session_scope
from service.settings import Settings
from service.tables import Dataset
from workers.ingest import archive, layout, validate
from workers.ingest.errors import IngestError
from workers.ingest.folder import check_import_root
from workers.ingest.limits import Limits
from workers.ingest.remote import check_remote_uri, is_remote, materialize
from workers.pipeline.images import to_rgb

log = logging.getLogger(__name__)
SAMPLES_PER_CLASS = 3
THUMBNAIL = 64


def limits_for(settings: Settings) -> Limits:
    """Ingestion limits from the settings."""
    return Limits(max_archive_bytes=settings.max_upload_bytes)


def dataset_root(settings: Settings, source: dict, blob_id: str | None) -> Path:
    """The local folder holding a dataset's files: an imported folder, or the upload extracted once per hash."""
    if "uri" in source and is_remote(source["uri"]):
        uri = check_remote_uri(source["uri"], list(settings.import_uris))
        return materialize(uri, settings.cache_dir / "datasets-src", limits_for(settings))
    if "uri" in source:
        return check_import_root(source["uri"], list(settings.import_roots))
    root = settings.cache_dir / "datasets-src" / source["sha256"]
    if root.exists():
        return root
    work = Path(tempfile.mkdtemp(prefix="ingest-", dir=settings.cache_dir))
    try:
        upload = work / "upload.bin"
        with session_scope(settings.sqlalchemy_url) as session:
            read_to_file(session, blob_id, upload)
        archive.extract(upload, work / "files", limits_for(settings))
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            (work / "files").rename(root)
        except OSError:
            if not root.exists():  # another worker may have finished first; anything else is real
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def thumbnails(root: Path, items: list[dict], classes: list[str]) -> dict[str, list[str]]:
    """A few PNG thumbnails (data URIs) per class, or under "unlabeled"."""
    out: dict[str, list[str]] = {}
    for item in items:
        key = item["label"] if item["label"] is not None else "unlabeled"
        if len(out.setdefault(key, [])) >= SAMPLES_PER_CLASS:
            continue
        with Image.open(root / item["path"]) as image:
            thumb = to_rgb(image)
            thumb.thumbnail((THUMBNAIL, THUMBNAIL))
            buf = io.BytesIO()
            thumb.save(buf, format="PNG")
        out[key].append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


def validate_dataset(settings: Settings, dataset_id: str) -> None:
    """Take a `validating` dataset to `ready` (with its report) or `failed` (with the reason)."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with session_scope(settings.sqlalchemy_url) as session:
        row = session.get(Dataset, dataset_id)
        if row is None or row.status != "validating":
            return
        source, blob_id = dict(row.source), row.blob_id
    try:
        root = dataset_root(settings, source, blob_id)
        limits = limits_for(settings)
        report = validate.validate(root, layout.scan(root, limits), limits).to_dict()
        report["samples"] = thumbnails(root, report["items"], report["classes"])
    except IngestError as exc:
        _finish(settings, dataset_id, status="failed", error=str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a dataset must end failed, never stuck validating
        log.exception("validating dataset %s crashed", dataset_id)
        _finish(settings, dataset_id, status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        return
    _finish(settings, dataset_id, status="ready", classes=report["classes"], counts=report["counts"],
            report=report)


def _finish(settings: Settings, dataset_id: str, **fields) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        row = session.get(Dataset, dataset_id)
        for key, value in fields.items():
            setattr(row, key, value)
