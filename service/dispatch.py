"""Handing jobs to the Celery workers (the broker is transport only; the database holds the truth)."""

import logging
from functools import lru_cache

from celery import Celery

from service.settings import Settings

log = logging.getLogger(__name__)
RUN_JOB = "graft.run_job"


@lru_cache(maxsize=4)
def producer(settings: Settings) -> Celery:
    """A Celery app used only to send tasks by name (the API never imports task code)."""
    from workers.celery_app import create_celery

    return create_celery(settings)


def send_job(settings: Settings, job_id: str) -> bool:
    """Send a committed job to the queue; False (job stays queued for the sweeper) if the broker is down."""
    try:
        producer(settings).send_task(RUN_JOB, args=[job_id], queue=settings.queue, retry=True,
                                     retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
        return True
    except Exception:  # noqa: BLE001 - any broker failure leaves the job queued in the database
        log.exception("could not send job %s to the broker; it stays queued", job_id)
        return False
