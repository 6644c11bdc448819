"""/v1/datasets: register and inspect datasets."""

from fastapi import APIRouter, status

from service.deps import PageSize, PageToken, SessionDep
from service.errors import field_error
from service.repo import datasets as repo
from service.schemas import DatasetCreate, DatasetOut, Page
from workers.pipeline import datasets as data
from workers.pipeline.errors import PipelineError

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
def create_dataset(body: DatasetCreate, session: SessionDep) -> DatasetOut:
    """Register a dataset; built-in datasets are ready at once."""
    try:
        raw = data.load_raw(body.source.builtin)
    except PipelineError as exc:
        raise field_error("source.builtin", str(exc)) from exc
    if body.source.classes:
        try:
            raw = data.select_classes(raw, body.source.classes)
        except PipelineError as exc:
            raise field_error("source.classes", str(exc)) from exc
    counts = data.class_counts(raw.labels, raw.classes)
    row = repo.create(
        session,
        name=body.name,
        source=body.source.model_dump(exclude_none=True),
        classes=raw.classes,
        counts={"total": len(raw.labels), "per_class": counts},
        status="ready",
    )
    return DatasetOut.model_validate(row)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetOut:
    """One dataset."""
    return DatasetOut.model_validate(repo.get(session, dataset_id=dataset_id))


@router.get("", response_model=Page[DatasetOut])
def list_datasets(session: SessionDep, page_size: PageSize = 50, page_token: PageToken = None) -> Page[DatasetOut]:
    """Datasets, newest first, paginated."""
    rows, token = repo.page(session, page_size=page_size, page_token=page_token)
    return Page(items=[DatasetOut.model_validate(r) for r in rows], next_page_token=token)
