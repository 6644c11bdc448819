"""Model rows: create with the next version of a name, fetch, list."""

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.pagination import paginate
from service.tables import Model


def create(session: Session, **fields) -> Model:
    """Insert a model as the next version under its name (concurrent inserts under one name retry the next one)."""
    for _ in range(20):
        latest = session.scalar(select(func.max(Model.version)).where(Model.name == fields["name"]))
        row = Model(version=(latest or 0) + 1, **fields)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another job took that version first
            continue
        return row
    raise RuntimeError(f"could not allocate a version under model name {fields['name']!r}")


def get(session: Session, *, model_id: str) -> Model:
    """The model with this id, or `NotFound`."""
    row = session.get(Model, model_id)
    if row is None:
        raise NotFound(f"no model with id {model_id!r}")
    return row


def find_by_job(session: Session, *, job_id: str) -> Model | None:
    """The model a job produced, if any."""
    return session.scalar(select(Model).where(Model.job_id == job_id))


def page(session: Session, *, page_size: int, page_token: str | None) -> tuple[list[Model], str | None]:
    """One page of models, newest first."""
    return paginate(session, select(Model), Model, page_size=page_size, page_token=page_token)
