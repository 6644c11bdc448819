"""/v1/jobs: submit training jobs, follow them (metrics, events, logs), cancel them."""

import json
import time
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from service import dispatch
from service import jobs as job_service
from service.api.files import blob_download
from service.db import session_scope
from service.deps import PageSize, PageToken, SessionDep, SettingsDep
from service.errors import Conflict, NotFound
from service.repo import jobs as repo
from service.schemas import EpochMetrics, JobOut, LogLine, LogsOut, MetricsOut, Page
from service.specs import JobSpec
from service.tables import Blob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255,
           description="Retry-safe creation: the same key and body return the same job; another body is a 409."),
]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create_job(spec: Annotated[JobSpec, Body()], session: SessionDep, settings: SettingsDep, response: Response,
               idempotency_key: IdempotencyKeyHeader = None):
    """Queue a training job; answers 202 with its Location, follow it with GET or /events."""
    job, created = job_service.submit(session, settings, spec, idempotency_key)
    session.commit()
    if created:
        dispatch.send_job(settings, job)  # if this fails, the sweeper sends it: the job is committed
    else:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.model_validate(repo.get(session, job_id=job.id))


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep) -> JobOut:
    """One job: status, progress, final metrics, the model it produced or the error."""
    return JobOut.model_validate(repo.get(session, job_id=job_id))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep, settings: SettingsDep, response: Response) -> JobOut:
    """Cancel a job: a queued one at once (`cancelled`), a running one within a training step (`cancelling` →
    `cancelled`, what it trained so far kept as GET /v1/jobs/{id}/checkpoint). 409 for a finished job."""
    job = repo.get(session, job_id=job_id, lock=True)
    if job.status == "queued":
        job = repo.transition(session, job_id=job_id, to="cancelled", reason="cancelled before it started")
    elif job.status == "running":
        job = repo.transition(session, job_id=job_id, to="cancelling", reason="cancel requested")
    elif job.status != "cancelling":
        raise Conflict(f"job {job_id} is {job.status}; only a queued or running job can be cancelled",
                       status_now=job.status)
    session.commit()
    if job.webhook_status == "pending":
        dispatch.send_webhook(settings, job_id)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return JobOut.model_validate(job)


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def get_metrics(job_id: str, session: SessionDep) -> MetricsOut:
    """Per-epoch metrics, written as each epoch ends."""
    rows = repo.metrics(session, job_id=job_id)
    return MetricsOut(job_id=job_id, epochs=[EpochMetrics.model_validate(r) for r in rows])


@router.get("/{job_id}/logs", response_model=LogsOut)
def get_logs(job_id: str, session: SessionDep,
             after: Annotated[int, Query(ge=0, description="Only lines after this id (the last one you saw).")] = 0,
             limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> LogsOut:
    """The job's log lines from the worker (and the service), oldest first."""
    repo.get(session, job_id=job_id)
    rows = repo.events(session, job_id=job_id, after=after, types=("log",), limit=limit)
    return LogsOut(job_id=job_id, lines=[LogLine(id=r.id, time=r.created_at, level=r.data.get("level", "info"),
                                                 message=r.data.get("message", "")) for r in rows])


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
def stream_events(job_id: str, request: Request, session: SessionDep, settings: SettingsDep,
                  last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
                  after: Annotated[int, Query(ge=0, description="Same as Last-Event-ID.")] = 0) -> StreamingResponse:
    """Server-Sent Events: `status`, `progress`, `epoch` and `log` events, each with its id; reconnect with
    Last-Event-ID to resume. The stream ends after the job's terminal status."""
    repo.get(session, job_id=job_id)
    start = max(last_event_id or 0, after)

    def events():
        cursor, last_write = start, time.monotonic()
        while True:
            with session_scope(settings.sqlalchemy_url) as s:
                rows = repo.events(s, job_id=job_id, after=cursor)
                finished = repo.get(s, job_id=job_id).status in repo.TERMINAL
                out = [(r.id, r.type, r.data) for r in rows]
            for event_id, kind, data in out:
                cursor = event_id
                yield f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
            if out:
                last_write = time.monotonic()
            elif finished:
                return
            elif time.monotonic() - last_write > 15:
                last_write = time.monotonic()
                yield ": keep-alive\n\n"
            if not out:
                time.sleep(0.25)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{job_id}/checkpoint", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_job_checkpoint(job_id: str, session: SessionDep, settings: SettingsDep) -> StreamingResponse:
    """The weights a cancelled or failed job had trained when it stopped (safetensors, like a model's)."""
    job = repo.get(session, job_id=job_id)
    if job.checkpoint_blob_id is None:
        hint = (f"its model's: GET /v1/models/{job.model_id}/checkpoint" if job.model_id
                else "none was saved (the job stopped before its first training step)")
        raise NotFound(f"job {job_id} has no checkpoint of its own; {hint}")
    return blob_download(settings, session.get(Blob, job.checkpoint_blob_id), f"job-{job_id}.safetensors")


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep,
    page_size: PageSize = 50,
    page_token: PageToken = None,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
) -> Page[JobOut]:
    """Jobs, newest first, paginated; `status` filters."""
    rows, token = repo.page(session, page_size=page_size, page_token=page_token, status=status_filter)
    return Page(items=[JobOut.model_validate(r) for r in rows], next_page_token=token)
