"""Runs one job: claim it, call the pipeline, record what it reports in the database, keep it alive and stoppable.

A job belongs to one attempt at a time (`jobs.attempts` is the fencing token). While it trains, a heartbeat thread
refreshes `heartbeat_at` and watches for a cancel request; every `checkpoint_every` epochs the full training state
goes into the database, so an attempt that starts after a lost worker continues from there. Database writes retry
while the database is unreachable (up to GRAFT_DB_RETRY_S).
"""

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import torch

from service.blobstore import delete_blob, read_to_file, write_file
from service.db import is_transient, session_scope, with_retry
from service.repo import datasets as dataset_repo
from service.repo import jobs as job_repo
from service.repo import models as model_repo
from service.settings import Settings
from service.tables import Job
from workers import inputs
from workers.pipeline import backbones, checkpoints, engine
from workers.pipeline.adaptation.trainer import AdaptTrainer
from workers.pipeline.errors import PipelineError
from workers.pipeline.images import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

log = logging.getLogger(__name__)
CHECKPOINT_MEDIA_TYPE = "application/vnd.graft.safetensors"
STATE_MEDIA_TYPE = "application/vnd.graft.training-state"


class JobCancelled(Exception):
    """The job's cancel request was seen; `partial` is the checkpoint of what was trained so far, if any."""

    partial: Path | None = None


class JobLost(Exception):
    """This attempt no longer owns the job (it was re-dispatched after this worker looked dead)."""


def worker_name() -> str:
    """This process, when no Celery worker name is given."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """A thread that keeps the attempt's heartbeat fresh and notices cancel requests and lost ownership."""

    def __init__(self, settings: Settings, job_id: str, attempt: int) -> None:
        self.settings, self.job_id, self.attempt = settings, job_id, attempt
        self.cancelled, self.lost, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                with session_scope(self.settings.sqlalchemy_url) as session:
                    status = job_repo.heartbeat(session, job_id=self.job_id, attempt=self.attempt)
            except Exception as exc:  # noqa: BLE001 - a database outage must not kill training
                log.warning("heartbeat of job %s failed: %s", self.job_id, type(exc).__name__)
                continue
            if status is None:
                self.lost.set()
            elif status == "cancelling":
                self.cancelled.set()

    def check(self) -> None:
        """Raise if the job must stop now."""
        if self.lost.is_set():
            raise JobLost(self.job_id)
        if self.cancelled.is_set():
            raise JobCancelled(self.job_id)


class DatabaseReporter:
    """Engine callbacks: progress (throttled), every epoch's metrics, training-state checkpoints, stop checks."""

    def __init__(self, settings: Settings, job_id: str, heartbeat: Heartbeat, workdir: Path) -> None:
        self.settings, self.job_id, self.heartbeat, self.workdir = settings, job_id, heartbeat, workdir
        self.url = settings.sqlalchemy_url
        self._last = 0.0

    def _write(self, work, what: str):
        return with_retry(self.url, work, deadline_s=self.settings.db_retry_s, what=f"{what} of job {self.job_id}")

    def on_progress(self, *, epoch: int, step: int, total_steps: int) -> None:
        self.heartbeat.check()
        now = time.monotonic()
        if now - self._last < self.settings.progress_interval_s and step != total_steps:
            return
        self._last = now
        progress = {"epoch": epoch, "step": step, "total_steps": total_steps}
        self._write(lambda s: job_repo.set_progress(s, job_id=self.job_id, progress=progress), "progress")

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None:
        self._write(lambda s: job_repo.record_epoch(s, job_id=self.job_id, epoch=epoch, values=metrics), "metrics")
        self.heartbeat.check()

    def on_checkpoint(self, *, epoch: int, state: dict) -> None:
        path = checkpoints.save_training_state(state, self.workdir / "state.pt")

        def store(session):
            blob = write_file(session, path, media_type=STATE_MEDIA_TYPE, chunk_size=self.settings.chunk_size)
            job = job_repo.get(session, job_id=self.job_id, lock=True)
            if job.attempts != self.heartbeat.attempt:
                raise JobLost(self.job_id)
            old, job.state_blob_id = job.state_blob_id, blob.id
            session.flush()
            if old:
                delete_blob(session, old)
            job_repo.add_event(session, job_id=self.job_id, type="log",
                               data={"level": "info", "message": f"training state saved after epoch {epoch}"})

        self._write(store, "checkpoint")


def job_log(settings: Settings, job_id: str, message: str, level: str = "info") -> None:
    """One line in the job's log (GET /v1/jobs/{id}/logs), and in the worker's."""
    getattr(log, "warning" if level == "warning" else "info")("job %s: %s", job_id, message)
    try:
        with_retry(settings.sqlalchemy_url,
                   lambda s: job_repo.add_event(s, job_id=job_id, type="log", data={"level": level, "message": message}),
                   deadline_s=settings.db_retry_s, what="log line")
    except Exception:  # noqa: BLE001 - a log line is never worth failing a job
        log.exception("could not store a log line of job %s", job_id)


def _dataset_input(dataset) -> dict:
    """What `inputs.load_images` needs of a dataset row."""
    return {"id": dataset.id, "source": dict(dataset.source), "blob_id": dataset.blob_id,
            "classes": list(dataset.classes), "report": dataset.report}


def _start(settings: Settings, job_id: str, worker: str) -> dict | None:
    """Claim the job and return what the pipeline needs; None if it must not run here."""
    with session_scope(settings.sqlalchemy_url) as session:
        job = job_repo.claim(session, job_id=job_id, worker=worker,
                             stale_after=timedelta(seconds=settings.heartbeat_timeout_s))
        if job is None:
            status = session.get(Job, job_id).status
            log.info("job %s is %s; not running this delivery", job_id, status)
            return None
        dataset = dataset_repo.get(session, dataset_id=job.dataset_id)
        target = dataset_repo.get(session, dataset_id=job.target_dataset_id) if job.target_dataset_id else None
        return {"spec": dict(job.spec), "dataset_name": dataset.name, "dataset": _dataset_input(dataset),
                "target": _dataset_input(target) if target is not None else None, "attempt": job.attempts,
                "state_blob_id": job.state_blob_id}


def _resume_state(settings: Settings, job_id: str, started: dict, workdir: Path) -> dict | None:
    """The training state a previous attempt saved, if any (and readable)."""
    if not started["state_blob_id"]:
        return None
    path = workdir / "resume.pt"
    try:
        with session_scope(settings.sqlalchemy_url) as session:
            read_to_file(session, started["state_blob_id"], path)
        state = checkpoints.load_training_state(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint means starting over, not failing
        job_log(settings, job_id, f"could not read the saved training state ({exc}); starting from epoch 1", "warning")
        return None
    job_log(settings, job_id, f"attempt {started['attempt']} resumes after epoch {state['epoch']}")
    return state


def _train(settings: Settings, job_id: str, started: dict, workdir: Path, heartbeat: Heartbeat) -> dict:
    """Build, train and save: returns paths of the best and last checkpoints and what the model row needs."""
    spec = started["spec"]
    arch, head = spec["backbone"]["arch"], spec.get("head") or {}
    loaded = inputs.resolve_weights(settings, arch, spec["backbone"]["weights"])  # fails before any training
    mean, std = (loaded.mean, loaded.std) if loaded else (IMAGENET_MEAN, IMAGENET_STD)
    preprocessing = Preprocessing(image_size=spec["image_size"], mean=mean, std=std)
    data = inputs.labeled_only(inputs.load_images(settings, started["dataset"], preprocessing))
    train, val, test, split_record = inputs.split(data, spec)
    job_log(settings, job_id, f"{arch} on {len(train)} training and {len(val)} validation images "
                              f"({split_record['method']} split), device {settings.device}")
    engine.seed_everything(spec["seed"])
    grafted = backbones.build(arch, len(data.classes), state_dict=loaded.state_dict if loaded else None,
                              mean=mean, std=std, dropout=head.get("dropout", 0.0), hidden=head.get("hidden"),
                              bottleneck=head.get("bottleneck"), bottleneck_dropout=head.get("bottleneck_dropout", 0.5))
    config = inputs.train_config(spec, settings)
    reporter = DatabaseReporter(settings, job_id, heartbeat, workdir)
    if spec["kind"] == "adapt":
        target = inputs.load_images(settings, started["target"], preprocessing)
        labeled_target = inputs.labeled_only(target) if bool((target.labels >= 0).all()) else None
        trainer = AdaptTrainer(grafted, preprocessing, config, inputs.adaptation_config(spec), target,
                               target_eval=labeled_target, callbacks=reporter)
    else:
        trainer = engine.Trainer(grafted, preprocessing, config, reporter)
    meta = {"arch": arch, "classes": data.classes, "preprocessing": preprocessing.to_dict(), "head": head,
            "job_id": job_id, "weights": spec["backbone"]["weights"]}
    try:
        result = trainer.fit(train, val, test, resume=_resume_state(settings, job_id, started, workdir))
    except JobCancelled as exc:
        exc.partial = checkpoints.save(grafted, workdir / "partial.safetensors", meta={**meta, "partial": True})
        raise
    result.metrics["split"] = split_record
    last = checkpoints.save(grafted, workdir / "last.safetensors", meta={**meta, "epoch": len(result.history)})
    best = last
    if result.best_state is not None and result.best_epoch != len(result.history):
        grafted.model.load_state_dict(result.best_state)
        best = checkpoints.save(grafted, workdir / "best.safetensors", meta={**meta, "epoch": result.best_epoch})
    return {"best": best, "last": last, "metrics": result.metrics, "classes": data.classes,
            "preprocessing": preprocessing.to_dict()}


def _user_error(exc: BaseException, spec: dict) -> str | None:
    """The message for an error the user must fix (the spec, the data), or None for anything else."""
    if isinstance(exc, PipelineError):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return (f"out of memory with batch_size {spec['batch_size']} at image_size {spec['image_size']}; "
                "lower batch_size or image_size")
    return None


def run_job(settings: Settings, job_id: str, worker: str | None = None) -> None:
    """Run job `job_id` to a terminal state; user errors become `failed` with their message at once."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    started = _start(settings, job_id, worker or worker_name())
    if started is None:
        return
    workdir = Path(tempfile.mkdtemp(prefix=f"graft-{job_id}-", dir=settings.cache_dir))
    try:
        with Heartbeat(settings, job_id, started["attempt"]) as heartbeat:
            try:
                out = _train(settings, job_id, started, workdir, heartbeat)
            except JobCancelled as exc:
                _finish(settings, job_id, "cancelled", partial=exc.partial, reason="cancelled while training")
                return
            except JobLost:
                log.warning("job %s was taken over by another attempt; this one stops", job_id)
                return
            except Exception as exc:  # noqa: BLE001 - the job must end failed, never stuck running
                message = _user_error(exc, started["spec"])
                if message is None:
                    if is_transient(exc):
                        raise  # the database is gone: the sweeper re-dispatches the job once it is back
                    log.exception("job %s crashed", job_id)
                    message = f"internal error: {type(exc).__name__}: {exc}"
                _finish(settings, job_id, "failed", error=message)
                return
            try:
                _store(settings, job_id, started, out)
            except Exception as exc:
                if is_transient(exc):
                    raise  # the database is gone: the sweeper re-dispatches the job once it is back
                log.exception("job %s: storing the result failed", job_id)
                _finish(settings, job_id, "failed", error=f"internal error storing the result: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _store(settings: Settings, job_id: str, started: dict, out: dict) -> None:
    """Stream the checkpoints into the database and create the versioned model, in one transaction."""
    spec = started["spec"]

    def store(session):
        job = job_repo.get(session, job_id=job_id, lock=True)
        if job.attempts != started["attempt"] or job.status not in job_repo.ACTIVE:
            raise JobLost(job_id)
        last = write_file(session, out["last"], media_type=CHECKPOINT_MEDIA_TYPE, chunk_size=settings.chunk_size)
        best = last
        if out["best"] != out["last"]:
            best = write_file(session, out["best"], media_type=CHECKPOINT_MEDIA_TYPE, chunk_size=settings.chunk_size)
        model = model_repo.create(
            session, name=spec.get("model_name") or f"{started['dataset_name']}-{spec['backbone']['arch']}",
            job_id=job_id, arch=spec["backbone"]["arch"], classes=out["classes"], preprocessing=out["preprocessing"],
            metrics=out["metrics"], checkpoint_blob_id=best.id, last_checkpoint_blob_id=last.id,
        )
        _drop_state(session, job)
        job_repo.transition(session, job_id=job_id, to="succeeded", metrics=out["metrics"], model_id=model.id)
        return job.webhook_status

    try:
        webhook = with_retry(settings.sqlalchemy_url, store, deadline_s=settings.db_retry_s, what="storing job")
    except JobLost:
        log.warning("job %s was taken over by another attempt; its result is not stored twice", job_id)
        return
    job_log(settings, job_id, "succeeded")
    _after_terminal(settings, job_id, webhook)


def _finish(settings: Settings, job_id: str, status: str, *, error: str | None = None, partial: Path | None = None,
            reason: str | None = None) -> None:
    """End the job `failed` or `cancelled`, keeping the partial checkpoint if there is one."""

    def finish(session):
        job = job_repo.get(session, job_id=job_id, lock=True)
        fields = {}
        if partial is not None:
            fields["checkpoint_blob_id"] = write_file(session, partial, media_type=CHECKPOINT_MEDIA_TYPE,
                                                      chunk_size=settings.chunk_size).id
        _drop_state(session, job)
        job_repo.transition(session, job_id=job_id, to=status, error=error, reason=reason, **fields)
        return job.webhook_status

    webhook = with_retry(settings.sqlalchemy_url, finish, deadline_s=settings.db_retry_s, what="ending job")
    job_log(settings, job_id, f"{status}: {error or reason}", "warning" if status == "failed" else "info")
    _after_terminal(settings, job_id, webhook)


def _drop_state(session, job: Job) -> None:
    """A finished job needs no training-state checkpoint any more."""
    if job.state_blob_id:
        old, job.state_blob_id = job.state_blob_id, None
        session.flush()
        delete_blob(session, old)


def _after_terminal(settings: Settings, job_id: str, webhook_status: str | None) -> None:
    if webhook_status == "pending":
        from service import dispatch

        dispatch.send_webhook(settings, job_id)
