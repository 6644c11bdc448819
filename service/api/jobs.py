"""/v1/jobs: submit training jobs and follow them."""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from service import dispatch
from service import jobs as job_service
from service.deps import PageSize, PageToken, SessionDep, SettingsDep
from service.repo import jobs as repo
from service.schemas import EpochMetrics, JobOut, MetricsOut, Page
from service.specs import JobSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create_job(spec: Annotated[JobSpec, Body()], session: SessionDep, settings: SettingsDep, response: Response):
    """Queue a training job; answers 202 with its Location, follow it with GET."""
    job = job_service.submit(session, spec)
    session.commit()
    dispatch.send_job(settings, job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.model_validate(job)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep) -> JobOut:
    """One job: status, progress, final metrics, the model it produced or the error."""
    return JobOut.model_validate(repo.get(session, job_id=job_id))


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def get_metrics(job_id: str, session: SessionDep) -> MetricsOut:
    """Per-epoch metrics, written as each epoch ends."""
    rows = repo.metrics(session, job_id=job_id)
    return MetricsOut(job_id=job_id, epochs=[EpochMetrics.model_validate(r) for r in rows])


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
