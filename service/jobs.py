"""Job creation: check a spec against what exists before it is queued."""

import hashlib
import json

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import dispatch
from service.errors import Conflict
from service.settings import Settings

from service.errors import field_error
from service.repo import datasets as dataset_repo
from service.repo import jobs as repo
from service.specs import AdaptSpec, FinetuneSpec, PretrainSpec

AnySpec = FinetuneSpec | PretrainSpec | AdaptSpec
from service.tables import IdempotencyKey, Job, Model, WeightFile
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


def _ready_dataset(session: Session, field: str, dataset_id: str):
    """The dataset `dataset_id`, or a 422 on `field` if it does not exist or is not ready."""
    dataset = dataset_repo.find(session, dataset_id=dataset_id)
    if dataset is None:
        raise field_error(field, f"no dataset with id {dataset_id!r}; register one with POST /v1/datasets")
    if dataset.status != "ready":
        reason = f": {dataset.error}" if dataset.error else "; wait until it is ready"
        raise field_error(field, f"dataset {dataset.id} is {dataset.status}{reason}")
    return dataset


def _labeled(dataset) -> bool:
    return dataset.report is None or bool(dataset.report.get("labeled", True))


def _check_target(session: Session, spec: AdaptSpec, source) -> None:
    """The target exists and is ready; if it has labels, its classes are the source's (closed set)."""
    if spec.target_dataset == spec.dataset:
        raise field_error("target_dataset", "the target dataset must differ from the source dataset")
    target = _ready_dataset(session, "target_dataset", spec.target_dataset)
    if _labeled(target) and target.classes and list(target.classes) != list(source.classes):
        only_source = sorted(set(source.classes) - set(target.classes))
        only_target = sorted(set(target.classes) - set(source.classes))
        detail = (f"classes only in the source: {only_source[:10]}; only in the target: {only_target[:10]}"
                  if only_source or only_target else "the same classes in a different order")
        raise field_error(
            "target_dataset",
            f"domain adaptation here is closed-set: a labeled target must have exactly the source's classes "
            f"(its labels are only used to report target accuracy); {detail}. Rename the target's class folders "
            "to match, or register the target without labels (a flat folder of images).",
        )


def validate(session: Session, spec: AnySpec) -> None:
    """Raise a 422 naming the field for a dataset, arch or weights that does not exist."""
    dataset = _ready_dataset(session, "dataset", spec.dataset)
    if not _labeled(dataset):
        raise field_error("dataset", f"dataset {dataset.id} has no labels; training needs a labeled dataset "
                                     "(<class>/<image> folders or a labels manifest)")
    if spec.kind == "adapt":
        _check_target(session, spec, dataset)
    try:
        backbones.check_arch(spec.backbone.arch)
    except PipelineError as exc:
        raise field_error("backbone.arch", str(exc)) from exc
    weights = spec.backbone.weights
    if spec.kind == "pretrain" and weights != "none":
        raise field_error("backbone.weights", "a pretrain job trains from scratch; set it to \"none\"")
    if weights != "none":
        _check_weights(session, spec.backbone.arch, weights)


def submit(session: Session, settings: Settings, spec: AnySpec, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Validate and insert a queued job (the caller commits, then dispatches); (job, created).

    With an `idempotency_key`, the same key and body return the job made the first time (created False); the same
    key with another body is a 409.
    """
    body = spec.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    if idempotency_key is not None:
        seen = session.get(IdempotencyKey, idempotency_key)
        if seen is not None:
            return _replay(session, seen, digest), False
    validate(session, spec)
    job = repo.create(session, kind=spec.kind, spec=body, dataset_id=spec.dataset,
                      target_dataset_id=getattr(spec, "target_dataset", None), priority=spec.priority,
                      queue=dispatch.job_queue(settings, spec.accelerator))
    if idempotency_key is not None:
        try:
            with session.begin_nested():
                session.add(IdempotencyKey(key=idempotency_key, request_sha256=digest, job_id=job.id))
        except IntegrityError:  # a concurrent request with the same key won the race
            session.rollback()
            return _replay(session, session.get(IdempotencyKey, idempotency_key), digest), False
    return job, True


def _replay(session: Session, seen: IdempotencyKey, digest: str) -> Job:
    if seen.request_sha256 != digest:
        raise Conflict(f"Idempotency-Key {seen.key!r} was first used with a different job spec (job {seen.job_id}); "
                       "use a new key for a new job", job_id=seen.job_id)
    return repo.get(session, job_id=seen.job_id)
