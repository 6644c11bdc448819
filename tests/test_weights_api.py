"""Weights through the API: /v1/backbones, torchvision's cache in a worker, uploaded weights files, and their refusals."""

import io
import os
import uuid

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torchvision.models import get_model

from tests.conftest import MOBILENET_FILE, wait_for_job
from tests.test_bad_input import assert_problem

IMAGENET_MEAN = [0.485, 0.456, 0.406]


def job(client, dataset_id: str, backbone: dict, **overrides) -> dict:
    spec = {"kind": "finetune", "dataset": dataset_id, "backbone": backbone, "strategy": "feature_extraction",
            "epochs": 1, "image_size": 32, "seed": 0} | overrides
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["id"])


def upload(client, data: bytes, arch: str, filename: str = "w.safetensors"):
    return client.post("/v1/weights", files={"file": (filename, io.BytesIO(data), "application/octet-stream")},
                       data={"arch": arch, "name": f"test-{arch}"})


def test_backbones_list_archs_sizes_and_which_weights_are_cached(client, hub_dir):
    catalog = {entry["name"]: entry for entry in client.get("/v1/backbones").json()}
    for family in ("resnet50", "mobilenet_v3_small", "efficientnet_b0", "efficientnet_v2_s", "convnext_tiny",
                   "regnet_y_400mf", "densenet121", "vit_b_16", "swin_t"):
        assert family in catalog
    assert catalog["resnet18"]["num_params"] == 11_689_512
    mobilenet = {w["name"]: w for w in catalog["mobilenet_v2"]["weights"]}
    assert mobilenet["IMAGENET1K_V1"]["cached"] is True and mobilenet["IMAGENET1K_V1"]["file"] == MOBILENET_FILE
    resnet = {w["name"]: w for w in catalog["resnet18"]["weights"]}
    assert resnet["IMAGENET1K_V1"]["cached"] is False and resnet["IMAGENET1K_V1"]["url"].startswith("https://")


def test_imagenet_weights_from_the_worker_cache_train_and_bring_their_normalization(client, worker, digits_dataset):
    done = job(client, digits_dataset["id"], {"arch": "mobilenet_v2", "weights": "IMAGENET1K_V1"}, epochs=2)
    assert done["status"] == "succeeded", done["error"]
    assert done["metrics"]["val_accuracy"] > 0.5  # a frozen ImageNet backbone and a linear head, 10 classes
    model = client.get(f"/v1/models/{done['model_id']}").json()
    assert model["preprocessing"]["mean"] == pytest.approx(IMAGENET_MEAN)
    assert model["preprocessing"]["image_size"] == 32


def test_uncached_weights_offline_fail_before_training_naming_the_file_and_where(client, worker, digits_dataset):
    done = job(client, digits_dataset["id"], {"arch": "resnet18", "weights": "IMAGENET1K_V1"})
    assert done["status"] == "failed"
    assert "resnet18-f37072fd.pth" in done["error"] and "hub/checkpoints" in done["error"]
    assert "Traceback" not in done["error"]
    assert client.get(f"/v1/jobs/{done['id']}/metrics").json()["epochs"] == []
    assert done["model_id"] is None


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_uploaded_weights_start_a_job_and_are_the_backbone_it_trains_on(client, worker, digits_dataset, fmt):
    torch.manual_seed(7)
    state = {k: v.contiguous() for k, v in get_model("resnet18", weights=None).state_dict().items()}
    if fmt == "safetensors":
        data = save_safetensors(state)
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    response = upload(client, data, "resnet18", f"resnet18.{fmt}")
    assert response.status_code == 201, response.text
    uploaded = response.json()
    assert uploaded["arch"] == "resnet18" and uploaded["tensors"] == len(state)
    assert client.get(f"/v1/weights/{uploaded['id']}").json() == uploaded
    assert uploaded["id"] in [w["id"] for w in client.get("/v1/weights", params={"page_size": 50}).json()["items"]]

    done = job(client, digits_dataset["id"], {"arch": "resnet18", "weights": f"upload:{uploaded['id']}"},
               image_size=16)
    assert done["status"] == "succeeded", done["error"]
    model = client.get(f"/v1/models/{done['model_id']}").json()
    trained = load_safetensors(client.get(model["checkpoint"]["url"]).content)
    # feature_extraction froze the uploaded backbone, BatchNorm statistics included: it is served unchanged.
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_var"):
        assert torch.equal(trained[key], state[key]), key
    assert trained["fc.weight"].shape == (10, 512)


def test_weights_that_do_not_fit_the_arch_are_422_naming_keys(client):
    state = {k: v.contiguous() for k, v in get_model("resnet18", weights=None).state_dict().items()}
    body = assert_problem(upload(client, save_safetensors(state), "mobilenet_v2"), 422, "do not fit mobilenet_v2",
                          "missing")
    assert body["errors"][0]["field"] == "file"
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3)
    assert_problem(upload(client, save_safetensors(state), "resnet18"), 422, "wrong shape", "layer1.0.conv1.weight")


def test_unknown_arch_and_non_weights_files_are_422(client):
    body = assert_problem(upload(client, b"x" * 64, "resnet9000"), 422, "resnet9000")
    assert body["errors"][0]["field"] == "arch"
    assert_problem(upload(client, b"definitely not weights" * 10, "resnet18"), 422, "neither safetensors")


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_a_pickle_that_runs_code_is_refused_and_never_executed(client, tmp_path):
    marker = tmp_path / f"executed-{uuid.uuid4().hex}"
    buffer = io.BytesIO()
    torch.save({"conv1.weight": _Payload(str(marker))}, buffer)
    assert_problem(upload(client, buffer.getvalue(), "resnet18", "evil.pth"), 422, "neither safetensors")
    assert not marker.exists()


def test_job_with_uploaded_weights_of_another_arch_is_422(client, digits_dataset):
    state = {k: v.contiguous() for k, v in get_model("resnet18", weights=None).state_dict().items()}
    uploaded = upload(client, save_safetensors(state), "resnet18").json()
    response = client.post("/v1/jobs", json={"kind": "finetune", "dataset": digits_dataset["id"], "epochs": 1,
                                             "backbone": {"arch": "mobilenet_v2", "weights": f"upload:{uploaded['id']}"}})
    body = assert_problem(response, 422, "resnet18", "mobilenet_v2")
    assert body["errors"][0]["field"] == "backbone.weights"
    unknown = client.post("/v1/jobs", json={"kind": "finetune", "dataset": digits_dataset["id"],
                                            "backbone": {"arch": "resnet18", "weights": "upload:nope"}})
    assert_problem(unknown, 422, "POST /v1/weights")
