"""One error shape for the whole API: RFC 9457 problem details (`application/problem+json`)."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://graft.dev/problems/"


class GraftError(Exception):
    """A failure the client caused or must know about; subclasses set the HTTP status and problem type."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra


class NotFound(GraftError):
    status, slug, title = 404, "not-found", "Resource not found"


class InvalidInput(GraftError):
    status, slug, title = 422, "validation-error", "Invalid request"


class UnsupportedMedia(GraftError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class PayloadTooLarge(GraftError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class Conflict(GraftError):
    status, slug, title = 409, "conflict", "Conflict"


class Unavailable(GraftError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


def field_error(field: str, message: str) -> InvalidInput:
    """A 422 about one named field."""
    return InvalidInput(f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem(status: int, slug: str, title: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, "instance": instance}
    body.update({k: v for k, v in extra.items() if v not in (None, [])})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _loc(loc: tuple) -> str:
    """A dotted field path without FastAPI's `body` prefix or the job-kind tag pydantic adds for unions."""
    from service.specs import JOB_KINDS

    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
        if parts and parts[0] in JOB_KINDS:
            parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Map every error the API can raise to problem+json."""

    @app.exception_handler(GraftError)
    async def _graft(request: Request, exc: GraftError) -> JSONResponse:
        return problem(exc.status, exc.slug, exc.title, exc.detail, request.url.path, errors=exc.errors, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _loc(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "validation-error", "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), request.url.path)


def install_database_errors(app: FastAPI) -> None:
    """A database that cannot be reached answers 503, so clients retry instead of seeing a crash."""
    from sqlalchemy.exc import DBAPIError

    @app.exception_handler(DBAPIError)
    async def _db(request: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated and not _is_connection_error(exc):
            raise exc
        return problem(503, "service-unavailable", "Database unavailable",
                       "the database cannot be reached right now; retry shortly", request.url.path)


def _is_connection_error(exc: Exception) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError))
