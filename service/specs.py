"""Job specs: what a user posts to `POST /v1/jobs`, a discriminated union on `kind`."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BackboneSpec(StrictModel):
    """Which torchvision architecture to start from, and with which weights."""

    arch: str = Field("resnet18", description="A torchvision classification model name (see GET /v1/backbones).")
    weights: str = Field(
        "none",
        description='"none" (train from scratch) or a torchvision weights name such as "IMAGENET1K_V1" or "DEFAULT".',
    )


class OptimizerSpec(StrictModel):
    """The optimizer; `lr` is the head's learning rate."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, le=1e6, description="Learning rate of the new head.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, le=1)


class TrainingFields(StrictModel):
    """Fields every training job shares."""

    dataset: str = Field(..., description="Id of a dataset registered with POST /v1/datasets.")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of each class held out for validation.")
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(64, ge=2, le=4096, description="Images per step (BatchNorm needs at least 2).")
    image_size: int = Field(32, ge=16, le=1024, description="Side of the square model input, in pixels.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    model_name: str | None = Field(
        None, max_length=200, description="Name the resulting model is versioned under; default: '<dataset>-<arch>'."
    )


class FinetuneSpec(TrainingFields):
    """Transfer a backbone to a labeled dataset with a new head."""

    kind: Literal["finetune"]
    strategy: Literal["feature_extraction", "finetune"] = Field(
        "finetune",
        description="feature_extraction: freeze the backbone, train the head; "
        "finetune: train everything, pretrained layers at lr × backbone_lr_mult.",
    )
    backbone_lr_mult: float = Field(0.1, gt=0, le=1, description="Backbone lr relative to the head's (finetune).")

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
                }
            ]
        },
    )


class PretrainSpec(TrainingFields):
    """Train a backbone from scratch on a labeled source dataset (the first phase of transfer)."""

    kind: Literal["pretrain"]


JobSpec = Annotated[FinetuneSpec | PretrainSpec, Field(discriminator="kind")]
JOB_KINDS = frozenset({"finetune", "pretrain"})
