"""The sweeper: PostgreSQL is the source of truth, the broker only transport.

Every GRAFT_SWEEP_INTERVAL_S it
- sends again each queued job that never reached the broker, or whose message is gone (its queue in the broker is
  empty although the job was sent more than GRAFT_REDISPATCH_AFTER_S ago: a flushed or restarted broker);
- puts back in the queue each running job whose worker stopped heart-beating for GRAFT_HEARTBEAT_TIMEOUT_S (killed,
  out of memory, machine gone), so it resumes from its last training-state checkpoint on another worker;
- ends as cancelled a `cancelling` job whose worker is gone;
- sends again webhooks of finished jobs still pending after GRAFT_REDISPATCH_AFTER_S.
It runs as a thread of every API process (several sweepers are safe: rows are locked with SKIP LOCKED, and a job
delivered twice runs once) or alone as `graft sweeper`.
"""

import logging
import threading
from datetime import timedelta

from sqlalchemy import select

from service import dispatch
from service.db import session_scope
from service.repo import jobs as job_repo
from service.settings import Settings
from service.tables import Job, utcnow

log = logging.getLogger(__name__)


def queue_sizes(settings: Settings, queues: set[str]) -> dict[str, int]:
    """Messages waiting in each broker queue (0 for a queue the broker does not know, e.g. after a flush)."""
    sizes = {}
    app = dispatch.producer(settings)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                sizes[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except Exception:  # noqa: BLE001 - unknown queue: nothing waits in it
                sizes[queue] = 0
                channel = conn.channel()
    return sizes


def sweep(settings: Settings) -> dict[str, int]:
    """One pass; returns how many jobs it re-dispatched, requeued, cancelled, and webhooks it resent."""
    grace = timedelta(seconds=settings.redispatch_after_s)
    requeued, cancelled = [], 0
    with session_scope(settings.sqlalchemy_url) as session:
        for job in job_repo.stale_active(session, older_than=timedelta(seconds=settings.heartbeat_timeout_s)):
            if job.status == "running":
                job_repo.transition(session, job_id=job.id, to="queued", reason=(
                    f"worker {job.worker} stopped heart-beating for {settings.heartbeat_timeout_s:g}s; re-dispatched "
                    "to resume from its last checkpoint"))
                requeued.append(job.id)
            else:
                job_repo.transition(session, job_id=job.id, to="cancelled", reason="cancelled; its worker was gone")
                cancelled += 1
        due = job_repo.due_for_dispatch(session, older_than=timedelta(0))
        candidates = [(j.id, j.queue or settings.queue, j.priority, j.dispatched_at) for j in due]
        webhooks = list(session.scalars(select(Job.id).where(Job.webhook_status == "pending",
                                                             Job.finished_at < utcnow() - grace).limit(100)))
    sizes = queue_sizes(settings, {q for _, q, _, at in candidates if at is not None}) if candidates else {}
    sent = 0
    for job_id, queue, priority, dispatched_at in candidates:
        lost = dispatched_at is None or (job_id in requeued) or (
            sizes.get(queue, 0) == 0 and job_repo.aware(dispatched_at) < utcnow() - grace)
        if lost:
            sent += dispatch.send_job(settings, _Ref(job_id, queue, priority))
    for job_id in webhooks:
        dispatch.send_webhook(settings, job_id)
    counts = {"dispatched": sent, "requeued": len(requeued), "cancelled": cancelled, "webhooks": len(webhooks)}
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


class _Ref:
    """The fields of a job `dispatch.send_job` needs."""

    def __init__(self, job_id: str, queue: str, priority: int) -> None:
        self.id, self.queue, self.priority = job_id, queue, priority


class Sweeper:
    """`sweep` every `settings.sweep_interval_s` on a daemon thread, until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graft-sweeper", daemon=True)

    def start(self) -> "Sweeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                sweep(self.settings)
            except Exception:  # noqa: BLE001 - a database or broker outage: try again next time
                log.warning("sweep failed; retrying in %ss", self.settings.sweep_interval_s, exc_info=True)
