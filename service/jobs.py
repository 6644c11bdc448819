"""Job creation: check a spec against what exists before it is queued."""

from sqlalchemy.orm import Session

from service.errors import field_error
from service.repo import datasets as dataset_repo
from service.repo import jobs as repo
from service.specs import FinetuneSpec, PretrainSpec
from service.tables import Job, Model, WeightFile
from workers.pipeline import backbones
from workers.pipeline.errors import PipelineError


def _check_weights(session: Session, arch: str, weights: str) -> None:
    """A 422 on `backbone.weights` unless it names weights that exist and fit `arch`."""
    field = "backbone.weights"
    if weights.startswith("model:"):
        model = session.get(Model, weights.removeprefix("model:"))
        if model is None:
            raise field_error(field, f"no model with id {weights.removeprefix('model:')!r}; see GET /v1/models")
        if model.arch != arch:
            raise field_error(field, f"model {model.id} is a {model.arch}; set backbone.arch to {model.arch!r}")
        return
    if weights.startswith("upload:"):
        upload = session.get(WeightFile, weights.removeprefix("upload:"))
        if upload is None:
            raise field_error(field, f"no uploaded weights with id {weights.removeprefix('upload:')!r}; "
                                     "upload them with POST /v1/weights")
        if upload.arch != arch:
            raise field_error(field, f"weights {upload.id} were uploaded for {upload.arch}, not {arch}")
        return
    try:
        backbones.weights_enum(arch, weights)
    except PipelineError as exc:
        raise field_error(field, f"{exc}; or use \"none\", \"model:<id>\" or \"upload:<id>\"") from exc


def validate(session: Session, spec: FinetuneSpec | PretrainSpec) -> None:
    """Raise a 422 naming the field for a dataset, arch or weights that does not exist."""
    dataset = dataset_repo.find(session, dataset_id=spec.dataset)
    if dataset is None:
        raise field_error("dataset", f"no dataset with id {spec.dataset!r}; register one with POST /v1/datasets")
    if dataset.status != "ready":
        reason = f": {dataset.error}" if dataset.error else "; wait until it is ready"
        raise field_error("dataset", f"dataset {dataset.id} is {dataset.status}{reason}")
    if dataset.report is not None and not dataset.report.get("labeled", True):
        raise field_error("dataset", f"dataset {dataset.id} has no labels; training needs a labeled dataset "
                                     "(<class>/<image> folders or a labels manifest)")
    try:
        backbones.check_arch(spec.backbone.arch)
    except PipelineError as exc:
        raise field_error("backbone.arch", str(exc)) from exc
    weights = spec.backbone.weights
    if spec.kind == "pretrain" and weights != "none":
        raise field_error("backbone.weights", "a pretrain job trains from scratch; set it to \"none\"")
    if weights != "none":
        _check_weights(session, spec.backbone.arch, weights)


def submit(session: Session, spec: FinetuneSpec | PretrainSpec) -> Job:
    """Validate and insert a queued job (the caller commits, then dispatches)."""
    validate(session, spec)
    return repo.create(session, kind=spec.kind, spec=spec.model_dump(mode="json"), dataset_id=spec.dataset)
