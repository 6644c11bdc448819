"""Webhook delivery: POST the finished job to its `callback_url`, signed with HMAC-SHA256."""

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from service.db import session_scope
from service.repo import jobs as job_repo
from service.settings import Settings

SIGNATURE_HEADER = "X-Graft-Signature"


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached)."""


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=` + hex HMAC-SHA256 of the body with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(job) -> dict:
    """What the receiver gets: the job's outcome."""
    return {"event": f"job.{job.status}", "job": {
        "id": job.id, "kind": job.kind, "status": job.status, "error": job.error, "model_id": job.model_id,
        "metrics": job.metrics, "attempts": job.attempts,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None}}


def deliver(settings: Settings, job_id: str) -> bool:
    """POST the job's webhook once; True when delivered (or nothing to deliver), `DeliveryFailed` otherwise."""
    with session_scope(settings.sqlalchemy_url) as session:
        job = job_repo.get(session, job_id=job_id)
        url = (job.spec or {}).get("callback_url")
        if not url or job.webhook_status != "pending":
            return True
        body = json.dumps(payload(job), sort_keys=True).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(settings.webhook_secret, body),
        "X-Graft-Event": json.loads(body)["event"], "X-Graft-Delivery": f"{job_id}", "User-Agent": "graft-webhook"})
    try:
        with urllib.request.urlopen(request, timeout=settings.webhook_timeout_s) as response:  # noqa: S310
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"{url}: {exc}") from exc
    if not ok:
        raise DeliveryFailed(f"{url} answered {response.status}")
    mark(settings, job_id, "delivered")
    return True


def mark(settings: Settings, job_id: str, status: str) -> None:
    """Record the webhook's final outcome: delivered or failed."""
    with session_scope(settings.sqlalchemy_url) as session:
        job_repo.get(session, job_id=job_id).webhook_status = status
        job_repo.add_event(session, job_id=job_id, type="log",
                           data={"level": "info" if status == "delivered" else "warning",
                                 "message": f"webhook {status}"})
