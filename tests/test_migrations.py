"""The schema is made by Alembic migrations, and they agree with the ORM models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from service.migrate import upgrade
from service.tables import Base


def _diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return diff


def test_models_match_migrations_on_postgres(database_url):
    assert _diff(database_url) == []


def test_models_match_migrations_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'graft.db'}"
    upgrade(url)
    assert _diff(url) == []


def test_upgrade_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'graft.db'}"
    upgrade(url)
    upgrade(url)
    assert _diff(url) == []
