"""Jobs survive faults, on the real services: a killed worker, a flushed broker, a restarted database, a burst of
jobs on two workers; and they can be cancelled, followed as Server-Sent Events, and created idempotently."""

import hashlib
import hmac
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import redis
from fastapi.testclient import TestClient
from safetensors import safe_open

from service.app import create_app
from service.migrate import upgrade
from tests.conftest import RUN_ID, WorkerProcess, wait_for_job
from tests.services import PrivatePostgres
from tests.test_bad_input import assert_problem


@pytest.fixture(scope="module")
def fault_settings(settings):
    """This module's own queue, so only the workers it starts (and kills) take its jobs."""
    return settings.model_copy(update={"queue": f"graft-fault-{RUN_ID}"})


@pytest.fixture(scope="module")
def api(fault_settings):
    with TestClient(create_app(fault_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def two_digits(api) -> dict:
    response = api.post("/v1/datasets", json={"name": "digits-0-1", "source": {"builtin": "digits",
                                                                             "classes": ["0", "1"]}})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def digits(api) -> dict:
    response = api.post("/v1/datasets", json={"name": "digits", "source": {"builtin": "digits"}})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def start_worker(fault_settings, torch_home, tmp_path):
    started = []

    def start(name: str = "w", settings=None) -> WorkerProcess:
        proc = WorkerProcess(settings or fault_settings, tmp_path / f"{name}-{len(started)}.log",
                             torch_home=torch_home).wait_ready()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def spec(dataset_id: str, **overrides) -> dict:
    return {"kind": "finetune", "dataset": dataset_id, "backbone": {"arch": "resnet18", "weights": "none"},
            "epochs": 5, "batch_size": 64, "image_size": 16, "optimizer": {"lr": 0.05}, "seed": 0} | overrides


def tiny(dataset_id: str, **overrides) -> dict:
    return spec(dataset_id, backbone={"arch": "shufflenet_v2_x0_5", "weights": "none"}, epochs=1, batch_size=8,
                image_size=32, train_per_class=4) | overrides


def wait_until(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def epochs_of(api, job_id: str) -> list[int]:
    return [e["epoch"] for e in api.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"]]


def statuses(api, job_id: str) -> list[dict]:
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        body = "".join(response.iter_text())
    return [json.loads(block.split("data: ", 1)[1]) for block in body.split("\n\n")
            if "event: status" in block]


def test_killed_worker_is_replaced_and_the_job_resumes_from_its_checkpoint(api, digits, start_worker):
    first = start_worker("first")
    job = api.post("/v1/jobs", json=spec(digits["id"])).json()

    def mid_epoch_three():
        body = api.get(f"/v1/jobs/{job['id']}").json()
        return len(epochs_of(api, job["id"])) >= 2 and (body["progress"] or {}).get("epoch") == 3
    wait_until(mid_epoch_three, 300, "job in its third epoch")
    os.killpg(first.proc.pid, signal.SIGKILL)  # worker and its child, mid-epoch, no chance to clean up
    first.proc.wait(10)

    start_worker("second")
    done = wait_for_job(api, job["id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    assert epochs_of(api, job["id"]) == [1, 2, 3, 4, 5]  # no epoch recorded twice
    logs = [line["message"] for line in api.get(f"/v1/jobs/{job['id']}/logs").json()["lines"]]
    assert any("attempt 2 resumes after epoch 2" in m for m in logs), logs
    lost = [s for s in statuses(api, job["id"]) if s["status"] == "queued" and s.get("from") == "running"]
    assert lost and "stopped heart-beating" in lost[0]["reason"]

    # In line with an uninterrupted run of the same spec (on the CPU it is the same run).
    again = wait_for_job(api, api.post("/v1/jobs", json=spec(digits["id"], model_name="uninterrupted")).json()["id"],
                         timeout=300)
    assert again["status"] == "succeeded" and again["attempts"] == 1
    assert abs(done["metrics"]["val_accuracy"] - again["metrics"]["val_accuracy"]) <= 0.01


def test_flushed_broker_loses_no_job(api, fault_settings, two_digits, start_worker):
    start_worker()
    jobs = [api.post("/v1/jobs", json=spec(two_digits["id"], epochs=3, model_name=f"flush-{i}")).json()
            for i in range(4)]
    wait_until(lambda: api.get(f"/v1/jobs/{jobs[0]['id']}").json()["status"] == "running", 120, "a running job")
    client = redis.Redis.from_url(fault_settings.celery_broker_url)
    flushed = [client.delete(key) for key in client.scan_iter(match=f"{fault_settings.broker_prefix}*")]
    assert flushed, "the broker held this run's messages"
    for job in jobs:
        done = wait_for_job(api, job["id"], timeout=300)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 1


def test_database_restart_during_a_job(fault_settings, digits, start_worker, tmp_path):
    pg = PrivatePostgres().start()
    try:
        settings = fault_settings.model_copy(update={"database_url": pg.url, "queue": f"graft-pg-{RUN_ID}"})
        upgrade(settings.sqlalchemy_url)
        start_worker("pg", settings)
        with TestClient(create_app(settings)) as api:
            dataset = api.post("/v1/datasets", json={"name": "digits", "source": {"builtin": "digits"}}).json()
            job = api.post("/v1/jobs", json=spec(dataset["id"], epochs=4)).json()
            wait_until(lambda: len(epochs_of(api, job["id"])) >= 1, 300, "a finished epoch")
            pg.stop()
            down = api.get(f"/v1/jobs/{job['id']}")
            assert_problem(down, 503, "database")
            time.sleep(2)
            pg.start()
            wait_until(lambda: api.get(f"/v1/jobs/{job['id']}").status_code == 200, 60, "the API recovers")
            done = wait_for_job(api, job["id"], timeout=300)
            assert done["status"] == "succeeded", done["error"]
            assert epochs_of(api, job["id"]) == [1, 2, 3, 4]
    finally:
        pg.destroy()


def test_two_hundred_tiny_jobs_on_two_workers(api, two_digits, start_worker):
    one_thread = api.app.state.settings.model_copy(update={"torch_threads": 1})  # two workers share two cores
    start_worker("a", one_thread), start_worker("b", one_thread)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: api.post("/v1/jobs", json=tiny(two_digits["id"], seed=i)), range(200)))
    assert all(r.status_code == 202 for r in responses)
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 200
    deadline = time.monotonic() + 900
    for job_id in ids:
        done = wait_for_job(api, job_id, timeout=max(1, deadline - time.monotonic()))
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 1  # none ran twice
        assert [s["status"] for s in statuses(api, job_id)] == ["queued", "running", "succeeded"]
    workers = {api.get(f"/v1/jobs/{job_id}").json()["worker"] for job_id in ids}
    assert len(workers) == 2 and all(w.startswith("graft-cpu-") for w in workers)  # both workers took jobs


def test_cancel_a_queued_job_and_a_running_one(api, digits, start_worker):
    # No GPU worker exists, so a GPU-only job stays queued.
    queued = api.post("/v1/jobs", json=spec(digits["id"], accelerator="gpu")).json()
    assert queued["queue"].endswith(".gpu")
    cancelled = api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert_problem(api.post(f"/v1/jobs/{queued['id']}/cancel"), 409, "cancelled")

    start_worker()
    running = api.post("/v1/jobs", json=spec(digits["id"], epochs=50)).json()
    wait_until(lambda: (api.get(f"/v1/jobs/{running['id']}").json()["progress"] or {}).get("step", 0) > 3, 120,
               "training steps")
    asked = time.monotonic()
    assert api.post(f"/v1/jobs/{running['id']}/cancel").json()["status"] in ("cancelling", "cancelled")
    done = wait_for_job(api, running["id"], timeout=60)
    assert done["status"] == "cancelled" and time.monotonic() - asked < 20
    assert done["has_checkpoint"] and done["model_id"] is None
    download = api.get(f"/v1/jobs/{running['id']}/checkpoint")
    assert download.status_code == 200
    path = f"/tmp/graft-cancelled-{RUN_ID}.safetensors"
    with open(path, "wb") as fh:
        fh.write(download.content)
    with safe_open(path, framework="pt") as fh:
        assert fh.get_tensor("fc.weight").shape == (10, 512)
        assert json.loads(fh.metadata()["graft"])["partial"] is True
    os.unlink(path)
    assert [s["status"] for s in statuses(api, running["id"])][-2:] == ["cancelling", "cancelled"]


def test_events_stream_and_resume_with_last_event_id(api, two_digits, start_worker):
    start_worker()
    job = api.post("/v1/jobs", json=tiny(two_digits["id"], epochs=2)).json()
    with api.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    blocks = [b for b in body.split("\n\n") if b.startswith("id: ")]
    ids = [int(b.split("\n")[0][4:]) for b in blocks]
    kinds = [b.split("\n")[1][7:] for b in blocks]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {"status", "progress", "epoch", "log"} <= set(kinds)
    last_status = [json.loads(b.split("data: ", 1)[1]) for b, k in zip(blocks, kinds, strict=True) if k == "status"][-1]
    assert last_status["status"] == "succeeded"
    middle = ids[len(ids) // 2]
    with api.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(middle)}) as response:
        rest = [b for b in "".join(response.iter_text()).split("\n\n") if b.startswith("id: ")]
    assert [int(b.split("\n")[0][4:]) for b in rest] == [i for i in ids if i > middle]


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(api, digits):
    body = spec(digits["id"], accelerator="gpu")  # stays queued: nothing trains
    key = f"retry-{RUN_ID}"
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    again = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = api.post("/v1/jobs", json=body | {"epochs": 7}, headers={"Idempotency-Key": key})
    assert_problem(other, 409, "Idempotency-Key")
    api.post(f"/v1/jobs/{first.json()['id']}/cancel")


class Receiver(BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append((dict(self.headers), body))
        self.send_response(500 if len(Receiver.calls) == 1 else 200)  # the first delivery fails
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_is_signed_and_retried_until_delivered(api, fault_settings, two_digits, start_worker):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start_worker()
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job = wait_for_job(api, api.post("/v1/jobs", json=tiny(two_digits["id"], callback_url=url)).json()["id"])
        wait_until(lambda: len(Receiver.calls) >= 2, 60, "a retried webhook")
        for headers, body in Receiver.calls:
            expected = "sha256=" + hmac.new(fault_settings.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Graft-Signature"] == expected
            assert json.loads(body)["job"]["id"] == job["id"] and json.loads(body)["event"] == "job.succeeded"
        wait_until(lambda: api.get(f"/v1/jobs/{job['id']}").json()["webhook_status"] == "delivered", 30, "delivered")
    finally:
        server.shutdown()
