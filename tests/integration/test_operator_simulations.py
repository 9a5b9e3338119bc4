"""The platform's operator simulations (tests/platform/simulations/operators.py) and the CRDs it installs, against the
real API server and the test PostgreSQL: they must act as the upstream components do, and refuse what they refuse.

The CloudNativePG instance manager serves only namespaces labelled for the test PostgreSQL; every test here uses
role names no other test uses and drops them afterwards.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import psycopg
import pytest
import yaml
from kubernetes import client

from ansible_collections.homelab.flyte.tests.postgres import postgres_fixture
from conftest import REPO, create_test_postgres_namespace

postgres = postgres_fixture()
SHARED = REPO.parent / "shared"
CNPG = "postgresql.cnpg.io/v1"


def wait_for(what: str, probe, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def accepts(postgres, user: str, password: str) -> bool:
    try:
        postgres.connect(user=user, password=password, dbname="postgres").close()
        return True
    except psycopg.OperationalError as error:
        if "password authentication failed" not in str(error):
            raise
        return False


# --- the CRDs of ../shared, as the API server serves them -------------------------------------------

def test_every_shared_crd_is_served(k8s):
    """tests/platform/platform.py installs every CRD of ../shared/crds, the CloudNativePG Backup, ScheduledBackup and
    DatabaseRole and barman-cloud's ObjectStore among them."""
    names = {yaml.safe_load(path.read_text())["metadata"]["name"] for path in sorted((SHARED / "crds").glob("*.yaml"))}
    assert {"backups.postgresql.cnpg.io", "scheduledbackups.postgresql.cnpg.io", "databaseroles.postgresql.cnpg.io",
            "objectstores.barmancloud.cnpg.io"} <= names
    crds = k8s.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    for name in names:
        crd = crds.get(name=name)
        assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions), name


@pytest.mark.parametrize("spec, message", [
    ({"name": "postgres"}, "the role name postgres is reserved"),
    ({"name": "pg_monitor_copy"}, "role names starting with pg_ are reserved by PostgreSQL"),
    ({"name": "app", "ensure": "absent"}, "ensure: absent is not supported for DatabaseRole"),
    ({"name": "app", "disablePassword": True, "passwordSecret": {"name": "s"}}, "passwordSecret and disablePassword are mutually exclusive"),
    ({"name": "app", "connectionLimit": "many"}, "spec.connectionLimit: Invalid value: \"string\": spec.connectionLimit in body must be of type integer"),
    ({"name": "app", "databaseRoleReclaimPolicy": "drop"}, "Unsupported value: \"drop\""),
])
def test_the_api_server_refuses_an_invalid_databaserole(k8s, namespace, spec, message):
    roles = k8s.resources.get(api_version=CNPG, kind="DatabaseRole")
    with pytest.raises(client.ApiException) as refused:
        roles.create(namespace=namespace, body={"apiVersion": CNPG, "kind": "DatabaseRole", "metadata": {"name": "r"},
                                                "spec": {"cluster": {"name": "flyte-postgres"}, **spec}})
    assert refused.value.status == 422 and message in json.loads(refused.value.body)["message"], refused.value.body


@pytest.mark.parametrize("roles, message", [
    ([{"name": "postgres"}], 'spec.managed.roles: Invalid value: "postgres": This role is reserved for operator use'),
    ([{"name": "cnpg_x"}], 'spec.managed.roles: Invalid value: "cnpg_x": This role is reserved for operator use'),
    ([{"name": "a"}, {"name": "a"}], 'spec.managed.roles: Invalid value: "a": Role name is duplicate of another'),
    ([{"name": "a", "connectionLimit": -2}], "spec.managed.roles: Invalid value: -2: Connection limit should be positive"),
    ([{"name": "a", "disablePassword": True, "passwordSecret": {"name": "s"}}],
     'spec.managed.roles: Invalid value: "a": This role both sets and disables a password'),
])
def test_the_webhooks_refusals_of_managed_roles(k8s, namespace, roles, message):
    clusters = k8s.resources.get(api_version=CNPG, kind="Cluster")
    with pytest.raises(client.ApiException) as refused:
        clusters.create(namespace=namespace, body={"apiVersion": CNPG, "kind": "Cluster", "metadata": {"name": "c"},
                                                   "spec": {"instances": 1, "storage": {"size": "1Gi"}, "managed": {"roles": roles}}})
    assert message in json.loads(refused.value.body)["message"], refused.value.body


# --- the CloudNativePG instance manager ------------------------------------------------------------------

@pytest.fixture
def served(api, k8s, postgres):
    """A namespace the simulated instance manager serves, a Cluster in it, and role names to drop afterwards."""
    name = f"it-{uuid.uuid4().hex[:8]}"
    create_test_postgres_namespace(api, name)
    suffix = uuid.uuid4().hex[:8]
    used = {"namespace": name, "roles": [f"app_{suffix}", f"other_{suffix}"], "database": f"app_{suffix}"}
    yield used
    client.CoreV1Api(api).delete_namespace(name)
    postgres.drop(databases=[used["database"]], roles=used["roles"])


def basic_auth(core, namespace, name, username, password, reload=True):
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name, labels={"cnpg.io/reload": "true"} if reload else None),
                           type="kubernetes.io/basic-auth", string_data={"username": username, "password": password})
    core.create_namespaced_secret(namespace, body)


def cluster_status(k8s, namespace):
    return (k8s.resources.get(api_version=CNPG, kind="Cluster").get(name="pg", namespace=namespace).to_dict().get("status") or {})


def create_cluster(k8s, namespace, owner, database, managed=None):
    spec = {"instances": 1, "storage": {"size": "1Gi", "storageClass": "longhorn"},
            "bootstrap": {"initdb": {"database": database, "owner": owner, "secret": {"name": "app-credentials"}}}}
    if managed:
        spec["managed"] = {"roles": managed}
    k8s.resources.get(api_version=CNPG, kind="Cluster").create(
        namespace=namespace, body={"apiVersion": CNPG, "kind": "Cluster", "metadata": {"name": "pg"}, "spec": spec})


def test_managed_roles_are_applied_with_their_password_and_reported(api, k8s, postgres, served):
    core, namespace = client.CoreV1Api(api), served["namespace"]
    owner, other = served["roles"]
    basic_auth(core, namespace, "app-credentials", owner, "owner-pw")
    basic_auth(core, namespace, "other-credentials", other, "first-pw")
    create_cluster(k8s, namespace, owner, served["database"], managed=[
        {"name": other, "ensure": "present", "login": True, "createdb": True, "comment": "a managed role",
         "passwordSecret": {"name": "other-credentials"}},
        {"name": f"missing_{other}", "login": True, "passwordSecret": {"name": "no-such-secret"}}])
    wait_for("the managed role to log in", lambda: accepts(postgres, other, "first-pw"))
    # Upstream's Create (internal/management/controller/roles/postgres.go) runs CREATE ROLE and
    # COMMENT ON ROLE as two statements, outside one transaction: the comment may land just after
    # the role can log in, so it is waited for, not read once.
    wait_for("the managed role's attributes and comment", lambda: postgres.sql(
        "SELECT rolcreatedb, rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_authid "
        "WHERE rolname = %s", [other]) == [(True, True, "a managed role")])

    def reconciled_roles():
        status = cluster_status(k8s, namespace).get("managedRolesStatus") or {}
        return status if (status.get("byStatus") or {}).get("reconciled") else None
    status = wait_for("the managed roles' status", reconciled_roles)
    assert other in status["byStatus"]["reconciled"] and "postgres" in status["byStatus"]["reserved"]
    assert status["byStatus"]["pending-reconciliation"] == [f"missing_{other}"]
    assert status["cannotReconcile"] == {f"missing_{other}": [
        'failed to get password secret no-such-secret: secrets "no-such-secret" not found']}
    assert set(status["passwordStatus"][other]) == {"transactionID", "resourceVersion"}

    # A new password in the (reload-labelled) Secret is applied; the old one stops working.
    secret = core.read_namespaced_secret("other-credentials", namespace)
    secret.data["password"] = base64.b64encode(b"second-pw").decode()
    core.replace_namespaced_secret("other-credentials", namespace, secret)
    wait_for("the new password", lambda: accepts(postgres, other, "second-pw") and not accepts(postgres, other, "first-pw"))

    # ensure: absent drops the role.
    clusters = k8s.resources.get(api_version=CNPG, kind="Cluster")
    clusters.patch(name="pg", namespace=namespace, content_type="application/merge-patch+json",
                   body={"spec": {"managed": {"roles": [{"name": other, "ensure": "absent"}]}}})
    wait_for("the role to be dropped", lambda: not postgres.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", [other]))


def test_the_owners_password_follows_the_initdb_secret_only_when_cloudnative_pg_is_told(api, k8s, postgres, served):
    """refreshCredentialsFromSecret runs when the operator reconciles the Cluster: a Secret labelled cnpg.io/reload
    (or owned by the Cluster) triggers it, an unlabelled one does not until the Cluster changes."""
    core, namespace = client.CoreV1Api(api), served["namespace"]
    owner = served["roles"][0]
    basic_auth(core, namespace, "app-credentials", owner, "first-pw", reload=False)
    create_cluster(k8s, namespace, owner, served["database"])
    wait_for("the bootstrap", lambda: accepts(postgres, owner, "first-pw"))
    secret = core.read_namespaced_secret("app-credentials", namespace)
    secret.data["password"] = base64.b64encode(b"second-pw").decode()
    core.replace_namespaced_secret("app-credentials", namespace, secret)
    time.sleep(5)
    assert accepts(postgres, owner, "first-pw") and not accepts(postgres, owner, "second-pw")
    core.patch_namespaced_secret("app-credentials", namespace, {"metadata": {"labels": {"cnpg.io/reload": "true"}}})
    wait_for("the labelled Secret's password", lambda: accepts(postgres, owner, "second-pw"))
    assert cluster_status(k8s, namespace)["secretsResourceVersion"]["applicationSecretVersion"] == \
        core.read_namespaced_secret("app-credentials", namespace).metadata.resource_version


def test_databaseroles_are_applied_refused_when_the_cluster_manages_the_role_and_dropped_on_delete(api, k8s, postgres, served):
    core, namespace = client.CoreV1Api(api), served["namespace"]
    owner, other = served["roles"]
    basic_auth(core, namespace, "app-credentials", owner, "owner-pw")
    basic_auth(core, namespace, "other-credentials", other, "role-pw")
    create_cluster(k8s, namespace, owner, served["database"], managed=[{"name": owner, "login": True}])
    roles = k8s.resources.get(api_version=CNPG, kind="DatabaseRole")
    roles.create(namespace=namespace, body={"apiVersion": CNPG, "kind": "DatabaseRole", "metadata": {"name": "other"}, "spec": {
        "cluster": {"name": "pg"}, "name": other, "login": True, "passwordSecret": {"name": "other-credentials"},
        "databaseRoleReclaimPolicy": "delete"}})
    roles.create(namespace=namespace, body={"apiVersion": CNPG, "kind": "DatabaseRole", "metadata": {"name": "owner"}, "spec": {
        "cluster": {"name": "pg"}, "name": owner, "login": True}})

    def role_status(name):
        return roles.get(name=name, namespace=namespace).to_dict().get("status") or {}
    status = wait_for("the DatabaseRole applied", lambda: role_status("other") if role_status("other").get("applied") else None)
    assert accepts(postgres, other, "role-pw")
    secret_version = core.read_namespaced_secret("other-credentials", namespace).metadata.resource_version
    assert status["observedGeneration"] == 1 and status["secretResourceVersion"] == secret_version
    assert [(c["type"], c["reason"], c["message"]) for c in status["conditions"]] == [
        ("PasswordSecretChange", "ChangeDetected", secret_version)]
    assert "cnpg.io/deleteRole" in roles.get(name="other", namespace=namespace).metadata.finalizers
    refused = wait_for("the conflicting DatabaseRole refused",
                       lambda: role_status("owner") if role_status("owner").get("applied") is False else None)
    assert refused["message"] == "database role is already managed by the CNPG cluster"

    roles.delete(name="other", namespace=namespace)
    wait_for("the role dropped under reclaim policy delete",
             lambda: not postgres.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", [other]))


# --- the 1Password operator ------------------------------------------------------------------------------

def test_the_1password_operator_refuses_to_change_a_secrets_type_and_restarts_workloads(api, k8s, namespace, vault):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    title = f"item-{uuid.uuid4().hex[:8]}"
    vault.put(title, {"username": "u", "password": "p1", "note with spaces!": "kept", "empty": ""})
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="typed"), string_data={"a": "b"}))
    items = k8s.resources.get(api_version="onepassword.com/v1", kind="OnePasswordItem")
    for name in ("typed", "creds"):
        items.create(namespace=namespace, body={
            "apiVersion": "onepassword.com/v1", "kind": "OnePasswordItem",
            "metadata": {"name": name, "labels": {"team": "flyte"}, "annotations": {"operator.1password.io/auto-restart": "true"}},
            "type": "kubernetes.io/basic-auth", "spec": {"itemPath": f"vaults/Secrets/items/{title}"}})

    def ready(name):
        conditions = (items.get(name=name, namespace=namespace).to_dict().get("status") or {}).get("conditions") or []
        return conditions[0] if conditions else None

    assert wait_for("the refusal", lambda: ready("typed")) == {
        "type": "Ready", "status": "False", "message": "cannot change secret type: secret type is immutable",
        "lastTransitionTime": ready("typed")["lastTransitionTime"]}
    condition = wait_for("the sync", lambda: ready("creds"))
    assert condition["status"] == "True" and "message" not in condition
    secret = core.read_namespaced_secret("creds", namespace)
    assert secret.type == "kubernetes.io/basic-auth" and secret.metadata.labels == {"team": "flyte"}
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {
        "username": "u", "password": "p1", "note-with-spaces": "kept"}
    assert secret.metadata.annotations["operator.1password.io/item-version"] == "1"
    assert secret.metadata.annotations["operator.1password.io/item-path"].startswith("vaults/")
    assert [(r.kind, r.name, r.controller) for r in secret.metadata.owner_references] == [("OnePasswordItem", "creds", None)]

    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "uses-it"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "uses-it"}}, "template": {
            "metadata": {"labels": {"app": "uses-it"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "db", "secret": {"secretName": "creds"}}]}}}})
    # The item's own reconciliations (after its finalizer and status writes) are done: the next change of the item
    # reaches the Secret through the poller, the path that restarts workloads.
    time.sleep(5)
    vault.set_field(title, "password", "p2")
    wait_for("the new version", lambda: base64.b64decode(core.read_namespaced_secret("creds", namespace).data["password"]) == b"p2")
    assert core.read_namespaced_secret("creds", namespace).metadata.annotations["operator.1password.io/item-version"] == "2"
    wait_for("the restart", lambda: (apps.read_namespaced_deployment("uses-it", namespace).spec.template.metadata.annotations or {})
             .get("operator.1password.io/last-restarted"))
