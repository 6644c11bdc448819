"""Database engine and sessions (SQLAlchemy 2.0), one engine per URL and process."""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """The engine for `url`; SQLite gets WAL mode and foreign keys, PostgreSQL a pre-pinged pool."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@lru_cache(maxsize=8)
def get_sessionmaker(url: str) -> sessionmaker[Session]:
    """A session factory bound to the engine for `url`."""
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


TRANSIENT = (OperationalError, InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """A lost or refused database connection (worth retrying), as opposed to a bug or a constraint."""
    return isinstance(exc, TRANSIENT) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def with_retry(url: str, work: Callable[[Session], T], *, deadline_s: float, what: str = "database write") -> T:
    """Run `work(session)` in its own transaction, retrying transient connection errors for up to `deadline_s`."""
    give_up, delay = time.monotonic() + deadline_s, 0.5
    while True:
        try:
            with session_scope(url) as session:
                return work(session)
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > give_up:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
