"""/v1/models: trained models, their checkpoints, and predict."""

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from service.api.files import blob_download
from service.deps import PageSize, PageToken, SessionDep, SettingsDep
from service.errors import PayloadTooLarge, UnsupportedMedia, field_error
from service.repo import models as repo
from service.schemas import CheckpointInfo, LabelScore, ModelOut, Page, Prediction, PredictOut
from service.tables import Blob, Model
from workers.pipeline.errors import InvalidImage
from workers.pipeline.images import decode

router = APIRouter(prefix="/v1/models", tags=["models"])


def to_out(session, model: Model) -> ModelOut:
    """The public description of a model."""
    blob = session.get(Blob, model.checkpoint_blob_id)
    return ModelOut(
        id=model.id, name=model.name, version=model.version, job_id=model.job_id, arch=model.arch,
        classes=model.classes, preprocessing=model.preprocessing, metrics=model.metrics, created_at=model.created_at,
        checkpoint=CheckpointInfo(size=blob.size, sha256=blob.sha256, media_type=blob.media_type,
                                  url=f"/v1/models/{model.id}/checkpoint"),
    )


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, session: SessionDep) -> ModelOut:
    """One model: arch, classes, preprocessing, metrics, checkpoint."""
    return to_out(session, repo.get(session, model_id=model_id))


@router.get("", response_model=Page[ModelOut])
def list_models(session: SessionDep, page_size: PageSize = 50, page_token: PageToken = None) -> Page[ModelOut]:
    """Models, newest first, paginated."""
    rows, token = repo.page(session, page_size=page_size, page_token=page_token)
    return Page(items=[to_out(session, r) for r in rows], next_page_token=token)


@router.get("/{model_id}/checkpoint", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_checkpoint(
    model_id: str,
    session: SessionDep,
    settings: SettingsDep,
    which: Annotated[Literal["best", "last"], Query(description="best (served by predict) or last epoch's.")] = "best",
) -> StreamingResponse:
    """The weights as a safetensors file (metadata: arch, classes, preprocessing), streamed chunk by chunk."""
    model = repo.get(session, model_id=model_id)
    blob = session.get(Blob, model.last_checkpoint_blob_id if which == "last" and model.last_checkpoint_blob_id
                       else model.checkpoint_blob_id)
    return blob_download(settings, blob, f"{model.name}-v{model.version}-{which}.safetensors")


@router.post("/{model_id}/predict", response_model=PredictOut)
def predict(
    model_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="One or more images, any common format and mode.")],
    top_k: Annotated[int, Form(ge=1, le=1000, description="Labels per image (capped by the class count).")] = 5,
) -> PredictOut:
    """Label images: top-k labels and scores for each file, in the order sent."""
    model = repo.get(session, model_id=model_id)
    if len(files) > settings.predict_max_files:
        raise field_error("files", f"{len(files)} files sent; at most {settings.predict_max_files} per request")
    images = []
    for index, upload in enumerate(files):
        data = upload.file.read(settings.predict_max_bytes + 1)
        if len(data) > settings.predict_max_bytes:
            raise PayloadTooLarge(f"files[{index}] ({upload.filename}) is larger than {settings.predict_max_bytes} bytes")
        try:
            images.append(decode(data))
        except InvalidImage as exc:
            raise UnsupportedMedia(
                f"files[{index}] ({upload.filename}) is not an image Graft can read: {exc}; "
                "send PNG, JPEG, GIF, BMP, TIFF or WebP",
                errors=[{"field": f"files[{index}]", "message": str(exc)}],
            ) from exc
    predictor = request.app.state.predictors.get(model)
    results = predictor.predict(images, top_k=top_k)
    return PredictOut(
        model_id=model.id,
        predictions=[Prediction(top=[LabelScore(label=l, score=s) for l, s in row]) for row in results],
    )
