"""Job rows: creation, the one place state transitions happen, claims and heartbeats, progress, metrics, events."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.errors import Conflict, NotFound
from service.pagination import paginate
from service.tables import Job, JobEvent, JobMetric, utcnow

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = frozenset({"running", "cancelling"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "queued", "cancelling"}),  # queued: re-dispatched after a lost worker
    "cancelling": frozenset({"cancelled", "failed", "succeeded"}),  # succeeded: it finished before it saw the request
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def create(session: Session, *, kind: str, spec: dict, dataset_id: str, target_dataset_id: str | None = None,
           priority: int = 5, queue: str | None = None) -> Job:
    """Insert a queued job. The caller sends it after commit; should that send be lost, the sweeper re-sends it."""
    job = Job(kind=kind, spec=spec, dataset_id=dataset_id, target_dataset_id=target_dataset_id, status="queued",
              attempts=0, priority=priority, queue=queue, dispatched_at=utcnow())  # sent right after commit
    session.add(job)
    session.flush()
    add_event(session, job_id=job.id, type="status", data={"status": "queued"})
    return job


def get(session: Session, *, job_id: str, lock: bool = False) -> Job:
    """The job with this id (row-locked when `lock`), or `NotFound`."""
    stmt = select(Job).where(Job.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    job = session.scalar(stmt)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return job


def transition(session: Session, *, job_id: str, to: str, reason: str | None = None, **fields) -> Job:
    """Move a job to state `to` if the lifecycle allows it (409 `Conflict` otherwise), timestamped as an event."""
    job = get(session, job_id=job_id, lock=True)
    if to not in TRANSITIONS[job.status]:
        raise Conflict(f"job {job_id} is {job.status}; it cannot become {to}", status_now=job.status)
    now = utcnow()
    if to == "running":
        job.started_at = now
        job.heartbeat_at = now
        job.attempts += 1
    if to == "queued":
        job.dispatched_at = None
    if to in TERMINAL:
        job.finished_at = now
        if (job.spec or {}).get("callback_url"):
            job.webhook_status = "pending"  # the caller sends it after commit; the sweeper if that send is lost
    before, job.status = job.status, to
    for key, value in fields.items():
        setattr(job, key, value)
    session.flush()
    data = {"status": to, "from": before, "attempt": job.attempts}
    if reason or fields.get("error"):
        data["reason"] = reason or fields.get("error")
    add_event(session, job_id=job_id, type="status", data=data)
    return job


def claim(session: Session, *, job_id: str, worker: str, stale_after: timedelta) -> Job | None:
    """Make this worker the job's runner: a queued job, or a running one whose runner stopped heart-beating.

    None when the job must not run here: finished, cancelled, or alive on another worker (a duplicate delivery).
    """
    job = get(session, job_id=job_id, lock=True)
    if job.status == "running" and _stale(job.heartbeat_at, stale_after):
        transition(session, job_id=job_id, to="queued", reason="its worker stopped heart-beating")
    elif job.status == "cancelling" and _stale(job.heartbeat_at, stale_after):
        transition(session, job_id=job_id, to="cancelled", reason="cancelled while its worker was gone")
        return None
    if job.status != "queued":
        return None
    return transition(session, job_id=job_id, to="running", worker=worker, error=None)


def _stale(when: datetime | None, after: timedelta) -> bool:
    return when is None or aware(when) < utcnow() - after


def aware(when: datetime) -> datetime:
    """`when` as a timezone-aware UTC time (SQLite returns naive ones)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def heartbeat(session: Session, *, job_id: str, attempt: int) -> str | None:
    """Refresh the heartbeat of attempt `attempt`; the job's status now, or None if the attempt lost the job."""
    session.execute(update(Job).where(Job.id == job_id, Job.attempts == attempt, Job.status.in_(ACTIVE))
                    .values(heartbeat_at=utcnow()))
    return session.scalar(select(Job.status).where(Job.id == job_id, Job.attempts == attempt,
                                                    Job.status.in_(ACTIVE)))


def mark_dispatched(session: Session, *, job_id: str) -> None:
    """Record that the broker accepted the job's message."""
    session.execute(update(Job).where(Job.id == job_id).values(dispatched_at=utcnow()))


def set_progress(session: Session, *, job_id: str, progress: dict, event: bool = True) -> None:
    """Record where a running job is."""
    job = get(session, job_id=job_id)
    job.progress = progress
    job.heartbeat_at = utcnow()
    if event:
        add_event(session, job_id=job_id, type="progress", data=progress)


def record_epoch(session: Session, *, job_id: str, epoch: int, values: dict) -> None:
    """Store one epoch's metrics; a re-run epoch replaces the earlier row, never duplicates it."""
    session.execute(delete(JobMetric).where(JobMetric.job_id == job_id, JobMetric.epoch == epoch))
    session.add(JobMetric(job_id=job_id, epoch=epoch, values=values))
    add_event(session, job_id=job_id, type="epoch", data={"epoch": epoch, **values})
    session.flush()


def metrics(session: Session, *, job_id: str) -> list[JobMetric]:
    """A job's per-epoch metrics in epoch order."""
    get(session, job_id=job_id)
    return list(session.scalars(select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.epoch)))


def add_event(session: Session, *, job_id: str, type: str, data: dict) -> None:
    """Append one event to the job's stream."""
    session.add(JobEvent(job_id=job_id, type=type, data=data))


def events(session: Session, *, job_id: str, after: int = 0, types: tuple[str, ...] | None = None,
           limit: int = 500) -> list[JobEvent]:
    """The job's events with id > `after`, oldest first."""
    stmt = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
    if types:
        stmt = stmt.where(JobEvent.type.in_(types))
    return list(session.scalars(stmt.order_by(JobEvent.id).limit(limit)))


def page(session: Session, *, page_size: int, page_token: str | None, status: str | None = None):
    """One page of jobs, newest first, optionally of one status."""
    stmt = select(Job)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job, page_size=page_size, page_token=page_token)


def due_for_dispatch(session: Session, *, older_than: timedelta, limit: int = 100) -> list[Job]:
    """Queued jobs never handed to the broker, or handed over longer ago than `older_than` (lost messages)."""
    cutoff = utcnow() - older_than
    stmt = (select(Job).where(Job.status == "queued", (Job.dispatched_at.is_(None)) | (Job.dispatched_at < cutoff))
            .order_by(Job.priority.desc(), Job.created_at).limit(limit).with_for_update(skip_locked=True))
    return list(session.scalars(stmt))


def stale_active(session: Session, *, older_than: timedelta, limit: int = 100) -> list[Job]:
    """Running or cancelling jobs whose worker has not heart-beaten for `older_than`."""
    cutoff = utcnow() - older_than
    stmt = (select(Job).where(Job.status.in_(ACTIVE), (Job.heartbeat_at.is_(None)) | (Job.heartbeat_at < cutoff))
            .limit(limit).with_for_update(skip_locked=True))
    return list(session.scalars(stmt))
