"""An ASGI middleware that refuses request bodies over a limit before reading them."""

from service.errors import PROBLEM_BASE, PROBLEM_JSON


SETTING = {"/v1/datasets": "GRAFT_MAX_UPLOAD_BYTES", "/v1/weights": "GRAFT_MAX_WEIGHTS_BYTES"}


class BodyTooLarge(Exception):
    """Raised inside `receive` once a streamed body passes the limit."""


class BodySizeLimit:
    """413 for a declared Content-Length over the limit (nothing read), or as soon as a streamed body passes it."""

    def __init__(self, app, *, limits: dict[str, int]) -> None:
        self.app = app
        self.limits = limits  # path prefix → bytes

    async def __call__(self, scope, receive, send):
        limit = self._limit(scope)
        if limit is None:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(scope, send, limit)
        seen, started = 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._reject(scope, send, limit)

    def _limit(self, scope) -> int | None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return None
        return next((n for prefix, n in self.limits.items() if scope["path"].rstrip("/") == prefix), None)

    @staticmethod
    async def _reject(scope, send, limit: int) -> None:
        import json

        body = json.dumps({"type": PROBLEM_BASE + "payload-too-large", "title": "Payload too large", "status": 413,
                           "detail": f"the request body is larger than the {limit}-byte limit; "
                                     f"send a smaller file or raise {SETTING.get(scope['path'].rstrip('/'), 'the limit')}",
                           "instance": scope["path"], "limit": limit}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
