"""`graft up` on the embedded default: SQLite and kombu's SQLAlchemy transport, no servers, state kept."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.digits_files import digit_files
from tests.services import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent


def start_up(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAFT_")}
    env |= {"GRAFT_HOME": str(home), "GRAFT_PORT": str(port), "GRAFT_PROGRESS_INTERVAL_S": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "up"], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    assert wait_port("127.0.0.1", port, 90), log.read_text()[-3000:]
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_job(http: httpx.Client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.5)
    raise TimeoutError(job)


def test_embedded_default_runs_the_whole_path_and_keeps_state(tmp_path):
    home, port, log = tmp_path / "var", free_port(), tmp_path / "up.log"
    proc = start_up(home, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            assert http.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}
            dataset = http.post("/v1/datasets", json={"name": "digits", "source": {"builtin": "digits"}}).json()
            created = http.post("/v1/jobs", json={"kind": "finetune", "dataset": dataset["id"], "epochs": 2,
                                                  "image_size": 16})
            assert created.status_code == 202
            job = wait_job(http, created.json()["id"])
            assert job["status"] == "succeeded", job["error"] or log.read_text()[-3000:]
            assert len(http.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]) == 2
            name, data, label = digit_files([42])[0]
            answer = http.post(f"/v1/models/{job['model_id']}/predict", files=[("files", (name, data))]).json()
            assert len(answer["predictions"]) == 1 and len(answer["predictions"][0]["top"]) == 5
    finally:
        stop(proc)
    assert (home / "graft.db").exists() and (home / "broker.db").exists()

    proc = start_up(home, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            again = http.get(f"/v1/jobs/{job['id']}").json()
            assert again["status"] == "succeeded" and again["model_id"] == job["model_id"]
            assert http.get(f"/v1/models/{job['model_id']}/checkpoint").status_code == 200
    finally:
        stop(proc)
