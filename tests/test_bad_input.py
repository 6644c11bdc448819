"""Every bad input gets a clear problem+json error that says what to fix."""

import io

import pytest

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    return body


def spec(dataset_id: str, **overrides) -> dict:
    return {"kind": "finetune", "dataset": dataset_id, "epochs": 1, "image_size": 16} | overrides


def test_unknown_dataset_in_spec_names_it(client):
    body = assert_problem(client.post("/v1/jobs", json=spec("no-such-dataset")), 422, "no-such-dataset")
    assert body["errors"][0]["field"] == "dataset"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"epochs": "many"}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"optimizer": {"name": "sgd", "lr": -1}}, "optimizer.lr"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name"),
        ({"strategy": "yolo"}, "strategy"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"surprise": True}, "surprise"),
        ({"backbone": {"arch": "resnet18", "colour": "red"}}, "backbone.colour"),
    ],
)
def test_malformed_spec_names_the_field(client, digits_dataset, overrides, field):
    body = assert_problem(client.post("/v1/jobs", json=spec(digits_dataset["id"], **overrides)), 422, field)
    assert field in [e["field"] for e in body["errors"]]


def test_unknown_kind_is_rejected(client, digits_dataset):
    assert_problem(client.post("/v1/jobs", json=spec(digits_dataset["id"], kind="teleport")), 422, "kind")


def test_unknown_arch_says_where_to_list_valid_ones(client, digits_dataset):
    response = client.post("/v1/jobs", json=spec(digits_dataset["id"], backbone={"arch": "resnet9000"}))
    body = assert_problem(response, 422, "resnet9000", "/v1/backbones")
    assert body["errors"][0]["field"] == "backbone.arch"


def test_unknown_weights_name_lists_the_choices(client, digits_dataset):
    response = client.post("/v1/jobs", json=spec(digits_dataset["id"], backbone={"arch": "resnet18",
                                                                                 "weights": "SUPERNET"}))
    assert_problem(response, 422, "SUPERNET", "IMAGENET1K_V1")


def test_pretrain_refuses_pretrained_weights(client, digits_dataset):
    response = client.post("/v1/jobs", json=spec(digits_dataset["id"], kind="pretrain",
                                                 backbone={"arch": "resnet18", "weights": "DEFAULT"}))
    assert_problem(response, 422, "from scratch")


def test_unknown_builtin_dataset_lists_the_choices(client):
    response = client.post("/v1/datasets", json={"name": "x", "source": {"builtin": "imagenet-22k"}})
    assert_problem(response, 422, "imagenet-22k", "digits")


def test_dataset_body_must_be_json_object(client):
    assert_problem(client.post("/v1/datasets", content=b"not json", headers={"content-type": "application/json"}),
                   422)


@pytest.mark.parametrize("path", ["/v1/models/nope", "/v1/jobs/nope", "/v1/datasets/nope", "/v1/jobs/nope/metrics",
                                  "/v1/models/nope/checkpoint", "/v1/jobs/nope/events", "/v1/jobs/nope/logs",
                                  "/v1/jobs/nope/checkpoint"])
def test_unknown_resources_are_404(client, path):
    assert_problem(client.get(path), 404, "nope")


def test_cancelling_an_unknown_job_is_404(client):
    assert_problem(client.post("/v1/jobs/nope/cancel"), 404, "nope")


def test_predict_on_unknown_model_is_404(client):
    response = client.post("/v1/models/nope/predict", files=[("files", ("a.png", b"x", "image/png"))])
    assert_problem(response, 404, "nope")


def test_bad_page_token_is_422(client):
    body = assert_problem(client.get("/v1/jobs", params={"page_token": "!!garbage!!"}), 422, "page_token")
    assert body["errors"][0]["field"] == "page_token"


@pytest.fixture(scope="module")
def tiny_model(client, worker, digits_dataset) -> dict:
    from tests.conftest import wait_for_job

    job = client.post("/v1/jobs", json={"kind": "pretrain", "dataset": digits_dataset["id"], "epochs": 1,
                                        "image_size": 16}).json()
    job = wait_for_job(client, job["id"])
    assert job["status"] == "succeeded", job["error"]
    return client.get(f"/v1/models/{job['model_id']}").json()


def test_predict_on_a_file_that_is_not_an_image_is_415(client, tiny_model):
    files = [("files", ("notes.txt", io.BytesIO(b"hello, I am text"), "text/plain"))]
    body = assert_problem(client.post(f"/v1/models/{tiny_model['id']}/predict", files=files), 415, "notes.txt")
    assert body["errors"][0]["field"] == "files[0]"


def test_predict_on_a_truncated_image_is_415(client, tiny_model):
    from tests.digits_files import digit_files

    _, png, _ = digit_files([0])[0]
    files = [("files", ("ok.png", png, "image/png")), ("files", ("cut.png", png[: len(png) // 2], "image/png"))]
    body = assert_problem(client.post(f"/v1/models/{tiny_model['id']}/predict", files=files), 415, "cut.png")
    assert body["errors"][0]["field"] == "files[1]"


def test_predict_without_files_is_422(client, tiny_model):
    assert_problem(client.post(f"/v1/models/{tiny_model['id']}/predict", data={"top_k": "3"}), 422, "files")


def test_predict_with_bad_top_k_is_422(client, tiny_model):
    from tests.digits_files import digit_files

    _, png, _ = digit_files([0])[0]
    response = client.post(f"/v1/models/{tiny_model['id']}/predict", files=[("files", ("a.png", png, "image/png"))],
                           data={"top_k": "0"})
    assert_problem(response, 422, "top_k")
