"""Job creation: check a spec against what exists before it is queued."""

from sqlalchemy.orm import Session

from service.errors import field_error
from service.repo import datasets as dataset_repo
from service.repo import jobs as repo
from service.specs import FinetuneSpec, PretrainSpec
from service.tables import Job
from workers.pipeline import backbones
from workers.pipeline.errors import PipelineError


def validate(session: Session, spec: FinetuneSpec | PretrainSpec) -> None:
    """Raise a 422 naming the field for a dataset, arch or weights name that does not exist."""
    if dataset_repo.find(session, dataset_id=spec.dataset) is None:
        raise field_error("dataset", f"no dataset with id {spec.dataset!r}; register one with POST /v1/datasets")
    try:
        backbones.check_arch(spec.backbone.arch)
    except PipelineError as exc:
        raise field_error("backbone.arch", str(exc)) from exc
    weights = spec.backbone.weights
    if spec.kind == "pretrain" and weights != "none":
        raise field_error("backbone.weights", "a pretrain job trains from scratch; set it to \"none\"")
    if weights != "none":
        try:
            backbones.weights_enum(spec.backbone.arch, weights)
        except PipelineError as exc:
            raise field_error("backbone.weights", str(exc)) from exc


def submit(session: Session, spec: FinetuneSpec | PretrainSpec) -> Job:
    """Validate and insert a queued job (the caller commits, then dispatches)."""
    validate(session, spec)
    return repo.create(session, kind=spec.kind, spec=spec.model_dump(mode="json"), dataset_id=spec.dataset)
