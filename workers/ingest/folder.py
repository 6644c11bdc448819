"""Server-side folder imports: admit a `file://` URI only when it resolves under an allowed import root."""

from pathlib import Path
from urllib.parse import unquote, urlsplit

from workers.ingest.errors import IngestError


def check_import_root(uri: str, allowed_roots: list[Path]) -> Path:
    """The folder a `file:///…` URI names, resolved (links followed); `IngestError` unless under an allowed root."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise IngestError(f"{uri!r} is not a file:///absolute/path URI")
    raw = unquote(parts.path)
    if not raw.startswith("/") or "\x00" in raw:
        raise IngestError(f"{uri!r} does not name an absolute path")
    if not allowed_roots:
        raise IngestError("importing server folders is disabled; list the allowed folders in GRAFT_IMPORT_ROOTS")
    path = Path(raw).resolve()
    if not any(path.is_relative_to(root.resolve()) for root in allowed_roots):
        raise IngestError(f"{raw} is not under the allowed import roots (setting GRAFT_IMPORT_ROOTS)")
    if not path.is_dir():
        raise IngestError(f"{raw} is not an existing folder")
    return path
