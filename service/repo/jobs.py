"""Job rows: creation, the one place state transitions happen, progress and per-epoch metrics."""

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.errors import Conflict, NotFound
from service.pagination import paginate
from service.tables import Job, JobMetric, utcnow

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "queued"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def create(session: Session, *, kind: str, spec: dict, dataset_id: str) -> Job:
    """Insert a queued job."""
    job = Job(kind=kind, spec=spec, dataset_id=dataset_id, status="queued", attempts=0)
    session.add(job)
    session.flush()
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


def transition(session: Session, *, job_id: str, to: str, **fields) -> Job:
    """Move a job to state `to` if the lifecycle allows it (409 `Conflict` otherwise), timestamping it."""
    job = get(session, job_id=job_id, lock=True)
    if to not in TRANSITIONS[job.status]:
        raise Conflict(f"job {job_id} is {job.status}; it cannot become {to}", status_now=job.status)
    now = utcnow()
    if to == "running":
        job.started_at = now
        job.attempts += 1
    if to in TERMINAL:
        job.finished_at = now
    job.status = to
    for key, value in fields.items():
        setattr(job, key, value)
    session.flush()
    return job


def set_progress(session: Session, *, job_id: str, progress: dict) -> None:
    """Record where a running job is."""
    job = get(session, job_id=job_id)
    job.progress = progress


def record_epoch(session: Session, *, job_id: str, epoch: int, values: dict) -> None:
    """Store one epoch's metrics; a re-run epoch replaces the earlier row, never duplicates it."""
    session.execute(delete(JobMetric).where(JobMetric.job_id == job_id, JobMetric.epoch == epoch))
    session.add(JobMetric(job_id=job_id, epoch=epoch, values=values))
    session.flush()


def metrics(session: Session, *, job_id: str) -> list[JobMetric]:
    """A job's per-epoch metrics in epoch order."""
    get(session, job_id=job_id)
    return list(session.scalars(select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.epoch)))


def page(session: Session, *, page_size: int, page_token: str | None, status: str | None = None):
    """One page of jobs, newest first, optionally of one status."""
    stmt = select(Job)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job, page_size=page_size, page_token=page_token)
