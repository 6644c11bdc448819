"""Uploaded weight files: create, fetch, list."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.pagination import paginate
from service.tables import WeightFile


def create(session: Session, *, name: str, arch: str, tensors: int, blob_id: str) -> WeightFile:
    """Insert an uploaded weights row."""
    row = WeightFile(name=name, arch=arch, tensors=tensors, blob_id=blob_id)
    session.add(row)
    session.flush()
    return row


def get(session: Session, *, weights_id: str) -> WeightFile:
    """The uploaded weights with this id, or `NotFound`."""
    row = session.get(WeightFile, weights_id)
    if row is None:
        raise NotFound(f"no uploaded weights with id {weights_id!r}")
    return row


def page(session: Session, *, page_size: int, page_token: str | None):
    """One page of uploaded weights, newest first."""
    return paginate(session, select(WeightFile), WeightFile, page_size=page_size, page_token=page_token)
