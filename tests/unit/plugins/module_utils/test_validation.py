"""Format checks of module_utils/validation.py that the preflights use as Jinja tests."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils.validation import (
    is_image_reference,
    is_label_selector,
    is_qualified_name,
    is_s3_bucket,
    is_s3_url,
    is_secret_key,
)


@pytest.mark.parametrize("image", [
    "docker.io/versity/versitygw:v1.8.0", "docker.io/amazon/aws-cli:2.22.35", "ghcr.io/cloudnative-pg/postgresql:16.4",
    "busybox", "localhost:5000/team/tool", "registry.example.com:5000/a/b:latest@sha256:" + "0" * 64,
    "quay.io/a_b/c__d/e-f--g.h:t_1.2-x", "busybox@sha256:" + "ab" * 32,
])
def test_image_references_runtimes_pull(image):
    assert is_image_reference(image)


@pytest.mark.parametrize("image", [
    "", " busybox", "busybox ", "a b", "Busybox", "docker.io/Versity/gw", "a:b:c", "a:", ":tag", "a/", "/a", "a//b",
    "a@sha256:short", "a:" + "t" * 129, "x/" * 130 + "x", 80, None, ["busybox"],
])
def test_malformed_image_references(image):
    assert not is_image_reference(image)


@pytest.mark.parametrize("selector", [
    "app.kubernetes.io/name=authentik,app.kubernetes.io/component=worker", "a==b", "a!=b", "a", "!a", "a in (x, y)",
    "a notin (x),b=c", "example.com/role=worker", "a=", " a = b ",
])
def test_label_selectors_the_api_server_parses(selector):
    assert is_label_selector(selector)


@pytest.mark.parametrize("selector", [
    "", " ", "a b", "a=b c", "a=b,", ",", "-a=b", "a=-b", "a/b/c=d", "a in x", "a in (x", "a=b=c", "UPPER.example.com/a=b",
    "a=" + "v" * 64, "k" * 64 + "=v", 5, None,
])
def test_malformed_label_selectors(selector):
    assert not is_label_selector(selector)


def test_no_format_check_accepts_a_trailing_newline():
    """Python's $ also matches before a final newline: 'flyte-system\\n' is no DNS label for the API server."""
    from ansible_collections.homelab.flyte.plugins.module_utils import validation

    for check, value in [(validation.is_dns_label, "flyte-system"), (validation.is_dns_subdomain, "flyte.example"),
                         (validation.is_hostname, "flyte.example.com"), (validation.is_k8s_quantity, "20Gi"),
                         (validation.is_image_reference, "busybox"), (validation.is_label_key, "app"),
                         (validation.is_label_value, "worker"), (validation.is_s3_bucket, "flyte-data"),
                         (validation.is_s3_url, "s3://backups/flyte"), (validation.is_secret_key, "tls.crt"), (validation.is_qualified_name, "memory")]:
        assert check(value), check.__name__
        assert not check(value + "\n"), check.__name__


@pytest.mark.parametrize(("value", "expected"), [
    ("memory", True), ("cpu", True), ("example.com/gpu", True), ("hugepages-2Mi", True), ("a" * 63, True),
    ("a" * 64, False), ("Memory Limit", False), ("-cpu", False), ("example.com/", False), ("Example.com/gpu", False),
    ("a/b/c", False), ("", False), (5, False),
])
def test_qualified_names(value, expected):
    assert is_qualified_name(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("flyte-data", True), ("abc", True), ("my.bucket.1", True), ("a" * 63, True),
    ("ab", False), ("a" * 64, False), ("Flyte-data", False), ("flyte_data", False), ("-flyte", False), ("flyte-", False),
    ("a..b", False), ("", False), (None, False),
])
def test_s3_bucket_names(value, expected):
    assert is_s3_bucket(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("s3://backups", True), ("s3://backups/", True), ("s3://backups/flyte/cnpg", True),
    ("https://backups/flyte", False), ("s3://", False), ("s3://Backups/flyte", False), ("s3://backups/a b", False),
    ("s3://a..b/x", False), ("S3://backups", False), (["s3://backups"], False),
])
def test_s3_urls(value, expected):
    assert is_s3_url(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("AWS_ACCESS_KEY_ID", True), ("oidc-client-secret", True), ("tls.crt", True), (".dotfile", True), ("a" * 253, True),
    ("a" * 254, False), (".", False), ("..", False), ("..data", False), ("a/b", False), ("a b", False), ("", False), (None, False),
])
def test_secret_keys(value, expected):
    assert is_secret_key(value) is expected
