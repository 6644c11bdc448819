"""Runs one job: load it by id, call the pipeline, record what it reports in the database."""

import logging
import shutil
import tempfile
import time
from pathlib import Path

from service.blobstore import write_file
from service.db import session_scope
from service.repo import datasets as dataset_repo
from service.repo import jobs as job_repo
from service.repo import models as model_repo
from service.settings import Settings
from workers import inputs
from workers.pipeline import backbones, checkpoints, engine
from workers.pipeline.errors import PipelineError
from workers.pipeline.images import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

log = logging.getLogger(__name__)
CHECKPOINT_MEDIA_TYPE = "application/vnd.graft.safetensors"


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
        return {"spec": dict(job.spec), "dataset_name": dataset.name,
                "dataset": {"id": dataset.id, "source": dict(dataset.source), "blob_id": dataset.blob_id,
                            "classes": list(dataset.classes), "report": dataset.report}}


def _train(settings: Settings, job_id: str, started: dict, workdir: Path) -> dict:
    """Build, train and save: returns paths of the best and last checkpoints and what the model row needs."""
    spec = started["spec"]
    arch, head = spec["backbone"]["arch"], spec.get("head") or {}
    loaded = inputs.resolve_weights(settings, arch, spec["backbone"]["weights"])  # fails before any training
    mean, std = (loaded.mean, loaded.std) if loaded else (IMAGENET_MEAN, IMAGENET_STD)
    preprocessing = Preprocessing(image_size=spec["image_size"], mean=mean, std=std)
    data = inputs.load_images(settings, started["dataset"], preprocessing)
    train, val, test, split_record = inputs.split(data, spec)
    engine.seed_everything(spec["seed"])
    grafted = backbones.build(arch, len(data.classes), state_dict=loaded.state_dict if loaded else None,
                              mean=mean, std=std, dropout=head.get("dropout", 0.0), hidden=head.get("hidden"))
    config = inputs.train_config(spec, settings)
    result = engine.Trainer(grafted, preprocessing, config, DatabaseReporter(settings, job_id)).fit(train, val, test)
    result.metrics["split"] = split_record
    meta = {"arch": arch, "classes": data.classes, "preprocessing": preprocessing.to_dict(), "head": head,
            "job_id": job_id, "weights": spec["backbone"]["weights"]}
    last = checkpoints.save(grafted, workdir / "last.safetensors", meta={**meta, "epoch": len(result.history)})
    best = last
    if result.best_state is not None and result.best_epoch != len(result.history):
        grafted.model.load_state_dict(result.best_state)
        best = checkpoints.save(grafted, workdir / "best.safetensors", meta={**meta, "epoch": result.best_epoch})
    return {"best": best, "last": last, "metrics": result.metrics, "classes": data.classes,
            "preprocessing": preprocessing.to_dict()}


def run_job(settings: Settings, job_id: str) -> None:
    """Run job `job_id` to a terminal state; user errors become `failed` with their message."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    started = _start(settings, job_id)
    if started is None:
        return
    workdir = Path(tempfile.mkdtemp(prefix=f"graft-{job_id}-", dir=settings.cache_dir))
    try:
        try:
            out = _train(settings, job_id, started, workdir)
        except PipelineError as exc:
            _fail(settings, job_id, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the job must end failed, never stuck running
            log.exception("job %s crashed", job_id)
            _fail(settings, job_id, f"internal error: {type(exc).__name__}: {exc}")
            return
        _store(settings, job_id, started, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _store(settings: Settings, job_id: str, started: dict, out: dict) -> None:
    """Stream the checkpoints into the database and create the versioned model, in one transaction."""
    spec = started["spec"]
    with session_scope(settings.sqlalchemy_url) as session:
        last = write_file(session, out["last"], media_type=CHECKPOINT_MEDIA_TYPE, chunk_size=settings.chunk_size)
        best = last
        if out["best"] != out["last"]:
            best = write_file(session, out["best"], media_type=CHECKPOINT_MEDIA_TYPE, chunk_size=settings.chunk_size)
        model = model_repo.create(
            session, name=spec.get("model_name") or f"{started['dataset_name']}-{spec['backbone']['arch']}",
            job_id=job_id, arch=spec["backbone"]["arch"], classes=out["classes"], preprocessing=out["preprocessing"],
            metrics=out["metrics"], checkpoint_blob_id=best.id, last_checkpoint_blob_id=last.id,
        )
        job_repo.transition(session, job_id=job_id, to="succeeded", metrics=out["metrics"], model_id=model.id)


def _fail(settings: Settings, job_id: str, message: str) -> None:
    with session_scope(settings.sqlalchemy_url) as session:
        job_repo.transition(session, job_id=job_id, to="failed", error=message)
