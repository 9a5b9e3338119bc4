"""module_utils/object_store: the request signature, locations and the order of objects. The requests
themselves go to a real S3 server in tests/integration/test_flyte_dump_store.py."""

from __future__ import annotations

import datetime
import hashlib

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils.object_store import object_keys, parse_location, signed_headers


def test_the_signature_is_the_one_of_awss_own_sigv4_example():
    # "GET Object" in Amazon S3's "Signature Calculations for the Authorization Header" (its example keys).
    headers = signed_headers("GET", "https://examplebucket.s3.amazonaws.com/test.txt", "us-east-1",
                             "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                             hashlib.sha256(b"").hexdigest(), {"Range": "bytes=0-9"},
                             now=datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc))
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert headers["x-amz-date"] == "20130524T000000Z" and "host" not in headers


@pytest.mark.parametrize("url, expected", [
    ("s3://flyte-backups/dumps", ("flyte-backups", "dumps")),
    ("s3://flyte-backups/a/b/", ("flyte-backups", "a/b")),
    ("s3://flyte-backups", ("flyte-backups", "")),
])
def test_locations(url, expected):
    assert parse_location(url) == expected


@pytest.mark.parametrize("url", ["https://s3.example.com/bucket", "s3:///dumps", "s3://bucket/dumps?x=1", "", None])
def test_what_is_not_a_location_is_refused(url):
    with pytest.raises(ValueError, match="is not an s3://<bucket>/<prefix> location"):
        parse_location(url)


def test_the_manifest_is_the_last_object_so_a_reader_finds_it_only_when_the_dumps_are_there():
    manifest = {"dumps": [{"file": "flyteadmin.dump"}, {"file": "datacatalog.dump"}]}
    assert object_keys("dumps", "flyte-1", manifest) == [
        ("flyteadmin.dump", "dumps/flyte-1/flyteadmin.dump"), ("flyteadmin.dump.sha256", "dumps/flyte-1/flyteadmin.dump.sha256"),
        ("datacatalog.dump", "dumps/flyte-1/datacatalog.dump"), ("datacatalog.dump.sha256", "dumps/flyte-1/datacatalog.dump.sha256"),
        ("manifest.json", "dumps/flyte-1/manifest.json")]
    assert object_keys("", "flyte-1", manifest)[-1] == ("manifest.json", "flyte-1/manifest.json")
