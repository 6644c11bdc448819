"""The Celery application: Redis broker in production, kombu's SQLAlchemy transport on the embedded default."""

from celery import Celery
from celery.signals import worker_process_init

from service.settings import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`: late acks, one job prefetched per worker, jobs redelivered if a worker dies."""
    app = Celery("graft", broker=settings.celery_broker_url, include=["workers.tasks"])
    # Redis: one list per priority level, served most urgent first (send_task's priority 0 is the most urgent).
    transport = {"visibility_timeout": settings.visibility_timeout_s, "priority_steps": list(range(10)), "sep": ":",
                 "queue_order_strategy": "priority"}
    if settings.broker_prefix:
        transport["global_keyprefix"] = settings.broker_prefix
    if settings.celery_broker_url.startswith("sqla+"):
        transport = {}  # kombu's SQLAlchemy transport hands every option to create_engine()
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_track_started=False,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        worker_max_tasks_per_child=50,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


@worker_process_init.connect
def _limit_threads(**_kwargs) -> None:
    """Each worker child uses GRAFT_TORCH_THREADS CPU threads, if set."""
    threads = get_settings().torch_threads
    if threads:
        import torch

        torch.set_num_threads(threads)


_app: Celery | None = None


def get_app() -> Celery:
    """The worker process's Celery app, built from the process settings on first use."""
    global _app
    if _app is None:
        _app = create_celery(get_settings())
    return _app
