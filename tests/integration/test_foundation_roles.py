"""The secrets, storage and database roles on the platform: converge, idempotence, check mode,
secrecy at -vvv, and bad input stopped before anything is written.

Each test works in a namespace of its own, so that the cluster's state before and after a run can be
compared exactly.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid

import psycopg
import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import NotFoundError

from ansible_collections.homelab.flyte.tests.fakes.onepassword_connect import FakeConnectServer
from ansible_collections.homelab.flyte.tests.postgres import postgres_fixture
from conftest import create_test_postgres_namespace, run_playbook

postgres = postgres_fixture()

ROLES = "tests/integration/playbooks/roles.yml"
FOUNDATION = ["secrets", "storage", "database"]
MANAGED = "app.kubernetes.io/managed-by=homelab.flyte"


def fresh_namespace() -> str:
    """A name no namespace has yet: the roles create it, and a failed or check run must not."""
    return f"it-{uuid.uuid4().hex[:8]}"


def read(k8s, api_version: str, kind: str, name: str, namespace: str) -> dict:
    return k8s.resources.get(api_version=api_version, kind=kind).get(name=name, namespace=namespace).to_dict()


def contains(actual, expected) -> bool:
    """Whether actual holds everything in expected; the API server adds defaults from the CRD schemas."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def decoded(secret: client.V1Secret) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def inline_item() -> dict[str, str]:
    return {"username": "flyte", "password": secrets.token_urlsafe(18),
            "oidc-client-id": "flyte", "oidc-client-secret": secrets.token_urlsafe(30)}


def role_vars(namespace: str, roles: list[str], **extra) -> dict:
    return {"test_roles": roles, "flyte_namespace": namespace, "secrets_wait_timeout": 30,
            "database_wait_timeout": 60, "storage_wait_timeout": 120, **extra}


def managed_objects(k8s, namespace: str) -> set[tuple[str, str, str]]:
    """The objects labelled as the collection's in the test's namespace or cluster-scoped: the only
    places these roles write (other tests may work in other namespaces meanwhile)."""
    found = set()
    for api_version, kind in [("v1", "Namespace"), ("v1", "Secret"), ("v1", "PersistentVolumeClaim"),
                              ("v1", "Service"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
                              ("onepassword.com/v1", "OnePasswordItem"), ("postgresql.cnpg.io/v1", "Cluster"),
                              ("postgresql.cnpg.io/v1", "Database")]:
        for item in k8s.resources.get(api_version=api_version, kind=kind).get(label_selector=MANAGED).items:
            if (item.metadata.namespace or namespace) == namespace:
                found.add((kind, item.metadata.namespace or "", item.metadata.name))
    return found


@pytest.fixture
def cleanup(api):
    """Names of namespaces a test made the roles create, deleted afterwards."""
    created: list[str] = []
    yield created
    core = client.CoreV1Api(api)
    for name in created:
        try:
            core.delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def connect_server():
    item = inline_item()
    with FakeConnectServer({"Secrets": {"flyte-secrets": item}}) as server:
        yield server, item


# --- converge and idempotence --------------------------------------------------------------------

def test_reference_deployment_roles_converge_then_change_nothing(api, k8s, cleanup):
    """The reference shape: 1Password operator backend, in-cluster object store, CNPG cluster."""
    namespace = fresh_namespace()
    cleanup.append(namespace)
    first = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION))
    assert first.rc == 0 and first.changed > 0, first

    core = client.CoreV1Api(api)
    item = decoded(core.read_namespaced_secret("flyte-secrets", namespace))
    assert set(item) == {"username", "password", "oidc-client-id", "oidc-client-secret"}
    # The database credentials are the 1Password operator's too: a second item, typed basic-auth, with every field.
    db_secret = core.read_namespaced_secret("flyte-db-credentials", namespace)
    assert db_secret.type == "kubernetes.io/basic-auth"
    assert decoded(db_secret) == item
    assert db_secret.metadata.labels["cnpg.io/reload"] == "true"
    assert db_secret.metadata.annotations["operator.1password.io/auto-restart"] == "true"
    assert [(ref.kind, ref.name) for ref in db_secret.metadata.owner_references] == [("OnePasswordItem", "flyte-db-credentials")]

    opi = read(k8s, "onepassword.com/v1", "OnePasswordItem", "flyte-secrets", namespace)
    assert opi["spec"] == {"itemPath": "vaults/Secrets/items/flyte-secrets"} and "type" not in opi
    db_item = read(k8s, "onepassword.com/v1", "OnePasswordItem", "flyte-db-credentials", namespace)
    assert db_item["spec"] == opi["spec"] and db_item["type"] == "kubernetes.io/basic-auth"

    cluster = read(k8s, "postgresql.cnpg.io/v1", "Cluster", "flyte-postgres", namespace)
    assert contains(cluster["spec"], {
        "instances": 1, "storage": {"size": "20Gi", "storageClass": "longhorn"},
        "bootstrap": {"initdb": {"database": "flyteadmin", "owner": "flyte", "secret": {"name": "flyte-db-credentials"}}}})
    assert (cluster["status"]["phase"], cluster["status"]["readyInstances"]) == ("Cluster in healthy state", 1)
    database = read(k8s, "postgresql.cnpg.io/v1", "Database", "flyte-postgres-datacatalog", namespace)
    assert contains(database["spec"], {"name": "datacatalog", "owner": "flyte", "cluster": {"name": "flyte-postgres"}, "ensure": "present"})

    artifacts = core.read_namespaced_persistent_volume_claim("flyte-artifacts", namespace)
    assert artifacts.spec.storage_class_name == "longhorn" and artifacts.spec.resources.requests["storage"] == "50Gi"
    assert artifacts.status.phase == "Bound"
    store = client.AppsV1Api(api).read_namespaced_deployment("flyte-s3", namespace)
    assert store.status.available_replicas == 1
    assert store.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "flyte-artifacts"
    env = {e.name: e.value_from.secret_key_ref.name for e in store.spec.template.spec.containers[0].env}
    assert env == {"ROOT_ACCESS_KEY_ID": "flyte-s3-credentials", "ROOT_SECRET_ACCESS_KEY": "flyte-s3-credentials"}
    assert set(decoded(core.read_namespaced_secret("flyte-s3-credentials", namespace))) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    assert [job.status.succeeded for job in jobs] == [1]

    second = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION))
    assert second.rc == 0 and second.changed == 0, second
    # Generated S3 credentials are kept, not regenerated.
    assert decoded(core.read_namespaced_secret("flyte-s3-credentials", namespace)) == decoded(
        client.CoreV1Api(api).read_namespaced_secret("flyte-s3-credentials", namespace))

    check = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION), check=True, diff=True)
    assert check.rc == 0 and check.changed == 0, check


FIELD_MANAGER = "homelab.flyte"


def apply_owners(k8s, namespace: str, kind: str, name: str, api_version: str) -> list[tuple[str, str]]:
    entries = read(k8s, api_version, kind, name, namespace)["metadata"].get("managedFields") or []
    return sorted((entry["manager"], entry["operation"]) for entry in entries if not entry.get("subresource"))


def test_objects_written_before_server_side_apply_are_taken_over_then_left_alone(api, k8s, cleanup):
    """Releases before server-side apply wrote with client-side patches, so their fields belong to an Update
    manager, and a user's `kubectl edit` makes another. The first run of this release takes every field it sets,
    a conflicting value included (force_conflicts), and reports the change; the second run changes nothing."""
    namespace = fresh_namespace()
    cleanup.append(namespace)
    variables = role_vars(namespace, FOUNDATION)
    assert run_playbook(ROLES, extra_vars=variables).rc == 0
    kinds = {"Secret": "v1", "PersistentVolumeClaim": "v1", "Service": "v1", "Deployment": "apps/v1", "Job": "batch/v1",
             "OnePasswordItem": "onepassword.com/v1", "Cluster": "postgresql.cnpg.io/v1", "Database": "postgresql.cnpg.io/v1"}
    handed_over = []
    for kind, _namespace, name in sorted(managed_objects(k8s, namespace)):
        resource = k8s.resources.get(api_version=kinds[kind], kind=kind)
        live = resource.get(name=name, namespace=namespace).to_dict()
        entries = live["metadata"]["managedFields"]
        ours = [entry for entry in entries if entry["manager"] == FIELD_MANAGER]
        if not ours:  # written by an operator (the 1Password item's Secret), not by the roles
            continue
        # What an earlier release leaves: the same fields, owned through Update by kubernetes.core's client.
        live["metadata"]["managedFields"] = [entry for entry in entries if entry["manager"] != FIELD_MANAGER] + [
            {**entry, "manager": "OpenAPI-Generator", "operation": "Update"} for entry in ours]
        resource.replace(body=live, namespace=namespace)
        handed_over.append((kind, name))
    for expected in [("Deployment", "flyte-s3"), ("Cluster", "flyte-postgres")]:
        assert expected in handed_over, handed_over
    for kind, name in handed_over:
        assert (FIELD_MANAGER, "Apply") not in apply_owners(k8s, namespace, kind, name, kinds[kind])
    # A value someone else changed since: a conflict, which the role must take over, not stop at.
    client.AppsV1Api(api).patch_namespaced_deployment(
        "flyte-s3", namespace, {"metadata": {"labels": {"app.kubernetes.io/part-of": "someone-else"}}},
        field_manager="kubectl-edit")

    upgrade = run_playbook(ROLES, extra_vars=variables)
    assert upgrade.rc == 0 and upgrade.changed > 0, upgrade
    # The storage role writes its credentials Secret only when it differs from what the role would write:
    # unchanged, it stays its earlier writer's.
    for kind, name in set(handed_over) - {("Secret", "flyte-s3-credentials")}:
        assert (FIELD_MANAGER, "Apply") in apply_owners(k8s, namespace, kind, name, kinds[kind]), (kind, name)
    store = client.AppsV1Api(api).read_namespaced_deployment("flyte-s3", namespace)
    assert store.metadata.labels["app.kubernetes.io/part-of"] == "flyte"

    again = run_playbook(ROLES, extra_vars=variables)
    assert again.rc == 0 and again.changed == 0, again


@pytest.mark.parametrize("backend", ["inline", "onepassword_connect"])
def test_other_secrets_backends_converge_then_change_nothing(api, cleanup, connect_server, backend):
    server, connect_item = connect_server
    item = inline_item() if backend == "inline" else connect_item
    extra = ({"secrets_inline": item} if backend == "inline"
             else {"secrets_connect_host": server.url, "secrets_connect_token": server.token})
    namespace = fresh_namespace()
    cleanup.append(namespace)
    variables = role_vars(namespace, ["secrets"], secrets_backend=backend, **extra)

    first = run_playbook(ROLES, extra_vars=variables)
    assert first.rc == 0 and first.changed > 0, first
    core = client.CoreV1Api(api)
    assert decoded(core.read_namespaced_secret("flyte-secrets", namespace)) == item
    assert decoded(core.read_namespaced_secret("flyte-db-credentials", namespace)) == {
        "username": item["username"], "password": item["password"]}

    second = run_playbook(ROLES, extra_vars=variables)
    assert second.rc == 0 and second.changed == 0, second
    check = run_playbook(ROLES, extra_vars=variables, check=True, diff=True)
    assert check.rc == 0 and check.changed == 0, check


# --- check mode ----------------------------------------------------------------------------------

def test_check_mode_on_an_empty_cluster_reports_changes_and_creates_nothing(k8s, cleanup):
    namespace = fresh_namespace()
    cleanup.append(namespace)
    before = managed_objects(k8s, namespace)
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION), check=True, diff=True)
    # The namespace it would create, once (the first role asks; the others know), and per role the objects it reports
    # it would create in it.
    assert run.rc == 0 and run.changed == 1 + 3, run
    flat = " ".join(run.output.split())
    for objects in ["the item Secret flyte-secrets (backend onepassword_operator) and the basic-auth Secret flyte-db-credentials",
                    "the volume flyte-artifacts, the versitygw Deployment and Service flyte-s3, the Secret flyte-s3-credentials",
                    "the CloudNativePG Cluster flyte-postgres and the Database for datacatalog"]:
        assert f"this role would create {objects}" in flat, run
    with pytest.raises(NotFoundError):
        k8s.resources.get(api_version="v1", kind="Namespace").get(name=namespace)
    assert managed_objects(k8s, namespace) == before


# --- secrecy -------------------------------------------------------------------------------------

def test_no_secret_value_appears_at_vvv(api, cleanup, connect_server):
    server, connect_item = connect_server
    core = client.CoreV1Api(api)
    namespace = fresh_namespace()
    cleanup.append(namespace)
    operator_run = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION), verbosity=3)
    assert operator_run.rc == 0, operator_run
    synced = decoded(core.read_namespaced_secret("flyte-secrets", namespace))
    s3 = decoded(core.read_namespaced_secret("flyte-s3-credentials", namespace))
    rerun = run_playbook(ROLES, extra_vars=role_vars(namespace, FOUNDATION), verbosity=3)
    assert rerun.rc == 0, rerun

    inline = inline_item()
    namespace2 = fresh_namespace()
    cleanup.append(namespace2)
    inline_run = run_playbook(ROLES, extra_vars=role_vars(namespace2, ["secrets"], secrets_backend="inline",
                                                          secrets_inline=inline), verbosity=3)
    assert inline_run.rc == 0, inline_run

    namespace3 = fresh_namespace()
    cleanup.append(namespace3)
    connect_run = run_playbook(ROLES, extra_vars=role_vars(
        namespace3, ["secrets"], secrets_backend="onepassword_connect", secrets_connect_host=server.url,
        secrets_connect_token=server.token), verbosity=3)
    assert connect_run.rc == 0, connect_run

    # Extra vars are echoed by ansible-playbook -vvv only as the command line, which the runner does not print.
    checks = [
        (operator_run.output + rerun.output, [synced["password"], synced["oidc-client-secret"],
                                              s3["AWS_SECRET_ACCESS_KEY"], s3["AWS_ACCESS_KEY_ID"]]),
        (inline_run.output, [inline["password"], inline["oidc-client-secret"]]),
        (connect_run.output, [connect_item["password"], connect_item["oidc-client-secret"], server.token]),
    ]
    for output, values in checks:
        assert "<ansible" in output or "ESTABLISH LOCAL CONNECTION" in output, "not a -vvv run"
        for value in values:
            b64 = base64.b64encode(value.encode()).decode()
            assert value not in output and b64 not in output, f"a secret value leaked into -vvv output (length {len(value)})"


# --- failures with a cause ------------------------------------------------------------------------

def test_operator_sync_missing_a_field_names_it(cleanup):
    namespace = fresh_namespace()
    cleanup.append(namespace)
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, ["secrets"], secrets_onepassword_item="flyte-incomplete",
                                                   secrets_secret_name="flyte-incomplete", secrets_wait_timeout=4))
    assert run.rc != 0 and run.failed == 1, run
    assert "did not sync oidc-client-secret of vaults/Secrets/items/flyte-incomplete" in " ".join(run.output.split()), run


def test_operator_item_not_found_reports_the_operator_status(cleanup):
    namespace = fresh_namespace()
    cleanup.append(namespace)
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, ["secrets"], secrets_onepassword_vault="Elsewhere",
                                                   secrets_wait_timeout=4))
    assert run.rc != 0, run
    flat = " ".join(run.output.split())
    assert ("did not sync username, password, oidc-client-id, oidc-client-secret of vaults/Elsewhere/items/flyte-secrets" in flat
            and "Operator status: failed to retrieve item: failed to 'getVaultID' for vaultNameOrID='Elsewhere': "
                "no vaults found with identifier \"Elsewhere\"" in flat), run


def test_connect_backend_with_a_wrong_token_says_so(cleanup, connect_server):
    server = connect_server[0]
    namespace = fresh_namespace()
    cleanup.append(namespace)
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, ["secrets"], secrets_backend="onepassword_connect",
                                                   secrets_connect_host=server.url, secrets_connect_token="wrong-token"))
    assert run.rc != 0, run
    assert "refused the token" in " ".join(run.output.split()), run


def test_unhealthy_cluster_fails_with_its_phase(api, k8s, namespace):
    """A Cluster the (simulated) operator holds in a phase other than healthy: the role says which."""
    k8s.resources.get(api_version="postgresql.cnpg.io/v1", kind="Cluster").create(namespace=namespace, body={
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "flyte-postgres", "annotations": {"simulation.homelab.flyte/cnpg-phase": "Setting up primary"}},
        "spec": {"instances": 1, "storage": {"size": "20Gi", "storageClass": "longhorn"}}})
    # Without the storage role there is no object store to back up to (the backup tests cover that).
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, ["secrets", "database"], database_wait_timeout=6,
                                                   database_backup_enabled=False))
    assert run.rc != 0, run
    assert 'is not healthy after 6s: phase "Setting up primary", 0 of 1 instances ready' in " ".join(run.output.split()), run


# --- bad input stops before the cluster is touched -----------------------------------------------

INVALID = [
    ({"flyte_namespace": "Flyte_System"}, "secrets_namespace must be a DNS-1123 label"),
    ({"secrets_backend": "vault"}, "secrets_backend"),
    ({"secrets_secret_name": "flyte secrets"}, "secrets_secret_name must be a DNS-1123 subdomain"),
    ({"secrets_database_secret_name": "flyte-secrets"}, "secrets_database_secret_name must be a DNS-1123 subdomain different"),
    ({"secrets_onepassword_vault": "a/b"}, "secrets_onepassword_vault must be the name of a 1Password vault"),
    ({"secrets_wait_timeout": 0}, "secrets_wait_timeout must be a positive number"),
    ({"secrets_backend": "inline", "secrets_inline": {"username": "flyte", "password": "x", "oidc-client-id": "flyte"}},
     "secrets_inline must be a mapping with non-empty username, password, oidc-client-id, oidc-client-secret; missing or empty: oidc-client-secret"),
    ({"secrets_backend": "onepassword_connect", "secrets_connect_host": "connect.lan", "secrets_connect_token": "t"},
     "secrets_connect_host must be the URL of the 1Password Connect server"),
    ({"secrets_backend": "onepassword_connect", "secrets_connect_host": "http://connect.lan", "secrets_connect_token": ""},
     "secrets_connect_token must be a 1Password Connect access token"),
    ({"database_storage_size": "20 GB"}, "database_storage_size must be a Kubernetes quantity"),
    ({"database_instances": 0}, "database_instances must be a whole number from 1 to 2147483647"),
    ({"database_cluster_name": "Flyte_Postgres"}, "database_cluster_name must be a DNS-1123 label"),
    ({"database_owner": "postgres"}, "database_owner must be a PostgreSQL role name other than postgres"),
    ({"database_datacatalog_name": "flyteadmin"}, "database_datacatalog_name must be a PostgreSQL database name different"),
    ({"database_storage_class": "ceph-rbd"}, 'database_storage_class names the StorageClass "ceph-rbd", which the cluster does not have'),
    ({"database_wait_timeout": "soon"}, "database_wait_timeout"),
    ({"storage_pvc_size": "fifty"}, "storage_pvc_size must be a Kubernetes quantity"),
    ({"storage_pvc_class": "nfs"}, 'storage_pvc_class names the StorageClass "nfs", which the cluster does not have'),
    ({"storage_bucket": "Flyte_Data"}, "storage_bucket must be an S3 bucket name"),
    ({"storage_object_store": "external"}, "storage_s3_endpoint must be the URL of the S3 endpoint"),
    ({"storage_s3_access_key_id": "AKIA"}, "storage_s3_access_key_id / storage_s3_secret_access_key must be strings, given together or not at all"),
    ({"storage_internal_port": 80}, "storage_internal_port must be a port from 1024 to 65535"),
]


@pytest.mark.parametrize("variables,message", INVALID, ids=[case[1].split(" ")[0] for case in INVALID])
def test_invalid_input_fails_before_anything_is_written(k8s, cleanup, variables, message):
    namespace = fresh_namespace()
    cleanup.append(namespace)
    before = managed_objects(k8s, namespace)
    run = run_playbook(ROLES, extra_vars={**role_vars(namespace, FOUNDATION), **variables})
    assert run.rc != 0, run
    assert message in " ".join(run.output.split()), run
    assert "Preflight" in run.output and "Ensure namespace" not in run.output, run
    with pytest.raises(NotFoundError):
        k8s.resources.get(api_version="v1", kind="Namespace").get(name=namespace)
    assert managed_objects(k8s, namespace) == before


# --- a password changed at its source reaches PostgreSQL -------------------------------------------

def accepts(postgres, user: str, password: str, database: str) -> bool:
    """Whether the test PostgreSQL lets user in with password (over TCP, as Flyte's services log in)."""
    try:
        postgres.connect(user=user, password=password, dbname=database).close()
        return True
    except psycopg.OperationalError as error:
        if "password authentication failed" not in str(error):
            raise
        return False


def wait_for(what: str, probe, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def rotation(api, postgres, cleanup):
    """A namespace served by the test PostgreSQL, and names of the owner, item and databases no other test uses."""
    suffix = uuid.uuid4().hex[:8]
    names = {"namespace": fresh_namespace(), "owner": f"flyte_{suffix}", "item": f"flyte-secrets-{suffix}",
             "admin": f"flyteadmin_{suffix}", "catalog": f"datacatalog_{suffix}"}
    create_test_postgres_namespace(api, names["namespace"])
    cleanup.append(names["namespace"])
    yield names
    postgres.drop(databases=[names["admin"]], roles=[names["owner"]])


def rotation_vars(names: dict, **extra) -> dict:
    # Without the storage role there is no object store to back up to (the backup tests cover that).
    return role_vars(names["namespace"], ["secrets", "database"], database_owner=names["owner"],
                     database_admin_name=names["admin"], database_datacatalog_name=names["catalog"],
                     database_backup_enabled=False, **extra)


def test_a_password_changed_in_1password_reaches_postgresql_without_a_run(api, postgres, vault, rotation):
    """Issue 10 item 9: the operators alone carry a new password from the 1Password item into PostgreSQL."""
    old, new = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    vault.put(rotation["item"], {"username": rotation["owner"], "password": old, "oidc-client-id": "flyte",
                                 "oidc-client-secret": secrets.token_urlsafe(30)})
    run = run_playbook(ROLES, extra_vars=rotation_vars(rotation, secrets_onepassword_item=rotation["item"]))
    assert run.rc == 0, run
    wait_for("the instance to bootstrap with the item's password",
             lambda: accepts(postgres, rotation["owner"], old, rotation["admin"]))

    vault.set_field(rotation["item"], "password", new)
    wait_for("PostgreSQL to accept the new password and refuse the old",
             lambda: accepts(postgres, rotation["owner"], new, rotation["admin"])
             and not accepts(postgres, rotation["owner"], old, rotation["admin"]))


@pytest.mark.parametrize("backend", ["inline", "onepassword_connect"])
def test_a_password_changed_at_the_source_reaches_postgresql_after_one_run(api, postgres, rotation, backend):
    old, new = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    item = {"username": rotation["owner"], "password": old, "oidc-client-id": "flyte",
            "oidc-client-secret": secrets.token_urlsafe(30)}
    with FakeConnectServer({"Secrets": {"flyte-secrets": item}}) as server:
        source = ({"secrets_inline": item} if backend == "inline"
                  else {"secrets_connect_host": server.url, "secrets_connect_token": server.token})
        run = run_playbook(ROLES, extra_vars=rotation_vars(rotation, secrets_backend=backend, **source))
        assert run.rc == 0, run
        wait_for("the instance to bootstrap with the item's password",
                 lambda: accepts(postgres, rotation["owner"], old, rotation["admin"]))

        item = {**item, "password": new}
        server.set_item("Secrets", "flyte-secrets", item)
        source = {"secrets_inline": item} if backend == "inline" else source
        run = run_playbook(ROLES, extra_vars=rotation_vars(rotation, secrets_backend=backend, **source))
        assert run.rc == 0 and run.changed > 0, run
    wait_for("PostgreSQL to accept the new password and refuse the old",
             lambda: accepts(postgres, rotation["owner"], new, rotation["admin"])
             and not accepts(postgres, rotation["owner"], old, rotation["admin"]))
