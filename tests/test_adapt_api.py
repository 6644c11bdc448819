"""Domain adaptation through the API on the real services: MNIST (labelled) → UCI digits, and its bad input."""

import io
import zipfile

import pytest

from tests.conftest import wait_for_job
from tests.digits_files import encode
from tests.test_bad_input import assert_problem
from tests.test_datasets_api import upload, wait_dataset
from workers.pipeline.adaptation.data import load_uci_digits_mnist_framed
from workers.pipeline.datasets import load_raw


def register(client, name: str, builtin: str, classes: list[str] | None = None) -> dict:
    source = {"builtin": builtin} | ({"classes": classes} if classes else {})
    response = client.post("/v1/datasets", json={"name": name, "source": source})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def mnist(client) -> dict:
    return register(client, "mnist", "mnist")


@pytest.fixture(scope="module")
def uci_framed(client) -> dict:
    return register(client, "uci-digits-framed", "digits_mnist_framed")


@pytest.fixture(scope="module")
def unlabeled_rgb(client, worker) -> dict:
    """60 UCI digits as 24×24 RGB PNGs in one flat folder: an unlabelled target of another size and channel count."""
    raw = load_raw("digits")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(60):
            zf.writestr(f"target/{i}.png", encode(raw.images[i].resize((24, 24)), "PNG", "RGB"))
    response = upload(client, buf.getvalue(), name="unlabeled-rgb", filename="target.zip")
    assert response.status_code == 202, response.text
    body = wait_dataset(client, response.json()["id"])
    assert body["status"] == "ready" and body["labeled"] is False, body
    return body


def adapt_spec(source: str, target: str, **overrides) -> dict:
    return {"kind": "adapt", "dataset": source, "target_dataset": target,
            "backbone": {"arch": "resnet18", "weights": "none"}, "strategy": "finetune",
            "adaptation": {"method": "mmd", "weight": 1.0}, "head": {"bottleneck": 128},
            "epochs": 3, "batch_size": 64, "image_size": 28, "val_fraction": 0.5, "seed": 0,
            "optimizer": {"lr": 0.05}, "schedule": {"name": "cosine"}} | overrides


def test_mmd_adapt_job_closes_the_gap_and_serves_predictions(client, worker, mnist, uci_framed):
    response = client.post("/v1/jobs", json=adapt_spec(mnist["id"], uci_framed["id"]))
    assert response.status_code == 202, response.text
    assert response.json()["target_dataset_id"] == uci_framed["id"]
    job = wait_for_job(client, response.json()["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]

    epochs = [e["values"] for e in client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]]
    assert len(epochs) == 3
    for row in epochs:
        assert {"source_loss", "adaptation_loss", "lambda", "domain_discrepancy", "target_accuracy"} <= set(row)
    assert epochs[0]["lambda"] < epochs[-1]["lambda"] <= 1.0
    assert epochs[-1]["domain_discrepancy"] < epochs[0]["domain_discrepancy"]  # the gap closes
    assert job["metrics"]["val_accuracy"] > 0.8  # the source is still learned
    assert job["metrics"]["target_accuracy"] > 0.3  # well above chance (0.1) on a domain it never saw labels of

    # A model like any other: predict on framed UCI digits.
    target = load_uci_digits_mnist_framed()
    files = [("files", (f"{i}.png", io.BytesIO(encode(target.images[i], "PNG", "L")), "image/png"))
             for i in range(1700, 1720)]
    predicted = client.post(f"/v1/models/{job['model_id']}/predict", files=files, data={"top_k": "1"})
    assert predicted.status_code == 200, predicted.text
    labels = [p["top"][0]["label"] for p in predicted.json()["predictions"]]
    assert len(labels) == 20
    assert sum(label == str(target.labels[1700 + i]) for i, label in enumerate(labels)) >= 6


def test_unlabeled_target_of_another_size_and_channel_count_is_handled_by_preprocessing(
        client, worker, digits_dataset, unlabeled_rgb):
    spec = adapt_spec(digits_dataset["id"], unlabeled_rgb["id"], epochs=1, image_size=16, batch_size=32,
                      adaptation={"method": "coral"}, head={})
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    row = client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"][0]["values"]
    assert "domain_discrepancy" in row and "target_accuracy" not in row  # no target labels, nothing to report

    # The target cannot be deleted while the job depends on it.
    assert_problem(client.delete(f"/v1/datasets/{unlabeled_rgb['id']}"), 409, "used by job")


def test_target_that_does_not_exist_names_the_field(client, digits_dataset):
    body = assert_problem(client.post("/v1/jobs", json=adapt_spec(digits_dataset["id"], "no-such-target")), 422,
                          "no-such-target")
    assert body["errors"][0]["field"] == "target_dataset"


def test_source_without_labels_is_refused(client, digits_dataset, unlabeled_rgb):
    body = assert_problem(client.post("/v1/jobs", json=adapt_spec(unlabeled_rgb["id"], digits_dataset["id"])), 422,
                          "has no labels")
    assert body["errors"][0]["field"] == "dataset"


def test_labeled_target_with_other_classes_explains_the_closed_set_assumption(client, digits_dataset):
    three = register(client, "digits-0-2", "digits", ["0", "1", "2"])
    body = assert_problem(client.post("/v1/jobs", json=adapt_spec(digits_dataset["id"], three["id"])), 422,
                          "closed-set", "only in the source")
    assert body["errors"][0]["field"] == "target_dataset"


def test_target_equal_to_source_is_refused(client, digits_dataset):
    assert_problem(client.post("/v1/jobs", json=adapt_spec(digits_dataset["id"], digits_dataset["id"])), 422,
                   "must differ")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"adaptation": {"method": "mmdd"}}, "adaptation.method"),
    ({"adaptation": {"estimator": "quadratic"}}, "adaptation.estimator"),
    ({"adaptation": {"weight": -1}}, "adaptation.weight"),
    ({"head": {"hidden": 64, "bottleneck": 64}}, "head"),
])
def test_bad_adaptation_fields_are_named(client, digits_dataset, uci_framed, overrides, field):
    body = assert_problem(client.post("/v1/jobs", json=adapt_spec(digits_dataset["id"], uci_framed["id"],
                                                                  **overrides)), 422, field)
    assert any(e["field"].startswith(field) for e in body["errors"])


def test_missing_target_dataset_is_a_named_field_error(client, digits_dataset):
    spec = adapt_spec(digits_dataset["id"], "x")
    del spec["target_dataset"]
    body = assert_problem(client.post("/v1/jobs", json=spec), 422, "target_dataset")
    assert "target_dataset" in [e["field"] for e in body["errors"]]
