"""Two-phase transfer entirely inside Graft: a `pretrain` job on digits 0–4, then few-shot jobs on 5–9 from its model."""

import pytest

from tests.conftest import wait_for_job

FEW_SHOT = {"kind": "finetune", "train_per_class": 10, "epochs": 5, "batch_size": 10, "image_size": 32,
            "optimizer": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}, "seed": 0}


def register(client, name: str, classes: range) -> dict:
    body = {"name": name, "source": {"builtin": "digits", "classes": [str(c) for c in classes]}}
    response = client.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def halves(client) -> tuple[dict, dict]:
    return register(client, "digits-0-4", range(5)), register(client, "digits-5-9", range(5, 10))


@pytest.fixture(scope="module")
def pretrained(client, worker, halves) -> dict:
    """The model of a `pretrain` job (resnet18 from scratch) on digits 0–4."""
    job = client.post("/v1/jobs", json={
        "kind": "pretrain", "dataset": halves[0]["id"], "backbone": {"arch": "resnet18"}, "val_fraction": 0.1,
        "epochs": 8, "batch_size": 64, "image_size": 32, "augmentation": "light", "schedule": {"name": "cosine"},
        "seed": 0}).json()
    job = wait_for_job(client, job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["val_accuracy"] > 0.95
    return client.get(f"/v1/models/{job['model_id']}").json()


def few_shot(client, dataset_id: str, weights: str, strategy: str) -> tuple[dict, list[dict]]:
    spec = {**FEW_SHOT, "dataset": dataset_id, "backbone": {"arch": "resnet18", "weights": weights},
            "strategy": strategy}
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job, client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]


def test_pretrained_graft_model_transfers_to_new_classes_better_than_scratch(client, halves, pretrained):
    _, target = halves
    scratch, scratch_epochs = few_shot(client, target["id"], "none", "finetune")
    scratch_acc = scratch_epochs[-1]["values"]["val_accuracy"]
    for strategy in ("feature_extraction", "finetune", "gradual_unfreeze"):
        transfer, transfer_epochs = few_shot(client, target["id"], f"model:{pretrained['id']}", strategy)

        # The new model has the target's classes and a fresh head; 10 images per class train, the rest validate.
        model = client.get(f"/v1/models/{transfer['model_id']}").json()
        assert model["classes"] == ["5", "6", "7", "8", "9"] and model["arch"] == "resnet18"
        assert transfer["metrics"]["split"]["train"] == 50
        assert transfer["metrics"]["split"]["val"] == target["counts"]["total"] - 50

        # Same spec, seed and images; only the weights differ. Last epoch, not the best one.
        transfer_acc = transfer_epochs[-1]["values"]["val_accuracy"]
        assert transfer_acc > 0.7, (strategy, transfer_acc)
        assert transfer_acc > scratch_acc + 0.1, (strategy, transfer_acc, scratch_acc)


def test_weights_of_a_model_of_another_arch_are_422(client, halves, pretrained):
    spec = {**FEW_SHOT, "dataset": halves[1]["id"],
            "backbone": {"arch": "mobilenet_v3_small", "weights": f"model:{pretrained['id']}"}}
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "backbone.weights" and "resnet18" in body["detail"]


def test_weights_of_an_unknown_model_are_422(client, halves):
    spec = {**FEW_SHOT, "dataset": halves[1]["id"], "backbone": {"arch": "resnet18", "weights": "model:nope"}}
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "GET /v1/models" in response.json()["detail"]
