"""Registering datasets: built-in, uploaded archives (content-hashed, stored once) and server folders."""

import hashlib
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.blobstore import write_blob
from service.errors import Conflict, GraftError, field_error
from service.repo import datasets as repo
from service.schemas import DatasetCreate
from service.settings import Settings
from service.tables import Blob, Dataset, Job
from workers.ingest.errors import IngestError
from workers.ingest.folder import check_import_root
from workers.ingest.remote import check_remote_uri, is_remote
from workers.pipeline import datasets as data
from workers.pipeline.errors import PipelineError

ARCHIVE_MEDIA_TYPE = "application/vnd.graft.dataset-archive"


class Forbidden(GraftError):
    status, slug, title = 403, "forbidden", "Forbidden"


def register(session: Session, settings: Settings, body: DatasetCreate) -> Dataset:
    """A dataset from a JSON body: a built-in one (ready at once) or a server folder (validated by a worker)."""
    if body.source.uri is not None:
        try:
            if is_remote(body.source.uri):
                check_remote_uri(body.source.uri, list(settings.import_uris))
            else:
                check_import_root(body.source.uri, list(settings.import_roots))
        except IngestError as exc:
            raise Forbidden(str(exc), errors=[{"field": "source.uri", "message": str(exc)}]) from exc
        return repo.create(session, name=body.name, source={"uri": body.source.uri}, classes=[],
                           counts={}, status="validating")
    try:
        raw = data.load_raw(body.source.builtin)
    except PipelineError as exc:
        raise field_error("source.builtin", str(exc)) from exc
    if body.source.classes:
        try:
            raw = data.select_classes(raw, body.source.classes)
        except PipelineError as exc:
            raise field_error("source.classes", str(exc)) from exc
    counts = {"total": len(raw.labels), "per_class": data.class_counts(raw.labels, raw.classes)}
    return repo.create(session, name=body.name, source=body.source.model_dump(exclude_none=True),
                       classes=raw.classes, counts=counts, status="ready")


def register_upload(session: Session, settings: Settings, *, name: str, filename: str, stream: BinaryIO) -> Dataset:
    """A dataset from an uploaded archive, stored once per content hash and validated by a worker."""
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    sha = digest.hexdigest()
    stream.seek(0)
    blob = session.scalar(select(Blob).where(Blob.sha256 == sha, Blob.media_type == ARCHIVE_MEDIA_TYPE,
                                             Blob.complete.is_(True)).limit(1))
    if blob is None:
        blob = write_blob(session, stream, media_type=ARCHIVE_MEDIA_TYPE, chunk_size=settings.chunk_size)
    row = repo.create(session, name=name, source={"upload": filename, "sha256": sha}, classes=[], counts={},
                      status="validating")
    row.blob_id = blob.id
    return row


def delete(session: Session, *, dataset_id: str) -> None:
    """Delete a dataset no job (and so no model) depends on; 409 otherwise."""
    row = repo.get(session, dataset_id=dataset_id)
    users = session.scalars(
        select(Job.id).where((Job.dataset_id == dataset_id) | (Job.target_dataset_id == dataset_id)).limit(5)
    ).all()
    if users:
        raise Conflict(f"dataset {dataset_id} is used by job(s) {', '.join(users)} and the models they made; "
                       "it cannot be deleted", jobs=list(users))
    blob_id = row.blob_id
    session.delete(row)
    session.flush()
    if blob_id and session.scalar(select(Dataset.id).where(Dataset.blob_id == blob_id).limit(1)) is None:
        from service.blobstore import delete_blob

        delete_blob(session, blob_id)
