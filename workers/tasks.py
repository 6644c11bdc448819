"""Celery tasks: thin shells that take ids and hand the work to `workers.runner` and friends."""

from celery import shared_task

from service.settings import get_settings
from workers import runner


@shared_task(bind=True, name="graft.run_job", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(self, job_id: str) -> None:
    """Run the training job `job_id` (safe to deliver twice: only a queued job, or one whose worker is gone, runs)."""
    runner.run_job(get_settings(), job_id, worker=self.request.hostname)


@shared_task(name="graft.validate_dataset", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def validate_dataset(dataset_id: str) -> None:
    """Validate dataset `dataset_id` (safe to deliver twice: only a `validating` dataset is processed)."""
    from workers import ingesting

    ingesting.validate_dataset(get_settings(), dataset_id)


@shared_task(bind=True, name="graft.deliver_webhook", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             max_retries=None)
def deliver_webhook(self, job_id: str) -> None:
    """POST the job's webhook; on failure retry with exponential backoff up to GRAFT_WEBHOOK_MAX_ATTEMPTS."""
    from workers import webhooks

    settings = get_settings()
    try:
        webhooks.deliver(settings, job_id)
    except webhooks.DeliveryFailed:
        if self.request.retries + 1 >= settings.webhook_max_attempts:
            webhooks.mark(settings, job_id, "failed")
            return
        raise self.retry(countdown=settings.webhook_backoff_s * 2 ** self.request.retries) from None
