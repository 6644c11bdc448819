"""Handing work to the Celery workers. The database holds the truth; the broker is transport only.

A job is committed as `queued` first and sent afterwards; `dispatched_at` records that the broker took it. The
sweeper (service/sweeper.py) sends again whatever was never sent or whose message was lost, so a failed send
here loses nothing.
"""

import logging
from functools import lru_cache

from celery import Celery

from service.settings import Settings

log = logging.getLogger(__name__)
RUN_JOB = "graft.run_job"
VALIDATE_DATASET = "graft.validate_dataset"
DELIVER_WEBHOOK = "graft.deliver_webhook"
ACCELERATOR_SUFFIX = {"any": "", "gpu": ".gpu", "cpu": ".cpu"}


@lru_cache(maxsize=4)
def producer(settings: Settings) -> Celery:
    """A Celery app used only to send tasks by name (the API never imports task code)."""
    from workers.celery_app import create_celery

    return create_celery(settings)


def job_queue(settings: Settings, accelerator: str) -> str:
    """The queue for jobs that may run on `accelerator` workers: `<queue>`, `<queue>.gpu` or `<queue>.cpu`."""
    return settings.queue + ACCELERATOR_SUFFIX[accelerator]


def send(settings: Settings, task: str, resource_id: str, *, queue: str | None = None, priority: int = 5) -> bool:
    """Send a task for a committed resource; False (it stays pending in the database) if the broker is down."""
    try:
        producer(settings).send_task(task, args=[resource_id], queue=queue or settings.queue, priority=9 - priority,
                                     retry=True,
                                     retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
        return True
    except Exception:  # noqa: BLE001 - any broker failure leaves the resource pending in the database
        log.exception("could not send %s(%s) to the broker; it stays pending", task, resource_id)
        return False


def send_job(settings: Settings, job) -> bool:
    """Send a committed job to the workers that may run it, and record that the broker took it."""
    sent = send(settings, RUN_JOB, job.id, queue=job.queue or settings.queue, priority=job.priority)
    if sent:
        from service.db import session_scope
        from service.repo import jobs as job_repo

        with session_scope(settings.sqlalchemy_url) as session:
            job_repo.mark_dispatched(session, job_id=job.id)
    return sent


def send_validation(settings: Settings, dataset_id: str) -> bool:
    """Send a committed dataset to the workers for validation."""
    return send(settings, VALIDATE_DATASET, dataset_id)


def send_webhook(settings: Settings, job_id: str) -> bool:
    """Ask a worker to deliver the job's webhook."""
    return send(settings, DELIVER_WEBHOOK, job_id)
