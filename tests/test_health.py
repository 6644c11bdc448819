"""Liveness and readiness."""

from fastapi.testclient import TestClient

from service.app import create_app
from tests.services import free_port


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_with_database_and_broker_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_what_is_down(settings):
    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0",
                                       "database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"})
    with TestClient(create_app(dead)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("unreachable") and checks["broker"].startswith("unreachable")
