"""The Flyte code and the S3 server the tests run are the versions the collection deploys."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    lines = (REPO / "tests/platform/versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_flyte_modules_are_the_release_the_chart_deploys():
    flyte = yaml.safe_load((REPO / "roles/flyte/defaults/main.yml").read_text())
    assert pins()["FLYTE_VERSION"] == f"v{flyte['flyte_chart_version']}"


def test_the_local_s3_server_is_the_one_the_storage_role_deploys():
    storage = yaml.safe_load((REPO / "roles/storage/defaults/main.yml").read_text())
    assert storage["storage_internal_image"].rsplit(":", 1)[1] == pins()["VERSITYGW_VERSION"]
