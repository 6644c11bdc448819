"""Dataset rows: create, fetch, list."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.pagination import paginate
from service.tables import Dataset


def create(session: Session, *, name: str, source: dict, classes: list[str], counts: dict, status: str) -> Dataset:
    """Insert a dataset row."""
    row = Dataset(name=name, source=source, classes=classes, counts=counts, status=status)
    session.add(row)
    session.flush()
    return row


def find(session: Session, *, dataset_id: str) -> Dataset | None:
    """The dataset with this id, or None."""
    return session.get(Dataset, dataset_id)


def get(session: Session, *, dataset_id: str) -> Dataset:
    """The dataset with this id, or `NotFound`."""
    row = find(session, dataset_id=dataset_id)
    if row is None:
        raise NotFound(f"no dataset with id {dataset_id!r}")
    return row


def page(session: Session, *, page_size: int, page_token: str | None) -> tuple[list[Dataset], str | None]:
    """One page of datasets, newest first."""
    return paginate(session, select(Dataset), Dataset, page_size=page_size, page_token=page_token)
