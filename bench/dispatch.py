"""Dispatch: submit → running latency with an idle worker, and API job-submission throughput, on the real services.

Run: .venv/bin/python bench/dispatch.py [--latency-jobs 20] [--submit-jobs 300]
Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (as the tests do). It creates a private database and
Redis key space, starts `graft api` (uvicorn, one process) and one `graft worker` as subprocesses, and talks HTTP.
- Latency: one tiny job at a time (shufflenet_v2_x0_5, 1 epoch on 8 images), the worker idle; the server's own
  timestamps give created_at → started_at (committed, sent to Redis, taken by the worker, claimed in PostgreSQL).
- Throughput: jobs that only GPU workers may take (none runs here, so nothing trains meanwhile) POSTed by 1 and by 8
  concurrent clients; jobs/s as the clients see it (validation, insert, commit, send to Redis, response).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import common
import httpx
import psycopg
import redis

from service.migrate import upgrade


def env_for(db_url: str, prefix: str, home: str, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAFT_")}
    env.update({"GRAFT_DATABASE_URL": db_url, "GRAFT_BROKER_URL": "redis://127.0.0.1:6379/0",
                "GRAFT_BROKER_PREFIX": prefix, "GRAFT_QUEUE": f"bench-{prefix}", "GRAFT_HOME": home,
                "GRAFT_PORT": str(port), "GRAFT_LOG_LEVEL": "warning", "GRAFT_PROGRESS_INTERVAL_S": "1"})
    return env


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument("--submit-jobs", type=int, default=300)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    name, prefix, port = f"graft_bench_{run}", f"graft-bench-{run}:", common.free_port()
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(db_url)
    home = f"/tmp/graft-bench-{run}"
    env = env_for(db_url, prefix, home, port)
    graft = [sys.executable, "-m", "service.cli"]
    procs = [subprocess.Popen(graft + ["api"], env=env, cwd=common.ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL),
             subprocess.Popen(graft + ["worker"], env=env, cwd=common.ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz")
        http = httpx.Client(base_url=base, timeout=60)
        dataset = http.post("/v1/datasets", json={"name": "two", "source": {"builtin": "digits",
                                                                            "classes": ["0", "1"]}}).json()
        spec = {"kind": "finetune", "dataset": dataset["id"], "epochs": 1, "batch_size": 8, "image_size": 32,
                "train_per_class": 4, "backbone": {"arch": "shufflenet_v2_x0_5", "weights": "none"}}
        latencies = []
        for i in range(args.latency_jobs + 1):  # the first warms the worker (imports, decoded data)
            job = http.post("/v1/jobs", json=spec | {"seed": i}).json()
            while (body := http.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
                time.sleep(0.05)
            assert body["status"] == "succeeded", body["error"]
            if i:
                latencies.append((parse(body["started_at"]) - parse(body["created_at"])).total_seconds() * 1000)
            time.sleep(0.5)  # the worker is idle again, waiting on the broker
        queued = spec | {"accelerator": "gpu"}
        throughput = {}
        for clients in (1, 8):
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                codes = list(pool.map(lambda i: http.post("/v1/jobs", json=queued | {"seed": i}).status_code,
                                      range(args.submit_jobs)))
            assert set(codes) == {202}, set(codes)
            throughput[f"{clients}_client" + ("s" if clients > 1 else "")] = round(
                args.submit_jobs / (time.perf_counter() - started), 1)
        q = statistics.quantiles(latencies, n=20)
        common.report({"submit_to_running_ms": {"p50": round(statistics.median(latencies), 1),
                                                "p95": round(q[18], 1), "max": round(max(latencies), 1),
                                                "samples": len(latencies)},
                       "submissions_per_s": throughput, "submit_jobs": args.submit_jobs})
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        client = redis.Redis()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        from service.db import get_engine

        get_engine(db_url).dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
