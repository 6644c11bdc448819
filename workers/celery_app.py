"""The Celery application: Redis broker in production, kombu's SQLAlchemy transport on the embedded default."""

from celery import Celery

from service.settings import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`: late acks, one job prefetched per worker, jobs redelivered if a worker dies."""
    app = Celery("graft", broker=settings.celery_broker_url, include=["workers.tasks"])
    transport = {"visibility_timeout": settings.visibility_timeout_s}
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


_app: Celery | None = None


def get_app() -> Celery:
    """The worker process's Celery app, built from the process settings on first use."""
    global _app
    if _app is None:
        _app = create_celery(get_settings())
    return _app
