"""The database schema as SQLAlchemy 2.0 ORM classes; Alembic migrations create it."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")


def new_id() -> str:
    """A fresh opaque resource id."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: DateTime(timezone=True)}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[dict[str, Any]]
    classes: Mapped[list[Any]]
    counts: Mapped[dict[str, Any]]
    blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id"))
    report: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    spec: Mapped[dict[str, Any]]
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    target_dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", name="fk_jobs_target_dataset"), index=True
    )
    progress: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=5)
    queue: Mapped[str | None] = mapped_column(String(200))
    worker: Mapped[str | None] = mapped_column(String(200))
    dispatched_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    state_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id", name="fk_jobs_state_blob"))
    checkpoint_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id", name="fk_jobs_checkpoint_blob"))
    webhook_status: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobEvent(Base):
    """What happened to a job, in order: status changes, progress, epochs, log lines (the SSE stream's source)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """An `Idempotency-Key` seen on POST /v1/jobs, the hash of the body it came with, and the job it made."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobMetric(Base):
    """One row per finished epoch of a job."""

    __tablename__ = "job_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_job_metrics_job_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Blob(Base):
    """A large byte string (checkpoint, archive) stored as ordered chunks."""

    __tablename__ = "blobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(100))
    complete: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Model(Base):
    """A trained, servable model: one per succeeded job, versioned by name."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    arch: Mapped[str] = mapped_column(String(100))
    classes: Mapped[list[Any]]
    preprocessing: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any] | None]
    checkpoint_blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    last_checkpoint_blob_id: Mapped[str | None] = mapped_column(ForeignKey("blobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeightFile(Base):
    """Backbone weights a user uploaded, checked against their arch."""

    __tablename__ = "weight_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    arch: Mapped[str] = mapped_column(String(100))
    tensors: Mapped[int] = mapped_column(Integer)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
