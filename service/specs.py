"""Job specs: what a user posts to `POST /v1/jobs`, a discriminated union on `kind`."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator


class StrictModel(BaseModel):
    """Unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BackboneSpec(StrictModel):
    """Which torchvision architecture to start from, and with which weights."""

    arch: str = Field("resnet18", description="A torchvision classification model name (see GET /v1/backbones).")
    weights: str = Field(
        "none",
        description='"none" (from scratch); a torchvision weights name ("IMAGENET1K_V1", "DEFAULT") from '
        '$TORCH_HOME/hub/checkpoints; "model:<id>" (the backbone of an earlier Graft model of the same arch); '
        'or "upload:<id>" (a file posted to POST /v1/weights).',
    )


class HeadSpec(StrictModel):
    """The new classification head grafted onto the backbone."""

    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the final linear layer.")
    hidden: int | None = Field(None, ge=1, le=65536, description="Width of an optional hidden layer (Linear→ReLU).")
    bottleneck: int | None = Field(
        None, ge=1, le=65536,
        description="Width of an optional bottleneck (Linear→BatchNorm→ReLU→Dropout(bottleneck_dropout)) before the "
        "classifier, as DAN and DANN use; adaptation losses then align its output.",
    )
    bottleneck_dropout: float = Field(0.5, ge=0, lt=1, description="Dropout inside the bottleneck.")

    @model_validator(mode="after")
    def _one_hidden_layer(self):
        if self.hidden is not None and self.bottleneck is not None:
            raise ValueError("set head.hidden or head.bottleneck, not both")
        return self


class OptimizerSpec(StrictModel):
    """The optimizer; `lr` is the head's learning rate. Biases and norm layers never get weight decay."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, le=1e6, description="Learning rate of the new head.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, le=1)


class ScheduleSpec(StrictModel):
    """Learning-rate schedule, applied per step to every parameter group, with optional linear warm-up."""

    name: Literal["constant", "step", "multistep", "cosine", "onecycle"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0, description="Epochs of linear warm-up from 0 (fractions allowed).")
    step_size: int = Field(1, ge=1, description="step: epochs between two decays.")
    milestones: list[int] = Field(default_factory=list, description="multistep: epochs at which lr decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="step/multistep: decay factor.")
    min_factor: float = Field(0.0, ge=0, le=1, description="cosine: final lr as a fraction of the initial lr.")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: fraction of steps spent increasing lr.")
    div_factor: float = Field(25.0, gt=1, description="onecycle: initial lr = lr / div_factor.")
    final_div_factor: float = Field(1e4, gt=1, description="onecycle: final lr = initial lr / final_div_factor.")


class EarlyStoppingSpec(StrictModel):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs."""

    patience: int = Field(..., ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainingFields(StrictModel):
    """Fields every training job shares."""

    dataset: str = Field(..., description="Id of a dataset registered with POST /v1/datasets.")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of each class held out for validation.")
    train_per_class: int | None = Field(
        None, ge=1, description="Few-shot: train on this many images per class; all others validate."
    )
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    head: HeadSpec = Field(default_factory=HeadSpec)
    epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(64, ge=2, le=4096, description="Images per step (BatchNorm needs at least 2).")
    image_size: int = Field(32, ge=16, le=1024, description="Side of the square model input, in pixels.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip_norm: Annotated[float, Field(gt=0)] | Literal["auto"] | None = Field(
        "auto",
        description="Clip the global gradient norm to this value (null: no clipping). auto: 1.0 where BatchNorm "
        "statistics are frozen while the layers around them train (finetune or gradual_unfreeze of pretrained "
        "weights): the fixed statistics (tiny running variances in MobileNet's depthwise layers) amplify gradients "
        "and unclipped SGD diverges to chance accuracy; no clipping otherwise (it slows training from scratch).",
    )
    augmentation: Literal["none", "light", "standard"] = Field(
        "none", description="light: random shifts; standard: resized crops, flips, colour jitter."
    )
    monitor: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="Metric that picks the best checkpoint (the one served) and drives early stopping."
    )
    early_stopping: EarlyStoppingSpec | None = None
    amp: bool = Field(True, description="Mixed precision on CUDA (bf16 where supported, else fp16); no effect on CPU.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    model_name: str | None = Field(
        None, max_length=200, description="Name the resulting model is versioned under; default: '<dataset>-<arch>'."
    )
    priority: int = Field(5, ge=0, le=9, description="0 (lowest) to 9 (most urgent): order among queued jobs.")
    accelerator: Literal["any", "gpu", "cpu"] = Field(
        "any", description="Which workers may run the job: any, only GPU workers, or only CPU workers."
    )
    checkpoint_every: int = Field(
        1, ge=0, description="Epochs between two training-state checkpoints a lost job resumes from (0: none)."
    )
    callback_url: HttpUrl | None = Field(
        None, description="POSTed the job (JSON) on every terminal state, signed with X-Graft-Signature "
        "(sha256=HMAC-SHA256 of the body with GRAFT_WEBHOOK_SECRET), retried with backoff until a 2xx.",
    )

    @model_validator(mode="after")
    def _milestones_inside(self):
        if any(m < 1 or m > self.epochs for m in self.schedule.milestones):
            raise ValueError(f"schedule.milestones must lie between 1 and epochs ({self.epochs})")
        return self


class FinetuneSpec(TrainingFields):
    """Transfer a backbone to a labeled dataset with a new head."""

    kind: Literal["finetune"]
    strategy: Literal["feature_extraction", "finetune", "gradual_unfreeze"] = Field(
        "finetune",
        description="feature_extraction: freeze the backbone (BatchNorm statistics included), train the head; "
        "finetune: train everything, pretrained layers at lr × backbone_lr_mult; "
        "gradual_unfreeze: head first, then one more block from the top every unfreeze_every epochs.",
    )
    backbone_lr_mult: float = Field(0.1, gt=0, le=1, description="Backbone lr relative to the head's (pretrained).")
    layer_decay: float = Field(1.0, gt=0, le=1, description="Each block below the top one: lr × layer_decay more.")
    head_warmup_epochs: int = Field(0, ge=0, description="finetune: epochs that train the head alone first.")
    unfreeze_every: int = Field(1, ge=1, description="gradual_unfreeze: epochs between two unfrozen blocks.")
    batchnorm: Literal["auto", "freeze", "train"] = Field(
        "auto",
        description="freeze: BatchNorm running statistics fixed; train: updated; auto: freeze for pretrained "
        "weights (small fine-tuning batches would corrupt them), train from scratch.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "finetune",
                    "dataset": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                    "val_fraction": 0.2,
                    "backbone": {"arch": "resnet18", "weights": "none"},
                    "strategy": "finetune",
                    "epochs": 3,
                    "batch_size": 64,
                    "image_size": 32,
                    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
                    "seed": 0,
                },
                {
                    "kind": "finetune",
                    "dataset": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                    "backbone": {"arch": "mobilenet_v2", "weights": "IMAGENET1K_V1"},
                    "strategy": "gradual_unfreeze",
                    "unfreeze_every": 2,
                    "epochs": 10,
                    "image_size": 64,
                    "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.05},
                    "schedule": {"name": "cosine", "warmup_epochs": 1},
                    "augmentation": "light",
                },
            ]
        },
    )


class PretrainSpec(TrainingFields):
    """Train a backbone from scratch on a labeled source dataset (the first phase of transfer)."""

    kind: Literal["pretrain"]


class AdaptationSpec(StrictModel):
    """How source and target features are aligned in an `adapt` job."""

    method: Literal["none", "mmd", "dann", "coral"] = Field(
        "mmd",
        description="mmd: multi-kernel Maximum Mean Discrepancy (DAN); dann: gradient reversal and a domain "
        "discriminator; coral: covariance alignment (Deep CORAL); none: source only, the baseline.",
    )
    weight: float = Field(1.0, ge=0, le=1000, description="Trade-off λ between the source loss and the alignment.")
    ramp: bool = Field(True, description="Ramp λ from 0 to `weight` as 2/(1+exp(-gamma·p))-1 over training progress p.")
    gamma: float = Field(10.0, gt=0, le=100, description="Steepness of the ramp.")
    estimator: Literal["biased", "unbiased", "linear"] = Field(
        "unbiased", description="mmd: quadratic biased/unbiased estimator, or the linear-time one."
    )
    joint: bool = Field(False, description="mmd: align features jointly with the softmax outputs (JMMD).")


class AdaptSpec(FinetuneSpec):
    """Unsupervised domain adaptation: labeled source `dataset`, unlabeled `target_dataset`.

    Target labels, when the target dataset has them, are used for evaluation only.
    """

    kind: Literal["adapt"]
    target_dataset: str = Field(..., description="Id of the target dataset (labels optional, never trained on).")
    adaptation: AdaptationSpec = Field(default_factory=AdaptationSpec)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "adapt",
                    "dataset": "<labeled source id>",
                    "target_dataset": "<unlabeled target id>",
                    "backbone": {"arch": "resnet18", "weights": "none"},
                    "strategy": "finetune",
                    "adaptation": {"method": "mmd", "weight": 1.0},
                    "epochs": 15,
                    "batch_size": 64,
                    "image_size": 32,
                    "seed": 0,
                }
            ]
        },
    )


JobSpec = Annotated[FinetuneSpec | PretrainSpec | AdaptSpec, Field(discriminator="kind")]
JOB_KINDS = frozenset({"finetune", "pretrain", "adapt"})
