"""Keyset pagination with opaque page tokens over (created_at, id)."""

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_

from service.errors import field_error


def encode_token(created_at: datetime, row_id: str) -> str:
    """An opaque token pointing just past the row (created_at, id)."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[datetime, str]:
    """Inverse of `encode_token`; a 422 naming `page_token` for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError) as exc:
        raise field_error("page_token", "is not a token this API issued; pass next_page_token unchanged") from exc


def paginate(session, stmt: Select, table: Any, *, page_size: int, page_token: str | None) -> tuple[list, str | None]:
    """Rows of `stmt` newest first, one page, and the token of the next page (None on the last)."""
    if page_token:
        created, row_id = decode_token(page_token)
        stmt = stmt.where(
            or_(table.created_at < created, and_(table.created_at == created, table.id < row_id))
        )
    stmt = stmt.order_by(table.created_at.desc(), table.id.desc()).limit(page_size + 1)
    rows = list(session.scalars(stmt))
    if len(rows) <= page_size:
        return rows, None
    last = rows[page_size - 1]
    return rows[:page_size], encode_token(last.created_at, last.id)
