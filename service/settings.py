"""Graft's configuration: one typed settings object, read from `GRAFT_*` environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Graft has; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="GRAFT_", env_file=".env", extra="ignore", frozen=True)

    home: Path = Field(Path("var"), description="Data directory for the embedded default (SQLite, broker, caches).")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite under GRAFT_HOME.")
    broker_url: str | None = Field(None, description="Celery broker URL; default: embedded SQLite transport.")
    broker_prefix: str = Field("", description="Prefix for every broker key (isolates several Graft installs on one Redis).")
    queue: str = Field("graft", description="Celery queue that jobs are sent to and workers consume.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    device: str = Field("auto", description="Worker device: auto, cpu, cuda or cuda:N.")
    chunk_size: int = Field(1 << 20, ge=4096, description="Bytes per stored checkpoint chunk.")
    predict_max_files: int = Field(64, ge=1, description="Most images one predict request may carry.")
    predict_max_bytes: int = Field(20 << 20, ge=1024, description="Largest image file predict accepts, in bytes.")
    predictor_cache_size: int = Field(4, ge=1, description="Models kept loaded in the API process for predict.")
    progress_interval_s: float = Field(1.0, ge=0, description="Least seconds between two progress writes of a job.")
    worker_concurrency: int = Field(1, ge=1, description="Jobs one worker process runs at once.")
    torch_threads: int = Field(
        0, ge=0, description="CPU threads each job's PyTorch uses (0: PyTorch's default, all cores). Set it when "
        "several workers share a machine's CPU: oversubscribed cores slow every job down many times over.",
    )
    visibility_timeout_s: int = Field(6 * 3600, ge=60, description="Redis: seconds before an unacked job is redelivered.")
    weights_download: bool = Field(
        True, description="Let torchvision download weights missing from $TORCH_HOME (off: fail with where to put them)."
    )
    max_weights_bytes: int = Field(2 << 30, ge=1024, description="Largest weights file POST /v1/weights accepts.")
    max_upload_bytes: int = Field(2 << 30, ge=1024, description="Largest dataset archive POST /v1/datasets accepts.")
    import_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        (), description="Server folders datasets may be imported from (comma-separated)."
    )
    import_uris: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Object-storage URI prefixes datasets may be imported from through fsspec (comma-separated, "
        "e.g. s3://my-bucket/datasets/; s3:// needs s3fs installed and its usual credentials).",
    )
    log_level: str = "info"
    heartbeat_interval_s: float = Field(
        1.0, gt=0, description="Seconds between two heartbeats of a running job (also how often it checks for cancel)."
    )
    heartbeat_timeout_s: float = Field(
        60.0, gt=0, description="A running job whose worker has not heart-beaten for this long is re-dispatched."
    )
    redispatch_after_s: float = Field(
        30.0, gt=0, description="A queued job sent this long ago is sent again when its broker queue is empty "
        "(the message was lost: a flushed or restarted broker).",
    )
    sweep_interval_s: float = Field(
        5.0, ge=0, description="Seconds between two sweeps of the API's dispatcher for lost jobs (0: no sweeper)."
    )
    db_retry_s: float = Field(
        120.0, ge=0, description="How long a worker retries database writes while the database is unreachable."
    )
    webhook_secret: str = Field("", description="HMAC-SHA256 key of the X-Graft-Signature header on webhook calls.")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="Deliveries tried per webhook (backoff between).")
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook delivery.")
    webhook_backoff_s: float = Field(2.0, gt=0, description="Wait before the first webhook retry (doubles each time).")

    @field_validator("import_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):
        if isinstance(value, str):
            return tuple(Path(p.strip()) for p in value.split(",") if p.strip())
        return value

    @field_validator("import_uris", mode="before")
    @classmethod
    def _split_uris(cls, value):
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in force (embedded SQLite when none is configured)."""
        return self.database_url or f"sqlite:///{self.home / 'graft.db'}"

    @property
    def celery_broker_url(self) -> str:
        """The broker URL in force (kombu's SQLAlchemy transport on SQLite when none is configured)."""
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.db'}"

    @property
    def cache_dir(self) -> Path:
        """Local cache for decoded datasets and downloaded checkpoints."""
        return self.home / "cache"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, built once on first use."""
    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
