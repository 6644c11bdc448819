"""Two-phase transfer inside Graft, through its HTTP API: a `pretrain` job on digits 0–4, then jobs on 5–9.

Run: .venv/bin/python bench/transfer_digits.py [--data digits|mnist] [--seeds 0 1 2] [--epochs 5 15] [--clip auto|N]
     [--url http://host:port]

Without --url it starts `graft up` on the embedded default (SQLite + SQLAlchemy broker) in a temporary GRAFT_HOME,
so it needs no server. It registers the built-in dataset twice (classes 0–4 and 5–9), runs one `pretrain` job
(resnet18, 32 px, light augmentation, cosine, 10 epochs, the default optimizer: SGD lr 0.01), then for every budget in --epochs, arm and seed one
`finetune` job on 5–9 with `train_per_class: 10` (the seed draws the 10 images; every other 5–9 image validates):
feature_extraction, finetune and gradual_unfreeze from `"weights": "model:<pretrained model>"`, and finetune from
`"weights": "none"` (scratch). Same spec for every arm: SGD lr 0.05, cosine, batch 10, --clip. The score of a job is
its last epoch's val_accuracy (not the best epoch's: picking the best on the evaluation images would flatter).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import common
import httpx

ARMS = [("scratch", "finetune", False), ("feature_extraction", "feature_extraction", True),
        ("finetune", "finetune", True), ("gradual_unfreeze", "gradual_unfreeze", True)]


@contextmanager
def graft_server(url: str | None):
    """The base URL of a Graft API with a worker: the given one, or an embedded `graft up` of our own."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="graft-bench-") as home:
        port = common.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRAFT_")}
        env |= {"GRAFT_HOME": home, "GRAFT_PORT": str(port), "GRAFT_LOG_LEVEL": "warning"}
        log = Path(home) / "up.log"
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "up"], cwd=common.ROOT, env=env,
                                stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"graft up did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def submit(http: httpx.Client, spec: dict) -> str:
    response = http.post("/v1/jobs", json=spec)
    if response.status_code != 202:
        raise RuntimeError(f"{response.status_code}: {response.text}")
    return response.json()["id"]


def finish(http: httpx.Client, job_id: str) -> dict:
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
            return job
        time.sleep(0.5)


def last_epoch(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"][-1]["values"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 15])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--clip", default="auto", help='grad_clip_norm of every job, pre-training included: "auto" '
                        "(the job default: 1.0 through frozen BatchNorm statistics only) or a number")
    parser.add_argument("--url", help="a running Graft API (with workers) to use instead of an embedded one")
    args = parser.parse_args()
    clip = args.clip if args.clip == "auto" else float(args.clip)
    started = time.perf_counter()
    with graft_server(args.url) as base, httpx.Client(base_url=base, timeout=60) as http:
        ids = {}
        for name, classes in (("source", range(5)), ("target", range(5, 10))):
            body = {"name": f"{args.data}-{name}", "source": {"builtin": args.data, "classes": [str(c) for c in classes]}}
            response = http.post("/v1/datasets", json=body)
            response.raise_for_status()
            ids[name] = response.json()["id"]
        common_spec = {"backbone": {"arch": "resnet18"}, "image_size": 32, "schedule": {"name": "cosine"},
                       "grad_clip_norm": clip}
        pretrain = finish(http, submit(http, {
            **common_spec, "kind": "pretrain", "dataset": ids["source"], "val_fraction": 0.1, "epochs": 10,
            "batch_size": 64, "augmentation": "light", "seed": 0}))
        print("pretrain job", pretrain["id"], "val accuracy", pretrain["metrics"]["val_accuracy"], flush=True)
        weights = f"model:{pretrain['model_id']}"
        runs = {}
        for epochs in args.epochs:
            for arm, strategy, pretrained in ARMS:
                for seed in args.seeds:
                    runs[(epochs, arm, seed)] = submit(http, {
                        **common_spec, "kind": "finetune", "dataset": ids["target"], "train_per_class": 10,
                        "backbone": {"arch": "resnet18", "weights": weights if pretrained else "none"},
                        "strategy": strategy, "unfreeze_every": max(1, epochs // 8), "epochs": epochs,
                        "batch_size": 10, "optimizer": {"name": "sgd", "lr": args.lr}, "seed": seed})
        table: dict[str, dict] = {}
        for epochs in args.epochs:
            for arm, _, _ in ARMS:
                accs = []
                for seed in args.seeds:
                    job_id = runs[(epochs, arm, seed)]
                    finish(http, job_id)
                    accs.append(last_epoch(http, job_id)["val_accuracy"])
                key = f"{epochs}ep/{arm}"
                table[key] = {"mean": round(statistics.mean(accs), 4), "std": round(statistics.pstdev(accs), 4),
                              "runs": [round(a, 4) for a in accs]}
                print(key, table[key], flush=True)
    margins = {e: round(min(table[f"{e}ep/{a}"]["mean"] for a, _, p in ARMS if p) - table[f"{e}ep/scratch"]["mean"], 4)
               for e in args.epochs}
    common.report({"data": args.data, "results": table, "pretrain_val_accuracy": pretrain["metrics"]["val_accuracy"],
                   "min_transfer_minus_scratch": margins, "lr": args.lr, "clip": args.clip, "jobs": len(runs) + 1,
                   "seconds": round(time.perf_counter() - started)})


if __name__ == "__main__":
    main()
