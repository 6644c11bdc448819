"""/v1/datasets: register, upload, inspect and delete datasets."""

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from service import datasets as service
from service import dispatch
from service.deps import PageSize, PageToken, SessionDep, SettingsDep
from service.errors import UnsupportedMedia, field_error
from service.repo import datasets as repo
from service.schemas import DatasetCreate, DatasetOut, Page, SamplesOut

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DatasetCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "file"],
                    "properties": {
                        "name": {"type": "string"},
                        "file": {"type": "string", "format": "binary",
                                 "description": "zip, tar or tar.gz: <class>/<image>, optional train/ val/ test/ "
                                                "folders, or a labels.csv / JSONL manifest; flat = unlabeled."},
                    },
                }
            },
        },
        "required": True,
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut, openapi_extra=UPLOAD_DOC,
             responses={202: {"model": DatasetOut, "description": "Upload or folder accepted; validating."}})
async def create_dataset(request: Request, session: SessionDep, settings: SettingsDep, response: Response):
    """Register a dataset: JSON (built-in: 201, ready; server folder: 202) or a multipart archive upload (202)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload, name = form.get("file"), form.get("name")
        if upload is None or isinstance(upload, str):
            raise field_error("file", "attach the archive as a file field named 'file'")
        if not name or not isinstance(name, str) or len(name) > 200:
            raise field_error("name", "give the dataset a name of 1–200 characters")
        row = await run_in_threadpool(service.register_upload, session, settings, name=name,
                                      filename=upload.filename or "upload", stream=upload.file)
    elif kind.startswith("application/json") or not kind:
        try:
            body = DatasetCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
        row = await run_in_threadpool(service.register, session, settings, body)
    else:
        raise UnsupportedMedia(f"send application/json or multipart/form-data, not {kind!r}")
    out = DatasetOut.of(row)
    session.commit()
    if row.status == "validating":
        dispatch.send_validation(settings, row.id)
        return JSONResponse(out.model_dump(mode="json"), status_code=202,
                            headers={"Location": f"/v1/datasets/{row.id}"})
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return out


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetOut:
    """One dataset: status, classes, counts per class and split, image sizes, excluded files, warnings."""
    return DatasetOut.of(repo.get(session, dataset_id=dataset_id))


@router.get("/{dataset_id}/samples", response_model=SamplesOut)
def get_samples(dataset_id: str, session: SessionDep) -> SamplesOut:
    """A few thumbnails per class (PNG data URIs) of a validated dataset."""
    row = repo.get(session, dataset_id=dataset_id)
    return SamplesOut(dataset_id=row.id, samples=(row.report or {}).get("samples", {}))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset_id: str, session: SessionDep) -> Response:
    """Delete a dataset; 409 while a job or model depends on it."""
    service.delete(session, dataset_id=dataset_id)
    return Response(status_code=204)


@router.get("", response_model=Page[DatasetOut])
def list_datasets(session: SessionDep, page_size: PageSize = 50, page_token: PageToken = None) -> Page[DatasetOut]:
    """Datasets, newest first, paginated."""
    rows, token = repo.page(session, page_size=page_size, page_token=page_token)
    return Page(items=[DatasetOut.of(r) for r in rows], next_page_token=token)
