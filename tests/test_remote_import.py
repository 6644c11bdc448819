"""Object-storage import through fsspec: refused unless under GRAFT_IMPORT_URIS, copied with limits, then validated.

fsspec's in-memory filesystem (`memory://`, a real fsspec implementation) stands in for a bucket; it lives in one
process, so validation runs in-process here, on the real PostgreSQL, through the same function the worker task calls.
"""

import fsspec
import pytest

from service import datasets as dataset_service
from service.db import session_scope
from service.schemas import DatasetCreate
from service.tables import Dataset
from tests.digits_files import encode
from tests.test_bad_input import assert_problem
from workers import ingesting
from workers.ingest.errors import IngestError
from workers.ingest.limits import Limits
from workers.ingest.remote import check_remote_uri, materialize
from workers.pipeline.datasets import load_raw


@pytest.fixture
def bucket():
    """memory://bucket/digits/<class>/<n>.png: 6 real digits of each of 3 classes, plus one corrupt file."""
    fs = fsspec.filesystem("memory")
    raw = load_raw("digits", ["0", "1", "2"])
    seen: dict[int, int] = {}
    for image, label in zip(raw.images, raw.labels, strict=True):
        if seen.get(label, 0) < 6:
            seen[label] = seen.get(label, 0) + 1
            fs.pipe(f"/bucket/digits/{label}/{seen[label]}.png", encode(image, "PNG", "L"))
    fs.pipe("/bucket/digits/1/broken.png", b"\x89PNG not really")
    fs.pipe("/bucket/other/secret.png", b"x")
    yield fs
    fs.rm("/bucket", recursive=True)


def test_bucket_prefix_is_validated_like_an_upload(settings, bucket):
    remote = settings.model_copy(update={"import_uris": ("memory://bucket/digits/",)})
    with session_scope(remote.sqlalchemy_url) as session:
        row = dataset_service.register(session, remote, DatasetCreate(name="bucket",
                                                                     source={"uri": "memory://bucket/digits"}))
        dataset_id = row.id
    ingesting.validate_dataset(remote, dataset_id)
    with session_scope(remote.sqlalchemy_url) as session:
        row = session.get(Dataset, dataset_id)
        assert row.status == "ready", row.error
        assert row.classes == ["0", "1", "2"] and row.counts["total"] == 18
        assert [e["path"] for e in row.report["excluded"]] == ["1/broken.png"]


def test_uris_outside_the_allowed_prefixes_are_refused(bucket, tmp_path):
    allowed = ["memory://bucket/digits/"]
    for uri in ("memory://bucket/other", "memory://bucket/digits-evil", "memory://bucket/digits/../other",
                "s3://someone-elses-bucket/x"):
        with pytest.raises(IngestError, match="GRAFT_IMPORT_URIS|'\\.\\.'"):
            check_remote_uri(uri, allowed)
    with pytest.raises(IngestError, match="disabled"):
        check_remote_uri("memory://bucket/digits", [])
    with pytest.raises(IngestError, match="the limit is 5"):
        materialize("memory://bucket/digits", tmp_path / "cache", Limits(max_members=5))


def test_api_refuses_object_storage_that_is_not_configured(client):
    body = assert_problem(client.post("/v1/datasets", json={"name": "s3", "source": {"uri": "s3://bucket/x"}}), 403,
                          "GRAFT_IMPORT_URIS")
    assert body["errors"][0]["field"] == "source.uri"
