"""Runs one job: load it by id, call the pipeline, record what it reports in the database."""

import logging
import tempfile
import time
from pathlib import Path

from service.blobstore import write_file
from service.db import session_scope
from service.repo import datasets as dataset_repo
from service.repo import jobs as job_repo
from service.repo import models as model_repo
from service.settings import Settings
from workers.pipeline import backbones, checkpoints, datasets, engine
from workers.pipeline.errors import PipelineError
from workers.pipeline.images import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

log = logging.getLogger(__name__)


class DatabaseReporter:
    """Engine callbacks that write progress (throttled) and every epoch's metrics to the job's rows."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        self.url = settings.sqlalchemy_url
        self.job_id = job_id
        self.interval = settings.progress_interval_s
        self._last = 0.0

    def on_progress(self, *, epoch: int, step: int, total_steps: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and step != total_steps:
            return
        self._last = now
        with session_scope(self.url) as session:
            job_repo.set_progress(
                session, job_id=self.job_id, progress={"epoch": epoch, "step": step, "total_steps": total_steps}
            )

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None:
        with session_scope(self.url) as session:
            job_repo.record_epoch(session, job_id=self.job_id, epoch=epoch, values=metrics)


def _start(settings: Settings, job_id: str) -> dict | None:
    """Mark the job running and return what the pipeline needs; None if it must not run (already finished)."""
    with session_scope(settings.sqlalchemy_url) as session:
        job = job_repo.get(session, job_id=job_id, lock=True)
        if job.status in job_repo.TERMINAL:
            log.info("job %s is already %s; skipping duplicate delivery", job_id, job.status)
            return None
        dataset = dataset_repo.get(session, dataset_id=job.dataset_id)
        job_repo.transition(session, job_id=job_id, to="running")
        return {"spec": dict(job.spec), "source": dict(dataset.source), "dataset_name": dataset.name}


def _backbone(spec: dict, num_classes: int, image_size: int) -> tuple[backbones.Grafted, Preprocessing]:
    """Build the model the spec asks for, and the preprocessing that belongs to its weights."""
    arch, weights = spec["backbone"]["arch"], spec["backbone"]["weights"]
    if weights == "none":
        grafted = backbones.build(arch, num_classes)
        return grafted, Preprocessing(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    state, entry = backbones.load_torchvision_weights(arch, weights)
    tf = entry.transforms()
    mean, std = tuple(tf.mean), tuple(tf.std)
    grafted = backbones.build(arch, num_classes, state_dict=state, mean=mean, std=std)
    return grafted, Preprocessing(image_size=image_size, mean=mean, std=std)


def _train(settings: Settings, job_id: str, started: dict) -> tuple[Path, dict, list[str], dict]:
    spec = started["spec"]
    raw = datasets.load_raw(started["source"]["builtin"])
    grafted, preprocessing = _backbone(spec, len(raw.classes), spec["image_size"])
    data = datasets.decode_set(raw, preprocessing)
    train_idx, val_idx = datasets.stratified_split(data.labels, spec["val_fraction"], spec["seed"])
    opt = spec["optimizer"]
    config = engine.TrainConfig(
        epochs=spec["epochs"], batch_size=spec["batch_size"], strategy=spec.get("strategy", "finetune"),
        optimizer=opt["name"], lr=opt["lr"], momentum=opt["momentum"], nesterov=opt["nesterov"],
        weight_decay=opt["weight_decay"], backbone_lr_mult=spec.get("backbone_lr_mult", 0.1),
        seed=spec["seed"], device=settings.device,
    )
    result = engine.fit(
        grafted, data.subset(train_idx), data.subset(val_idx), preprocessing, config, DatabaseReporter(settings, job_id)
    )
    meta = {"arch": spec["backbone"]["arch"], "classes": data.classes, "preprocessing": preprocessing.to_dict(),
            "head": {}, "job_id": job_id}
    out_dir = Path(tempfile.mkdtemp(prefix=f"graft-{job_id}-", dir=settings.cache_dir))
    path = checkpoints.save(grafted, out_dir / "model.safetensors", meta=meta)
    return path, result.metrics, data.classes, preprocessing.to_dict()


def run_job(settings: Settings, job_id: str) -> None:
    """Run job `job_id` to a terminal state; user errors become `failed` with their message."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    started = _start(settings, job_id)
    if started is None:
        return
    try:
        path, metrics, classes, preprocessing = _train(settings, job_id, started)
    except PipelineError as exc:
        _fail(settings, job_id, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the job must end failed, never stuck running
        log.exception("job %s crashed", job_id)
        _fail(settings, job_id, f"internal error: {type(exc).__name__}: {exc}")
        return
    try:
        with session_scope(settings.sqlalchemy_url) as session:
            blob = write_file(session, path, media_type="application/vnd.graft.safetensors",
                              chunk_size=settings.chunk_size)
            spec = started["spec"]
            model = model_repo.create(
                session, name=spec.get("model_name") or f"{started['dataset_name']}-{spec['backbone']['arch']}",
                job_id=job_id, arch=spec["backbone"]["arch"], classes=classes, preprocessing=preprocessing,
                metrics=metrics, checkpoint_blob_id=blob.id,
            )
            job_repo.transition(session, job_id=job_id, to="succeeded", metrics=metrics, model_id=model.id)
    finally:
        path.unlink(missing_ok=True)
        path.parent.rmdir()


def _fail(settings: Settings, job_id: str, message: str) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        job_repo.transition(session, job_id=job_id, to="failed", error=message)
