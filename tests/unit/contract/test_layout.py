"""The kernel's s3 uri reading, which the pipeline steps and the drift check share."""

from __future__ import annotations

import pytest

from onnxkit.contract.layout import s3_object


def test_an_s3_object_uri_gives_bucket_key_and_version() -> None:
    assert s3_object("s3://kit/models/m/v1/model.onnx?versionId=abc") == (
        "kit",
        "models/m/v1/model.onnx",
        "abc",
    )
    assert s3_object("s3://kit/models/m/production.json") == (
        "kit",
        "models/m/production.json",
        None,
    )
    # S3 keys may hold ';' and '#': they are the key's, not URL parameters or a fragment.
    assert s3_object("s3://kit/data/a;b#c.csv?versionId=v1") == ("kit", "data/a;b#c.csv", "v1")


@pytest.mark.parametrize(
    "uri", ["s3://kit", "s3://kit/", "s3:///key", "https://kit/key", "/tmp/model.onnx", ""]
)
def test_anything_else_is_none(uri: str) -> None:
    assert s3_object(uri) is None
