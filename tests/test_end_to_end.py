"""The whole path on PostgreSQL + Redis + a Celery worker process: dataset → job → metrics → checkpoint → predict."""

import hashlib
import io
import time

from safetensors import safe_open

from tests.conftest import wait_for_job
from tests.digits_files import digit_files


def test_digits_dataset_is_registered(client, digits_dataset):
    assert digits_dataset["status"] == "ready"
    assert digits_dataset["classes"] == [str(i) for i in range(10)]
    assert digits_dataset["counts"]["total"] == 1797
    assert sum(digits_dataset["counts"]["per_class"].values()) == 1797
    again = client.get(f"/v1/datasets/{digits_dataset['id']}")
    assert again.status_code == 200 and again.json() == digits_dataset


def test_finetune_job_end_to_end(client, worker, digits_dataset):
    spec = {
        "kind": "finetune", "dataset": digits_dataset["id"], "val_fraction": 0.2,
        "backbone": {"arch": "resnet18", "weights": "none"}, "strategy": "finetune", "epochs": 4,
        "batch_size": 64, "image_size": 32, "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}, "seed": 0,
    }
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"

    # While it runs: progress is reported, and metrics appear epoch by epoch, before the job ends.
    seen_running_progress, metrics_while_running = False, 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job['id']}").json()
        if job["status"] == "running":
            if job["progress"]:
                seen_running_progress = True
                assert job["progress"]["total_steps"] == 4 * 23
                assert 1 <= job["progress"]["epoch"] <= 4
            epochs = client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]
            if client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running":
                metrics_while_running = max(metrics_while_running, len(epochs))
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job["error"]
    assert seen_running_progress
    assert metrics_while_running >= 1, "per-epoch metrics must be written while the job runs"

    # Learning really happens: 4 epochs from scratch at 32 px.
    assert job["metrics"]["val_accuracy"] > 0.8
    history = client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]
    for row in history:
        assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(row["values"])
    assert history[-1]["values"]["train_loss"] < history[0]["values"]["train_loss"]

    # The model and its checkpoint.
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["arch"] == "resnet18" and model["classes"] == [str(i) for i in range(10)]
    assert model["preprocessing"]["image_size"] == 32
    download = client.get(model["checkpoint"]["url"])
    assert download.status_code == 200
    assert len(download.content) == model["checkpoint"]["size"]
    assert hashlib.sha256(download.content).hexdigest() == model["checkpoint"]["sha256"]
    path = worker.log_path.parent / "model.safetensors"
    path.write_bytes(download.content)
    with safe_open(str(path), framework="pt") as fh:
        assert "fc.weight" in fh.keys() and fh.get_tensor("fc.weight").shape == (10, 512)

    # Predict on real digit images of every common format and mode, in order.
    files = digit_files(list(range(1500, 1540)))
    response = client.post(
        f"/v1/models/{model['id']}/predict",
        files=[("files", (name, io.BytesIO(data), "application/octet-stream")) for name, data, _ in files],
        data={"top_k": "3"},
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(files)
    assert all(len(p["top"]) == 3 for p in predictions)
    assert all(p["top"][0]["score"] >= p["top"][1]["score"] >= p["top"][2]["score"] for p in predictions)
    correct = sum(p["top"][0]["label"] == str(label) for p, (_, _, label) in zip(predictions, files, strict=True))
    assert correct >= 0.8 * len(files), f"{correct}/{len(files)} correct"

    # top_k defaults to 5 and is capped by the number of classes.
    one = client.post(f"/v1/models/{model['id']}/predict", files=[("files", ("a.png", files[0][1], "image/png"))])
    assert len(one.json()["predictions"][0]["top"]) == 5
    many = client.post(f"/v1/models/{model['id']}/predict", files=[("files", ("a.png", files[0][1], "image/png"))],
                       data={"top_k": "50"})
    assert len(many.json()["predictions"][0]["top"]) == 10


def test_failing_job_is_reported_and_worker_keeps_serving(client, worker, digits_dataset):
    diverging = {"kind": "finetune", "dataset": digits_dataset["id"], "epochs": 1, "image_size": 16,
                 "optimizer": {"name": "sgd", "lr": 1000.0, "momentum": 0.9}, "backbone": {"arch": "resnet18"},
                 "grad_clip_norm": None}  # clipping would tame even this lr (auto does not clip from scratch anyway)
    bad = wait_for_job(client, client.post("/v1/jobs", json=diverging).json()["id"])
    assert bad["status"] == "failed"
    assert "diverged" in bad["error"] and "optimizer.lr" in bad["error"]
    assert bad["model_id"] is None

    good_spec = {"kind": "pretrain", "dataset": digits_dataset["id"], "epochs": 1, "image_size": 16}
    good = wait_for_job(client, client.post("/v1/jobs", json=good_spec).json()["id"])
    assert good["status"] == "succeeded", good["error"]
    assert good["model_id"]


def test_jobs_list_paginates(client, digits_dataset):
    ids = [client.post("/v1/jobs", json={"kind": "pretrain", "dataset": digits_dataset["id"], "epochs": 1,
                                         "image_size": 16}).json()["id"] for _ in range(3)]
    seen, token = [], None
    while True:
        params = {"page_size": 2} | ({"page_token": token} if token else {})
        page = client.get("/v1/jobs", params=params).json()
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))
