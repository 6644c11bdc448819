"""Celery tasks: thin shells that take ids and hand the work to `workers.runner`."""

from celery import shared_task

from service.settings import get_settings
from workers import runner


@shared_task(name="graft.run_job", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(job_id: str) -> None:
    """Run the training job `job_id` (safe to deliver twice: finished jobs are skipped)."""
    runner.run_job(get_settings(), job_id)


@shared_task(name="graft.validate_dataset", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def validate_dataset(dataset_id: str) -> None:
    """Validate dataset `dataset_id` (safe to deliver twice: only a `validating` dataset is processed)."""
    from workers import ingesting

    ingesting.validate_dataset(get_settings(), dataset_id)
