"""Streaming a stored blob as a download."""

from fastapi.responses import StreamingResponse

from service.blobstore import iter_blob
from service.db import session_scope
from service.settings import Settings
from service.tables import Blob


def blob_download(settings: Settings, blob: Blob, filename: str) -> StreamingResponse:
    """The blob's bytes, streamed chunk by chunk from the database, as an attachment named `filename`."""

    def chunks():
        with session_scope(settings.sqlalchemy_url) as stream_session:
            yield from iter_blob(stream_session, blob.id)

    headers = {"Content-Length": str(blob.size), "Content-Disposition": f'attachment; filename="{filename}"',
               "ETag": f'"{blob.sha256}"'}
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
