"""/v1/weights and /v1/backbones: backbone architectures and the weights that can start them."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from service import uploads
from service.blobstore import write_file
from service.deps import PageSize, PageToken, SessionDep, SettingsDep
from service.errors import field_error
from service.repo import weights as repo
from service.schemas import BackboneOut, Page, WeightsOut
from workers.pipeline import backbones
from workers.pipeline import weights as weight_files
from workers.pipeline.errors import PipelineError

router = APIRouter(tags=["weights"])


@router.get("/v1/backbones", response_model=list[BackboneOut])
def list_backbones() -> list[BackboneOut]:
    """Every torchvision classification architecture, its size, and its weights (and whether they are cached)."""
    return [BackboneOut(**entry) for entry in backbones.catalog()]


@router.post("/v1/weights", status_code=status.HTTP_201_CREATED, response_model=WeightsOut)
def upload_weights(
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A safetensors file or a PyTorch state dict (read weights-only).")],
    arch: Annotated[str, Form(description="The torchvision arch these weights are for.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> WeightsOut:
    """Upload backbone weights; they are checked key by key and shape by shape against `arch`."""
    try:
        backbones.check_arch(arch)
    except PipelineError as exc:
        raise field_error("arch", str(exc)) from exc
    path = uploads.spool_to_file(file, settings.cache_dir / "uploads", max_bytes=settings.max_weights_bytes,
                                 field="file")
    try:
        try:
            state = weight_files.read_state_file(path)
            weight_files.check_fits(arch, state)
        except PipelineError as exc:
            raise field_error("file", str(exc)) from exc
        blob = write_file(session, path, media_type="application/octet-stream", chunk_size=settings.chunk_size)
        row = repo.create(session, name=name or file.filename or arch, arch=arch, tensors=len(state),
                          blob_id=blob.id)
        return WeightsOut.model_validate(row)
    finally:
        uploads.remove(path)


@router.get("/v1/weights/{weights_id}", response_model=WeightsOut)
def get_weights(weights_id: str, session: SessionDep) -> WeightsOut:
    """One uploaded weights file; use it as `"backbone": {"weights": "upload:<id>"}`."""
    return WeightsOut.model_validate(repo.get(session, weights_id=weights_id))


@router.get("/v1/weights", response_model=Page[WeightsOut])
def list_weights(session: SessionDep, page_size: PageSize = 50, page_token: PageToken = None) -> Page[WeightsOut]:
    """Uploaded weights, newest first, paginated."""
    rows, token = repo.page(session, page_size=page_size, page_token=page_token)
    return Page(items=[WeightsOut.model_validate(r) for r in rows], next_page_token=token)
