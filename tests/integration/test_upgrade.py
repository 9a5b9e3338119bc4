"""playbooks/upgrade.yml and playbooks/restore.yml on the platform: a deployment installed from a 1.15-shaped
copy of the stand-in chart, upgraded to the 1.16.8 stand-in; the compatibility refusal; a forced failing
upgrade and the restore of its dump into the real test PostgreSQL.

The 1.15 chart is made at test time from tests/charts/flyte-core (which other work changes): a copy with
chart and image version 1.15.3 and the `flyteconnector` values and templates renamed `flyteagent`, as
flyte-core 1.15 named them (1.16 renamed the subchart). So it follows the 1.16.8 stand-in as it changes,
with nothing duplicated in the repository.

The CloudNativePG Cluster is simulated; its primary pod's `postgres` container runs pg_dump and
pg_restore against the real test PostgreSQL (tests/platform/simulations/postgres-exec.yaml), and Backups
reach `completed` through tests/platform/simulations/cnpg_backup.py. Each step is checked through
helm, the Kubernetes API and psycopg, never through the playbooks' own output alone.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ansible_collections.homelab.flyte.tests.postgres import postgres_fixture
from conftest import REPO, S3_ACCESS_KEY, S3_BUCKET, remove_deployment, run_playbook
from test_flyte_site import ROLES, site_vars

postgres = postgres_fixture(scope="module")
HEALTH_SKIPS = ["admin_healthcheck", "oidc_discovery", "database_reachable"]


def make_chart_1_15(stand_in: Path, into: Path) -> Path:
    """The 1.16.8 stand-in as flyte-core 1.15.3 shaped it: flyteagent where 1.16 has flyteconnector."""
    chart = into / "flyte-core"
    shutil.copytree(stand_in, chart)
    renames = [("flyteconnector", "flyteagent"), ("connector-service", "agent-service"),
               ("defaultConnector", "defaultAgent"), ("connector_service.yaml", "agent_service.yaml"),
               ("1.16.8", "1.15.3")]
    for path in chart.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for old, new in renames:
                text = text.replace(old, new)
            path.write_text(text, encoding="utf-8")
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["version"] == "1.15.3"
    assert "flyteagent" in yaml.safe_load((chart / "values.yaml").read_text())
    return chart


@pytest.fixture(scope="module")
def deployment(api, postgres, tmp_path_factory):
    """Every role in site order, with flyte-core 1.15.3 (the stand-in's 1.15 shape), and rows in both databases."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"it-upg-{suffix}"
    work = tmp_path_factory.mktemp("upgrade")
    old_chart = make_chart_1_15(REPO / "tests/charts/flyte-core", work)
    admin, catalog = f"flyteadmin_{suffix}", f"datacatalog_{suffix}"
    created_owner = not postgres.sql("SELECT 1 FROM pg_roles WHERE rolname = 'flyte'")
    if created_owner:
        postgres.sql("CREATE ROLE flyte LOGIN")
    for name in (admin, catalog):
        postgres.sql(f'CREATE DATABASE "{name}" OWNER flyte')
    with postgres.connect(dbname=admin) as conn:
        conn.execute("SET ROLE flyte")
        conn.execute("CREATE TABLE projects (identifier text PRIMARY KEY, name text, state int)")
        conn.execute("INSERT INTO projects SELECT 'p' || i, 'Project ' || i, i % 2 FROM generate_series(1, 300) i")
    with postgres.connect(dbname=catalog) as conn:
        conn.execute("SET ROLE flyte")
        conn.execute("CREATE TABLE datasets (project text, name text, version text, UNIQUE (project, name, version))")
        conn.execute("INSERT INTO datasets SELECT 'p1', 'ds' || i, 'v1' FROM generate_series(1, 120) i")
    variables = {**site_vars(namespace), "database_admin_name": admin, "database_datacatalog_name": catalog,
                 "flyte_health_skip_checks": HEALTH_SKIPS, "flyte_health_timeout": 120,
                 "upgrade_dump_dir": str(work / "dumps")}
    installed = run_playbook(ROLES, extra_vars={**variables, "flyte_chart_path": str(old_chart)})
    assert installed.rc == 0, installed
    assert release(namespace)["chart"] == "flyte-core-1.15.3"
    yield {"namespace": namespace, "vars": variables, "work": work, "admin": admin, "catalog": catalog}
    remove_deployment(api, namespace)
    query = "SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s"
    databases = [row[0] for row in postgres.sql(query, [f"{admin}%", f"{catalog}%"])]
    postgres.drop(databases=databases, roles=["flyte"] if created_owner else [])


def flat(output):
    """The output with YAML's line wrapping undone, to look for a sentence in it."""
    return " ".join(output.split())


def release(namespace):
    """The release as `helm list` shows it: revision, chart (name-version), status."""
    [found] = json.loads(subprocess.run(["helm", "list", "-n", namespace, "--filter", "^flyte$", "-a", "-o", "json"],
                                        check=True, capture_output=True, text=True).stdout)
    return {**found, "revision": int(found["revision"])}


def rows(postgres, database):
    tables = [row[0] for row in postgres.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename", dbname=database)]
    return {table: sorted(map(repr, postgres.sql(f'SELECT * FROM "{table}"', dbname=database))) for table in tables}


def backups(k8s, namespace):
    listing = k8s.resources.get(api_version="postgresql.cnpg.io/v1", kind="Backup").get(namespace=namespace)
    return {item.metadata.name: item for item in listing.items if item.metadata.name.startswith("flyte-postgres-upgrade-")}


def admin_db_config(api, namespace):
    data = client.CoreV1Api(api).read_namespaced_config_map("flyte-admin-base-config", namespace).data
    return yaml.safe_load(data["db.yaml"])["database"]


def dump_dirs(deployment):
    root = deployment["work"] / "dumps"
    return sorted(p for p in root.iterdir()) if root.exists() else []


def test_1_compatibility_refuses_a_removed_key_before_any_write(deployment, k8s):
    namespace = deployment["namespace"]
    before = release(namespace)
    overrides = {"flytepropeller": {"createCRDs": False}, "flyteagent": {"enabled": True}}
    refused = run_playbook("playbooks/upgrade.yml", extra_vars={**deployment["vars"], "flyte_values_overrides": overrides})
    assert refused.rc != 0, refused
    assert "flyteagent.enabled (set by flyte_values_overrides): the new chart (flyte-core 1.16.8) has no top-level key " \
           "flyteagent; renamed to flyteconnector?" in refused.output, refused
    assert "(installed: flyte-core 1.15.3)" in refused.output
    assert refused.changed == 0, refused
    assert release(namespace)["revision"] == before["revision"]
    assert backups(k8s, namespace) == {} and dump_dirs(deployment) == []


def test_2_upgrade_from_1_15_to_1_16_then_nothing_to_do(deployment, api, k8s, postgres):
    namespace = deployment["namespace"]
    before = release(namespace)
    upgraded = run_playbook("playbooks/upgrade.yml", extra_vars=deployment["vars"])
    assert upgraded.rc == 0, upgraded
    after = release(namespace)
    assert after["chart"] == "flyte-core-1.16.8" and after["revision"] == before["revision"] + 1, after
    assert after["status"] == "deployed"

    taken = backups(k8s, namespace)
    assert len(taken) == 1, taken
    backup = next(iter(taken.values()))
    assert backup.spec.method == "plugin" and backup.spec.pluginConfiguration.name == "barman-cloud.cloudnative-pg.io"
    assert backup.status.phase == "completed" and backup.status.backupId, backup.status

    [dump] = dump_dirs(deployment)
    manifest = json.loads((dump / "manifest.json").read_text())
    assert [entry["database"] for entry in manifest["dumps"]] == [deployment["admin"], deployment["catalog"]]
    assert "Project 17" not in upgraded.output  # no dump content in the output

    again = run_playbook("playbooks/upgrade.yml", extra_vars=deployment["vars"])
    assert again.rc == 0 and again.changed == 0, again
    assert "nothing to upgrade" in flat(again.output)
    assert release(namespace)["revision"] == after["revision"]
    assert len(backups(k8s, namespace)) == 1 and len(dump_dirs(deployment)) == 1


def test_3_a_failed_upgrade_rolls_back_and_its_dump_restores(deployment, api, postgres):
    namespace = deployment["namespace"]
    before = release(namespace)
    expected = {name: rows(postgres, name) for name in (deployment["admin"], deployment["catalog"])}
    assert len(expected[deployment["admin"]]["projects"]) == 300
    failing = {"flytepropeller": {"createCRDs": False},
               "flyteadmin": {"nodeSelector": {"homelab.flyte/no-such-node": "true"}}}
    failed = run_playbook("playbooks/upgrade.yml", extra_vars={
        **deployment["vars"], "flyte_values_overrides": failing, "flyte_helm_timeout": 20})
    assert failed.rc != 0, failed
    status = release(namespace)
    assert status["status"] == "deployed" and status["revision"] == before["revision"] + 2, status
    assert status["chart"] == before["chart"]
    admin = client.AppsV1Api(api).read_namespaced_deployment("flyteadmin", namespace)
    assert not admin.spec.template.spec.node_selector
    match = re.search(r"homelab\.flyte\.restore -e restore_src=(/[^\s'\"]+)", failed.output)
    assert match, failed
    dump = Path(match.group(1))
    assert dump in dump_dirs(deployment)
    assert "helm rolled the upgrade back" in flat(failed.output)

    # What a user would do next: check, then restore.
    restore_vars = {**deployment["vars"], "restore_src": str(dump), "restore_suffix": "_restored"}
    checked = run_playbook("playbooks/restore.yml", extra_vars=restore_vars, check=True)
    assert checked.rc == 0, checked
    assert f"{deployment['admin']}_restored" not in postgres.databases()

    restored = run_playbook("playbooks/restore.yml", extra_vars=restore_vars)
    assert restored.rc == 0, restored
    for name in (deployment["admin"], deployment["catalog"]):
        assert rows(postgres, f"{name}_restored") == expected[name], name
    assert admin_db_config(api, namespace)["dbname"] == f"{deployment['admin']}_restored"
    catalog = yaml.safe_load(client.CoreV1Api(api).read_namespaced_config_map("datacatalog-config", namespace).data["db.yaml"])
    assert catalog["database"]["dbname"] == f"{deployment['catalog']}_restored"
    assert f"database_admin_name: {deployment['admin']}_restored" in flat(restored.output)

    again = run_playbook("playbooks/restore.yml", extra_vars=restore_vars)
    assert again.rc == 0 and again.changed == 0, again


def test_4_dumps_kept_in_the_object_store_restore_from_there(deployment, api, postgres, s3, tmp_path):
    """In AWX the job's container is discarded: the dumps of a failed upgrade are kept in the object store
    (a real S3 server, versitygw), and restore.yml fetches and restores them from their s3:// location."""
    namespace = deployment["namespace"]
    expected = {name: rows(postgres, name) for name in (deployment["admin"], deployment["catalog"])}
    client.CoreV1Api(api).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="dump-store-keys"),
        string_data={"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3["secret"]}))
    store_vars = {"upgrade_dump_store_url": f"s3://{S3_BUCKET}/upgrades", "upgrade_dump_store_endpoint": s3["endpoint"],
                  "upgrade_dump_store_credentials_secret": "dump-store-keys", "upgrade_dump_dir": str(tmp_path / "job")}
    failing = {"flytepropeller": {"createCRDs": False},
               "flyteadmin": {"nodeSelector": {"homelab.flyte/no-such-node": "true"}}}
    failed = run_playbook("playbooks/upgrade.yml", extra_vars={
        **deployment["vars"], **store_vars, "flyte_values_overrides": failing, "flyte_helm_timeout": 20})
    assert failed.rc != 0, failed
    match = re.search(rf"homelab\.flyte\.restore -e restore_src=(s3://{S3_BUCKET}/upgrades/[^\s'\"]+)", failed.output)
    assert match, failed
    stored = s3["data"] / S3_BUCKET / "upgrades" / match.group(1).rsplit("/", 1)[1]
    assert sorted(p.name for p in stored.iterdir()) == sorted(p.name for p in (tmp_path / "job" / stored.name).iterdir())
    assert s3["secret"] not in failed.output

    # The job's container is gone: nothing of it is left on this host.
    shutil.rmtree(tmp_path / "job")
    restore_vars = {**deployment["vars"], "restore_src": match.group(1), "restore_suffix": "_from_store",
                    "restore_store_endpoint": s3["endpoint"], "restore_store_credentials_secret": "dump-store-keys",
                    "restore_fetch_dir": str(tmp_path / "fetched")}
    checked = run_playbook("playbooks/restore.yml", extra_vars=restore_vars, check=True)
    assert checked.rc == 0 and not (tmp_path / "fetched").exists(), checked
    restored = run_playbook("playbooks/restore.yml", extra_vars=restore_vars)
    assert restored.rc == 0, restored
    for name in (deployment["admin"], deployment["catalog"]):
        assert rows(postgres, f"{name}_from_store") == expected[name], name
    assert admin_db_config(api, namespace)["dbname"] == f"{deployment['admin']}_from_store"
    assert s3["secret"] not in restored.output
