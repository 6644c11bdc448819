"""What a job needs before it trains, resolved from the database and local caches: data, weights, config."""

import hashlib

from pathlib import Path

import torch

from service.blobstore import read_to_file
from service.db import session_scope
from service.settings import Settings
from service.tables import Model, WeightFile
from workers.pipeline import datasets, weights
from workers.pipeline.adaptation.trainer import AdaptationConfig
from workers.pipeline.datasets import DecodeCache, ImageSet
from workers.pipeline.engine import TrainConfig
from workers.pipeline.errors import WeightsUnavailable
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig

_decode_caches: dict[Path, DecodeCache] = {}


def decode_cache(settings: Settings) -> DecodeCache:
    """The worker process's cache of decoded datasets."""
    path = settings.cache_dir / "datasets"
    if path not in _decode_caches:
        _decode_caches[path] = DecodeCache(path)
    return _decode_caches[path]


SPLIT_CODES = {None: -1, "train": 0, "val": 1, "test": 2}
UNLABELED = -1  # label code of an image without a label


def labeled_only(data: ImageSet) -> ImageSet:
    """The images of `data` that have a label."""
    keep = torch.nonzero(data.labels != UNLABELED).flatten()
    return data if len(keep) == len(data) else data.subset(keep)


def load_images(settings: Settings, dataset: dict, preprocessing: Preprocessing) -> ImageSet:
    """A dataset decoded at `preprocessing`'s size, once per process and disk cache (keyed by its content)."""
    source = dataset["source"]
    cache = decode_cache(settings)

    def build() -> ImageSet:
        if "builtin" in source:
            return datasets.decode_set(datasets.load_raw(source["builtin"], source.get("classes")), preprocessing)
        from workers.ingesting import dataset_root

        root = dataset_root(settings, source, dataset["blob_id"])
        items = dataset["report"]["items"]
        classes = dataset["classes"]
        labels = [classes.index(i["label"]) if i["label"] is not None else UNLABELED for i in items]
        raw = datasets.RawSet([_open(root / i["path"]) for i in items], labels, classes)
        decoded = datasets.decode_set(raw, preprocessing)
        decoded.splits = torch.tensor([SPLIT_CODES[i["split"]] for i in items], dtype=torch.int8)
        return decoded

    key_source = source if "builtin" in source else {"content": source.get("sha256") or dataset["id"]}
    return cache.get(DecodeCache.key(key_source, preprocessing), build)


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image


def split(data: ImageSet, spec: dict) -> tuple[ImageSet, ImageSet, ImageSet | None, dict]:
    """Train, validation and test sets, and a record of the split used (so it can be reproduced).

    The dataset's own train/val/test folders are honoured; otherwise few-shot (`train_per_class`) or a
    stratified `val_fraction` split, drawn by `seed`.
    """
    splits = data.splits
    test = None
    if splits is not None and bool((splits >= 0).any()):
        train_idx = torch.nonzero(splits == 0).flatten()
        val_idx = torch.nonzero(splits == 1).flatten()
        test_idx = torch.nonzero(splits == 2).flatten()
        test = data.subset(test_idx) if len(test_idx) else None
        if len(val_idx) == 0:  # no val folder: hold out from train
            inner_train, inner_val = datasets.stratified_split(data.labels[train_idx], spec["val_fraction"],
                                                               spec["seed"])
            train_idx, val_idx = train_idx[inner_train], train_idx[inner_val]
        method = "dataset"
    elif spec.get("train_per_class"):
        train_idx, val_idx = datasets.few_shot_split(data.labels, spec["train_per_class"], spec["seed"])
        method = "few_shot"
    else:
        train_idx, val_idx = datasets.stratified_split(data.labels, spec["val_fraction"], spec["seed"])
        method = "stratified"
    record = {"method": method, "seed": spec["seed"], "train": len(train_idx), "val": len(val_idx),
              "test": len(test) if test is not None else 0,
              "val_indices_sha256": hashlib.sha256(val_idx.numpy().tobytes()).hexdigest()}
    return data.subset(train_idx), data.subset(val_idx), test, record


def _blob_file(settings: Settings, blob_id: str, name: str) -> Path:
    path = settings.cache_dir / "blobs" / f"{name}-{blob_id}.bin"
    if not path.exists():
        with session_scope(settings.sqlalchemy_url) as session:
            read_to_file(session, blob_id, path)
    return path


def resolve_weights(settings: Settings, arch: str, source: str) -> weights.BackboneWeights | None:
    """The backbone weights a spec names: none, torchvision, an earlier model, or an upload."""
    if source == "none":
        return None
    if source.startswith("model:"):
        model_id = source.removeprefix("model:")
        with session_scope(settings.sqlalchemy_url) as session:
            model = session.get(Model, model_id)
            blob_id = model.checkpoint_blob_id if model else None
        if blob_id is None:
            raise WeightsUnavailable(f"no model with id {model_id!r} to take a backbone from")
        return weights.from_graft_checkpoint(_blob_file(settings, blob_id, "model"), arch)
    if source.startswith("upload:"):
        upload_id = source.removeprefix("upload:")
        with session_scope(settings.sqlalchemy_url) as session:
            row = session.get(WeightFile, upload_id)
            blob_id = row.blob_id if row else None
        if blob_id is None:
            raise WeightsUnavailable(f"no uploaded weights with id {upload_id!r}")
        return weights.from_file(_blob_file(settings, blob_id, "weights"), arch)
    return weights.from_torchvision(arch, source, allow_download=settings.weights_download)


def adaptation_config(spec: dict) -> AdaptationConfig:
    """The adaptation knobs of an `adapt` job spec."""
    a = spec.get("adaptation") or {}
    return AdaptationConfig(method=a.get("method", "mmd"), weight=a.get("weight", 1.0), ramp=a.get("ramp", True),
                            gamma=a.get("gamma", 10.0), estimator=a.get("estimator", "unbiased"),
                            joint=a.get("joint", False))


def train_config(spec: dict, settings: Settings) -> TrainConfig:
    """The engine's configuration for a job spec."""
    opt, early = spec["optimizer"], spec.get("early_stopping") or {}
    strategy = StrategyConfig(
        strategy=spec.get("strategy", "finetune"), lr=opt["lr"], backbone_lr_mult=spec.get("backbone_lr_mult", 0.1),
        layer_decay=spec.get("layer_decay", 1.0), head_warmup_epochs=spec.get("head_warmup_epochs", 0),
        unfreeze_every=spec.get("unfreeze_every", 1), batchnorm=spec.get("batchnorm", "auto"),
        weight_decay=opt["weight_decay"],
    )
    schedule = dict(spec.get("schedule") or {})
    schedule["milestones"] = tuple(schedule.get("milestones", ()))
    return TrainConfig(
        epochs=spec["epochs"], batch_size=spec["batch_size"], strategy=strategy, optimizer=opt["name"],
        momentum=opt["momentum"], nesterov=opt["nesterov"], schedule=schedule,
        label_smoothing=spec.get("label_smoothing", 0.0), grad_clip_norm=spec.get("grad_clip_norm", "auto"),
        monitor=spec.get("monitor", "val_accuracy"), early_stopping_patience=early.get("patience"),
        early_stopping_min_delta=early.get("min_delta", 0.0), augmentation=spec.get("augmentation", "none"),
        seed=spec["seed"], device=settings.device, amp=spec.get("amp", True),
        checkpoint_every=spec.get("checkpoint_every", 1),
    )
