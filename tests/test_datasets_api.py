"""Datasets users bring: archive uploads, server folders, validation by a worker, hostile input, deletion."""

import io
import tarfile
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.db import session_scope
from service.tables import Dataset
from tests.conftest import wait_for_job
from tests.digits_files import encode
from workers.pipeline.datasets import load_raw


def wait_dataset(client, dataset_id: str, timeout: float = 120) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/datasets/{dataset_id}").json()
        if body["status"] != "validating":
            return body
        time.sleep(0.3)
    raise TimeoutError(body)


def digits_zip(per_class: int = 30, bad: bool = True) -> bytes:
    """Real digits as PNGs in train/ and val/ class folders, with corrupt and non-image files mixed in."""
    raw = load_raw("digits")
    seen: dict[int, int] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for image, label in zip(raw.images, raw.labels, strict=True):
            n = seen.get(label, 0)
            if n >= per_class:
                continue
            seen[label] = n + 1
            split = "val" if n % 5 == 0 else "train"
            zf.writestr(f"digits/{split}/{label}/{n}.png", encode(image, "PNG", "L"))
        if bad:
            png = encode(raw.images[0], "PNG", "L")
            zf.writestr("digits/train/0/truncated.png", png[: len(png) // 2])
            zf.writestr("digits/train/1/notes.png", b"this is text, not a picture")
            zf.writestr("digits/train/2/empty.jpg", b"")
            zf.writestr("digits/train/README.txt", b"ignored by name")
    return buf.getvalue()


def upload(client, data: bytes, name: str = "digits-upload", filename: str = "digits.zip"):
    return client.post("/v1/datasets", data={"name": name}, files={"file": (filename, data, "application/zip")})


def test_upload_round_trip_reports_exactly_the_bad_files_and_trains(client, worker):
    response = upload(client, digits_zip())
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/datasets/{response.json()['id']}"
    assert response.json()["status"] == "validating"
    dataset = wait_dataset(client, response.json()["id"])
    assert dataset["status"] == "ready", dataset
    assert sorted(e["path"] for e in dataset["excluded"]) == [
        "digits/train/0/truncated.png", "digits/train/1/notes.png", "digits/train/2/empty.jpg"]
    assert all(e["reason"] for e in dataset["excluded"])
    assert dataset["classes"] == [str(i) for i in range(10)]
    assert dataset["counts"]["total"] == 300
    assert dataset["counts"]["per_split"]["val"]["3"] == 6 and dataset["counts"]["per_split"]["train"]["3"] == 24
    assert dataset["image_sizes"]["max_width"] == 8 and dataset["layout"] == "imagefolder+splits"
    samples = client.get(f"/v1/datasets/{dataset['id']}/samples").json()["samples"]
    assert len(samples["7"]) == 3 and samples["7"][0].startswith("data:image/png;base64,")

    job = client.post("/v1/jobs", json={"kind": "finetune", "dataset": dataset["id"], "epochs": 2,
                                        "image_size": 16}).json()
    job = wait_for_job(client, job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["split"] == {**job["metrics"]["split"], "method": "dataset", "train": 240, "val": 60}

    conflict = client.delete(f"/v1/datasets/{dataset['id']}")
    assert conflict.status_code == 409 and job["id"] in conflict.json()["detail"]


def test_same_archive_is_stored_once_and_unused_datasets_delete(client, worker, settings):
    data = digits_zip(per_class=5, bad=False)
    first, second = (upload(client, data, name=f"copy{i}").json()["id"] for i in range(2))
    with session_scope(settings.sqlalchemy_url) as session:
        blobs = session.scalars(select(Dataset.blob_id).where(Dataset.id.in_([first, second]))).all()
    assert len(set(blobs)) == 1
    wait_dataset(client, first), wait_dataset(client, second)
    assert client.delete(f"/v1/datasets/{first}").status_code == 204
    assert client.get(f"/v1/datasets/{first}").status_code == 404
    assert wait_dataset(client, second)["status"] == "ready"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _tar_with_symlink() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("cats/evil.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (_zip({"../escape.png": b"x"}), "escape.png"),
        (_zip({"/etc/evil.png": b"x"}), "evil.png"),
        (_tar_with_symlink(), "link"),
        (_zip({"bomb/a.png": bytes(50 << 20)}), "zip bomb"),
        (b"PK\x03\x04 definitely not a zip" * 10, ""),
        (b"\x89PNG\r\n\x1a\n not an archive at all", "archive"),
        (_zip({}), ""),
        (_zip({"cats/a.png": b"junk", "cats/b.png": b"more junk"}), "no valid image"),
    ],
    ids=["traversal", "absolute", "symlink", "zip-bomb", "corrupt-zip", "not-archive", "empty", "no-valid-image"],
)
def test_hostile_uploads_fail_with_the_reason_and_write_nothing_outside(client, worker, settings, archive, reason):
    response = upload(client, archive, name="hostile")
    assert response.status_code == 202
    dataset = wait_dataset(client, response.json()["id"])
    assert dataset["status"] == "failed"
    assert reason.lower() in dataset["error"].lower() and dataset["error"]
    assert not (settings.cache_dir / "escape.png").exists() and not (settings.home / "escape.png").exists()
    job = client.post("/v1/jobs", json={"kind": "finetune", "dataset": dataset["id"]})
    assert job.status_code == 422 and "failed" in job.json()["detail"]


def test_upload_over_the_limit_is_413_before_reading(settings):
    small = settings.model_copy(update={"max_upload_bytes": 10_000})
    with TestClient(create_app(small)) as client:
        response = upload(client, bytes(50_000))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "10000" in response.json()["detail"]


def test_multipart_without_file_or_name_is_422(client):
    assert client.post("/v1/datasets", data={"name": "x"}, files={"other": ("a", b"b")}).status_code == 422
    response = client.post("/v1/datasets", files={"file": ("a.zip", b"b")})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name"


def test_import_from_allowed_folder_and_refusal_elsewhere(client, worker, settings, tmp_path_factory):
    root = settings.home / "imports"
    folder = root / "flowers"
    raw = load_raw("digits")
    for i in range(12):
        (folder / str(raw.labels[i])).mkdir(parents=True, exist_ok=True)
        (folder / str(raw.labels[i]) / f"{i}.png").write_bytes(encode(raw.images[i], "PNG", "L"))
    elsewhere = tmp_path_factory.mktemp("outside")
    response = client.post("/v1/datasets", json={"name": "x", "source": {"uri": f"file://{elsewhere}"}})
    assert response.status_code == 403 and "GRAFT_IMPORT_ROOTS" in response.json()["detail"]
    assert settings.import_roots == (root,)
    response = client.post("/v1/datasets", json={"name": "flowers", "source": {"uri": f"file://{folder}"}})
    assert response.status_code == 202, response.text
    dataset = wait_dataset(client, response.json()["id"])
    assert dataset["status"] == "ready" and dataset["counts"]["total"] == 12


def test_unlabeled_folder_is_accepted_but_cannot_train(client, worker, settings):
    raw = load_raw("digits")
    data = _zip({f"{i}.png": encode(raw.images[i], "PNG", "L") for i in range(6)})
    dataset = wait_dataset(client, upload(client, data, name="unlabeled").json()["id"])
    assert dataset["status"] == "ready" and dataset["labeled"] is False and dataset["counts"]["unlabeled"] == 6
    job = client.post("/v1/jobs", json={"kind": "finetune", "dataset": dataset["id"]})
    assert job.status_code == 422 and "no labels" in job.json()["detail"]


def test_json_source_needs_exactly_one_kind(client):
    response = client.post("/v1/datasets", json={"name": "x", "source": {}})
    assert response.status_code == 422 and "exactly one" in response.json()["detail"]
