"""Handing jobs to the Celery workers (the broker is transport only; the database holds the truth)."""

import logging
from functools import lru_cache

from celery import Celery

from service.settings import Settings

log = logging.getLogger(__name__)
RUN_JOB = "graft.run_job"
VALIDATE_DATASET = "graft.validate_dataset"


@lru_cache(maxsize=4)
def producer(settings: Settings) -> Celery:
    """A Celery app used only to send tasks by name (the API never imports task code)."""
    from workers.celery_app import create_celery

    return create_celery(settings)


def send(settings: Settings, task: str, resource_id: str) -> bool:
    """Send a task for a committed resource; False (it stays pending in the database) if the broker is down."""
    try:
        producer(settings).send_task(task, args=[resource_id], queue=settings.queue, retry=True,
                                     retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
        return True
    except Exception:  # noqa: BLE001 - any broker failure leaves the resource pending in the database
        log.exception("could not send %s(%s) to the broker; it stays pending", task, resource_id)
        return False


def send_job(settings: Settings, job_id: str) -> bool:
    """Send a committed job to the workers."""
    return send(settings, RUN_JOB, job_id)


def send_validation(settings: Settings, dataset_id: str) -> bool:
    """Send a committed dataset to the workers for validation."""
    return send(settings, VALIDATE_DATASET, dataset_id)
