"""FastAPI dependencies as `Annotated` aliases."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from service.db import session_scope
from service.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """A session committed when the request succeeds."""
    with session_scope(settings.sqlalchemy_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
PageSize = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page.")]
