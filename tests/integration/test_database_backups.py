"""The database role's backups on the platform, against the real CloudNativePG and barman-cloud CRDs: the
ObjectStore, the Cluster's WAL archiver, the ScheduledBackup and its first Backup, idempotence, turning them off,
bad input stopped before anything is written, and what the (simulated) operator refuses.

Backup status comes from tests/platform/simulations/cnpg_backup.py, which follows CloudNativePG's backup
controller and the barman-cloud plugin (see its docstring); nothing is backed up for real here.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import UnprocessibleEntityError

from conftest import run_playbook
from test_foundation_roles import FOUNDATION, ROLES, contains, read, role_vars

BACKUP = ("postgresql.cnpg.io/v1", "Backup")


@pytest.fixture
def cleanup(api):
    created: list[str] = []
    yield created
    for name in created:
        try:
            client.CoreV1Api(api).delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise


def wait_for_phase(k8s, namespace, name, phases=("completed", "failed"), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backup = k8s.resources.get(api_version=BACKUP[0], kind=BACKUP[1]).get(name=name, namespace=namespace)
        if (backup.status or {}).get("phase") in phases:
            return backup.status
        time.sleep(0.5)
    raise AssertionError(f"Backup {namespace}/{name} reached none of {phases} within {timeout}s")


def test_backups_converge_then_change_nothing_then_turn_off(k8s, cleanup):
    namespace = f"it-bk-{uuid.uuid4().hex[:6]}"
    cleanup.append(namespace)
    variables = role_vars(namespace, FOUNDATION, database_backup_schedule="0 30 2 * * *",
                          database_backup_retention_policy="14d")
    first = run_playbook(ROLES, extra_vars=variables)
    assert first.rc == 0, first

    store = read(k8s, "barmancloud.cnpg.io/v1", "ObjectStore", "flyte-postgres-backups", namespace)
    assert contains(store["spec"], {"retentionPolicy": "14d", "configuration": {
        "destinationPath": "s3://flyte-data/postgres-backups",
        "endpointURL": f"http://flyte-s3.{namespace}.svc.cluster.local:7070",
        "s3Credentials": {"accessKeyId": {"name": "flyte-s3-credentials", "key": "AWS_ACCESS_KEY_ID"},
                          "secretAccessKey": {"name": "flyte-s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"}},
        "wal": {"compression": "gzip"}, "data": {"compression": "gzip"}}})
    cluster = read(k8s, "postgresql.cnpg.io/v1", "Cluster", "flyte-postgres", namespace)
    assert cluster["spec"]["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                           "enabled": True, "parameters": {"barmanObjectName": "flyte-postgres-backups"}}] \
        or contains(cluster["spec"]["plugins"][0], {"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                                    "parameters": {"barmanObjectName": "flyte-postgres-backups"}})
    scheduled = read(k8s, "postgresql.cnpg.io/v1", "ScheduledBackup", "flyte-postgres-daily", namespace)
    assert contains(scheduled["spec"], {"cluster": {"name": "flyte-postgres"}, "schedule": "0 30 2 * * *",
                                        "immediate": True, "backupOwnerReference": "self", "method": "plugin",
                                        "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"}})
    # The immediate backup of the ScheduledBackup completes (simulated operator and plugin).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = k8s.resources.get(api_version=BACKUP[0], kind=BACKUP[1]).get(namespace=namespace).items
        if items and (items[0].status or {}).get("phase") == "completed":
            break
        time.sleep(0.5)
    assert items and items[0].status.phase == "completed", items

    again = run_playbook(ROLES, extra_vars=variables)
    assert again.rc == 0 and again.changed == 0, again
    checked = run_playbook(ROLES, extra_vars=variables, check=True, diff=True)
    assert checked.rc == 0 and checked.changed == 0, checked

    off = run_playbook(ROLES, extra_vars={**variables, "database_backup_enabled": False})
    assert off.rc == 0, off
    assert not read(k8s, "postgresql.cnpg.io/v1", "Cluster", "flyte-postgres", namespace)["spec"].get("plugins")
    for api_version, kind in [("barmancloud.cnpg.io/v1", "ObjectStore"), ("postgresql.cnpg.io/v1", "ScheduledBackup")]:
        assert k8s.resources.get(api_version=api_version, kind=kind).get(namespace=namespace).items == [], kind


@pytest.mark.parametrize(("extra", "message"), [
    ({"database_backup_schedule": "0 3 * * *"}, "database_backup_schedule must be a CloudNativePG schedule"),
    ({"database_backup_retention_policy": "30 days"}, "database_backup_retention_policy must be a recovery window"),
    ({"database_backup_object_store": "external", "database_backup_destination_path": "https://s3.example.com/b"},
     "database_backup_destination_path must be an S3 URL"),
    ({"database_backup_compression": "zstd"}, "database_backup_compression"),
])
def test_bad_backup_input_fails_before_anything_is_written(k8s, cleanup, extra, message):
    namespace = f"it-bk-{uuid.uuid4().hex[:6]}"
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION, **extra))
    assert run.rc != 0 and message in " ".join(run.output.split()), run
    assert namespace not in {n.metadata.name for n in client.CoreV1Api(k8s.client).list_namespace().items}


def test_an_external_store_without_its_credentials_secret_is_refused_before_the_object_store(k8s, cleanup):
    namespace = f"it-bk-{uuid.uuid4().hex[:6]}"
    cleanup.append(namespace)
    run = run_playbook(ROLES, extra_vars=role_vars(
        namespace, FOUNDATION, database_backup_object_store="external",
        database_backup_destination_path="s3://offsite-backups/flyte", database_backup_endpoint_url="https://s3.example.com",
        database_backup_credentials_secret="offsite-s3"))
    assert run.rc != 0, run
    assert f"Secret {namespace}/offsite-s3 (database_backup_credentials_secret), which does not exist" in \
        " ".join(run.output.split()), run
    assert k8s.resources.get(api_version="barmancloud.cnpg.io/v1", kind="ObjectStore").get(namespace=namespace).items == []


def test_the_simulated_operator_refuses_what_cloudnative_pg_refuses(k8s, namespace):
    backups = k8s.resources.get(api_version=BACKUP[0], kind=BACKUP[1])
    clusters = k8s.resources.get(api_version="postgresql.cnpg.io/v1", kind="Cluster")

    # backup_webhook.go: method plugin needs a pluginConfiguration (a ValidatingAdmissionPolicy here).
    with pytest.raises(UnprocessibleEntityError, match="cannot be empty when the backup method is plugin"):
        backups.create(namespace=namespace, body={"apiVersion": BACKUP[0], "kind": BACKUP[1], "metadata": {"name": "np"},
                                                  "spec": {"cluster": {"name": "pg"}, "method": "plugin"}})

    def backup(name, cluster):
        backups.create(namespace=namespace, body={
            "apiVersion": BACKUP[0], "kind": BACKUP[1], "metadata": {"name": name},
            "spec": {"cluster": {"name": cluster}, "method": "plugin",
                     "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"}}})

    backup("no-cluster", "absent")
    assert wait_for_phase(k8s, namespace, "no-cluster").error == \
        'while getting cluster absent: clusters.postgresql.cnpg.io "absent" not found'

    clusters.create(namespace=namespace, body={"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                                               "metadata": {"name": "bare"},
                                               "spec": {"instances": 1, "storage": {"size": "1Gi", "storageClass": "longhorn"}}})
    backup("no-plugin", "bare")
    assert wait_for_phase(k8s, namespace, "no-plugin").error == \
        "cannot proceed with the backup as the cluster has no plugin configured"

    clusters.create(namespace=namespace, body={
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "nostore"},
        "spec": {"instances": 1, "storage": {"size": "1Gi", "storageClass": "longhorn"}, "plugins": [{
            "name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
            "parameters": {"barmanObjectName": "missing-store"}}]}})
    backup("no-store", "nostore")
    status = wait_for_phase(k8s, namespace, "no-store")
    assert status.phase == "failed" and status.error == 'objectstores.barmancloud.cnpg.io "missing-store" not found'
