"""flyte_health on the platform, against a deployment the six roles converge into the test module's own namespace.

What is real and what is not, check by check:

* pods, claims, the CloudNativePG Cluster, the OnePasswordItem and its Secret, the ConfigMaps and the routes are
  real objects of the real API server; their status comes from kwok and the simulations in tests/platform;
* database_reachable goes through a real `exec` into the simulated primary pod, which kwok runs as a local psql
  against the test PostgreSQL of tests/postgres.py, which authenticates as a CloudNativePG instance does (only
  postgres over the socket); the module's namespace is served by the simulated instance manager
  (tests/platform/simulations/operators.py), which bootstraps the Cluster's owner and database there with the
  password of the credentials Secret. Used when the server can start, otherwise the check is skipped and the
  test says why;
* blueprint_instance and oidc_discovery ask test_authentik.FakeAuthentik, a clearly named test double of
  Authentik's two endpoints on 127.0.0.1;
* admin_healthcheck goes through the real API server's service proxy; the API server's connection to the
  flyteadmin pod's address goes through the platform's simulated pod network (simulations/cluster_network.py),
  which enforces the namespace's CiliumNetworkPolicies as Cilium would for the kube-apiserver entity, and
  behind which a stand-in answers FlyteAdmin's /healthcheck: no FlyteAdmin process runs in kwok's pods.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from conftest import REPO, create_test_postgres_namespace, run_playbook
from test_authentik import FakeAuthentik

CHECK = "tests/integration/playbooks/flyte_health_check.yml"
SITE = "tests/integration/playbooks/flyte_health_site.yml"
ROLES = ["secrets", "storage", "database", "authentik", "flyte", "networking"]
NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
COMPONENTS = ["flyteadmin", "flytepropeller", "datacatalog", "flyteconsole", "flytescheduler"]


def inventory_vars() -> dict:
    """inventory/local/group_vars/flyte.yml, which playbooks/site.yml uses on this platform."""
    import yaml
    return yaml.safe_load((REPO / "inventory" / "local" / "group_vars" / "flyte.yml").read_text())


def wait_until(what: str, probe, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class TestPostgres:
    """The test PostgreSQL of tests/postgres.py, when that harness exists and its server can start here."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.server, self.reason, self._manager = None, None, None
        try:
            harness = importlib.import_module("ansible_collections.homelab.flyte.tests.postgres")
        except ImportError as error:
            self.reason = f"tests/postgres.py is not importable ({error})"
            return
        try:
            self._manager = harness.running_postgres()
            self.server = self._manager.__enter__()
        except Exception as error:  # noqa: BLE001 - PostgresUnavailable, or the port taken by another run
            self._manager, self.reason = None, f"the test PostgreSQL cannot start: {error}"

    def stop(self) -> None:
        if self._manager is not None:
            self._manager.__exit__(None, None, None)


class Deployment:
    """The converged deployment of the module's tests, and the arguments that check it."""

    def __init__(self, namespace: str, authentik: FakeAuthentik, postgres: TestPostgres, database: str | None) -> None:
        self.namespace, self.authentik, self.postgres, self.database = namespace, authentik, postgres, database

    def args(self, **extra) -> dict:
        skip = [] if self.database else ["database_reachable"]
        args = {
            "namespace": self.namespace,
            "authentik": {"namespace": self.namespace, "url": self.authentik.url, "api_token": self.authentik.token},
            # The database role's facts: the owner flyte and its database flyteadmin, bootstrapped by the simulated
            # instance manager in the test PostgreSQL.
            "database": {"user": "flyte", "name": "flyteadmin"},
            "skip_checks": skip,
            "check_timeout": 30,
        }
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(args.get(key), dict):
                args[key] = {**args[key], **value}
            else:
                args[key] = value
        return args

    def check(self, tmp_path: Path, check: bool = False, ignore_errors: bool = False, **extra):
        """Run flyte_health through ansible-playbook; (the run, the module's result)."""
        result_file = tmp_path / f"health-{uuid.uuid4().hex[:6]}.json"
        run = run_playbook(CHECK, extra_vars={"health_args": self.args(**extra), "result_file": str(result_file),
                                              "health_ignore_errors": ignore_errors}, check=check, env=NO_PROXY)
        return run, json.loads(result_file.read_text()) if result_file.exists() else None


def by_name(result: dict) -> dict[str, dict]:
    return {check["name"]: check for check in result["checks"]}


@pytest.fixture(scope="module")
def deployment(api, kubeconfig, tmp_path_factory):
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    postgres = TestPostgres()
    database = None
    if postgres.server is not None:
        # The simulated instance manager bootstraps the Cluster of this namespace in the test PostgreSQL.
        database = "flyteadmin"
        create_test_postgres_namespace(api, namespace)
    fake = FakeAuthentik(core, namespace)
    fake.__enter__()
    facts_result = tmp_path_factory.mktemp("health") / "site.json"
    extra = {
        **inventory_vars(),
        "test_roles": ROLES, "flyte_namespace": namespace,
        # Authentik's objects in the test's namespace too, so that tests running at once do not share them.
        "authentik_namespace": namespace, "authentik_url": fake.url,
        # The local inventory skips the wait for the issuer (nothing answers there); the double does.
        "authentik_issuer_wait": True,
        "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests" / "charts" / "flyte-core"),
        # The FlyteWorkflow CRD is cluster-scoped and owned by one Helm release: a second release (this namespace
        # next to flyte-system) must not claim it.
        "flyte_values_overrides": {"flytepropeller": {"createCRDs": False}},
        "health_skip_checks": ["database_reachable"], "result_file": str(facts_result),
        "secrets_wait_timeout": 60, "database_wait_timeout": 120, "networking_wait_timeout": 60,
    }
    try:
        converge = run_playbook(SITE, extra_vars=extra, env=NO_PROXY)
        assert converge.rc == 0, converge
        if database:
            wait_until("the simulated instance to bootstrap flyteadmin", lambda: postgres.server.sql(
                "SELECT 1 FROM pg_database WHERE datname = 'flyteadmin'"), timeout=60)
        deployed = Deployment(namespace, fake, postgres, database)
        deployed.site_result = json.loads(facts_result.read_text())
        yield deployed
    finally:
        subprocess.run(["helm", "uninstall", "flyte", "-n", namespace, "--kubeconfig", kubeconfig, "--wait", "--timeout", "60s"],
                       capture_output=True, check=False)
        try:
            core.delete_namespace(namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise
        fake.__exit__(None, None, None)
        if database:
            postgres.server.drop(databases=[database], roles=["flyte"])
        postgres.stop()


# --- a healthy deployment ------------------------------------------------------------------------

def test_the_converged_deployment_is_healthy_with_the_roles_facts(deployment):
    """The EXAMPLES' first task: the module fed with the facts the roles published, right after them."""
    result = deployment.site_result
    assert result["healthy"] is True and result["failed"] is False, result["summary"]
    statuses = {name: check["status"] for name, check in by_name(result).items()}
    assert statuses.pop("database_reachable") == "skipped"
    assert statuses.pop("blueprint_instance") == "skipped"  # no API token in the facts
    assert set(statuses.values()) == {"ok"}, result["checks"]
    checks = by_name(result)
    assert checks["admin_auth_config"]["message"] == (
        f"useAuth true, authServerType External, issuer {deployment.authentik.url}/application/o/flyte/")
    # The 1Password operator v1.12 reports Ready without a message.
    assert checks["onepassword_item"]["message"] == "vaults/Secrets/items/flyte-secrets synced: Ready"


def test_healthy_deployment_passes_every_check(deployment, tmp_path):
    run, result = deployment.check(tmp_path)
    assert run.rc == 0 and run.changed == 0, run
    checks = by_name(result)
    assert list(checks) == [f"{c}_pods" for c in COMPONENTS] + health_fixed_checks()
    assert checks["admin_healthcheck"]["status"] == "ok", checks["admin_healthcheck"]
    assert checks["admin_healthcheck"]["message"] == (
        f"GET /api/v1/namespaces/{deployment.namespace}/services/flyteadmin:http/proxy/healthcheck answered HTTP 200")
    if deployment.database is None:
        assert checks["database_reachable"]["status"] == "skipped"
        pytest.skip(f"database_reachable not checked through exec: {deployment.postgres.reason}")
    assert checks["database_reachable"]["status"] == "ok", checks["database_reachable"]
    assert checks["database_reachable"]["message"] == (
        "flyte may log in to flyteadmin (LOGIN, a password, CONNECT; the password was not compared), "
        "as postgres found over the socket of flyte-postgres-1")
    statuses = {name: c["status"] for name, c in checks.items()}
    assert set(statuses.values()) == {"ok"}, result["checks"]
    assert result["summary"] == f"healthy: {len(statuses)} of {len(statuses)} checks ok"
    for name in ("flyteadmin_pods", "database_cluster", "blueprint_instance", "oidc_discovery", "http_route", "grpc_route"):
        assert checks[name]["hint"] == "", checks[name]
    assert checks["blueprint_instance"]["message"].startswith("blueprint homelab-flyte-oidc applied")
    assert deployment.authentik.token not in run.output and deployment.authentik.token not in json.dumps(result)


def health_fixed_checks() -> list[str]:
    return ["volume_claims", "database_cluster", "database_reachable", "onepassword_item", "secret_keys",
            "blueprint_configmap", "blueprint_instance", "admin_auth_config", "oidc_discovery", "http_route",
            "grpc_route", "admin_healthcheck"]


def test_check_mode_runs_the_same_checks(deployment, tmp_path):
    run, result = deployment.check(tmp_path, check=True)
    assert run.rc == 0 and run.changed == 0, run
    assert result["healthy"] is True and result["counts"]["fail"] == 0


def test_a_missing_database_fails_with_its_hint(deployment, tmp_path):
    if deployment.database is None:
        pytest.skip(f"no exec into the test PostgreSQL: {deployment.postgres.reason}")
    run, result = deployment.check(tmp_path, ignore_errors=True, checks=["database_reachable"], skip_checks=[],
                                   database={"name": "no_such_database"})
    assert run.rc == 0 and result["failed"] is True, run
    check = by_name(result)["database_reachable"]
    assert check["status"] == "fail"
    assert check["message"] == "the database no_such_database does not exist on the Cluster flyte-postgres"
    assert f"kubectl -n {deployment.namespace} get cluster flyte-postgres -o jsonpath='{{.spec.bootstrap}}'" in check["hint"]


def test_the_app_users_password_is_compared_and_never_shown(api, deployment, tmp_path):
    """database.password: whether the password Flyte mounts is the one PostgreSQL holds (read as postgres, compared here)."""
    if deployment.database is None:
        pytest.skip(f"no exec into the test PostgreSQL: {deployment.postgres.reason}")
    import base64
    secret = client.CoreV1Api(api).read_namespaced_secret("flyte-db-credentials", deployment.namespace)
    password = base64.b64decode(secret.data["password"]).decode()
    run, result = deployment.check(tmp_path, checks=["database_reachable"], skip_checks=[], database={"password": password})
    assert run.rc == 0, run
    check = by_name(result)["database_reachable"]
    assert check["status"] == "ok" and "the password matches" in check["message"], check
    assert password not in run.output and password not in json.dumps(result)
    run, result = deployment.check(tmp_path, ignore_errors=True, checks=["database_reachable"], skip_checks=[],
                                   database={"password": password + "-stale"})
    check = by_name(result)["database_reachable"]
    assert check["status"] == "fail" and check["message"] == (
        "the password given (database.password) is not the one PostgreSQL holds for flyte"), check


# --- broken on purpose ---------------------------------------------------------------------------

def scale(api, namespace: str, deployment_name: str, replicas: int) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment_scale(deployment_name, namespace, {"spec": {"replicas": replicas}})


def active_pods(api, namespace: str, component: str) -> list:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={component}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def ready_pods(api, namespace: str, component: str) -> list:
    return [p for p in active_pods(api, namespace, component)
            if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]


@pytest.fixture
def propeller_restored(api, deployment):
    yield
    scale(api, deployment.namespace, "flytepropeller", 1)
    wait_until("flytepropeller ready again", lambda: ready_pods(api, deployment.namespace, "flytepropeller"))


def test_a_component_scaled_to_zero_fails_its_pods_check_with_the_hint(api, deployment, propeller_restored, tmp_path):
    scale(api, deployment.namespace, "flytepropeller", 0)
    wait_until("flytepropeller's pods gone", lambda: not active_pods(api, deployment.namespace, "flytepropeller"))
    run, result = deployment.check(tmp_path)
    assert run.rc != 0 and run.failed == 1, run
    assert result["healthy"] is False and result["failed_checks"] == ["flytepropeller_pods"]
    check = by_name(result)["flytepropeller_pods"]
    ns = deployment.namespace
    # The scaled-down pod may still be terminating: it is not counted, and said.
    assert check["message"].startswith(f"no running pods labelled app.kubernetes.io/name=flytepropeller in {ns}")
    assert f"kubectl -n {ns} get deployment flytepropeller -o wide" in check["hint"]
    assert f"kubectl -n {ns} scale deployment flytepropeller --replicas=1" in check["hint"]
    assert result["summary"].startswith("unhealthy: 1 of ") and "checks failed (flytepropeller_pods)" in result["summary"]
    # The task's message lists the failure with its hint, for the person reading the play's output.
    flat = " ".join(run.output.split())
    assert "Module failed: unhealthy: 1 of " in flat, run
    assert f"flytepropeller_pods: no running pods labelled app.kubernetes.io/name=flytepropeller in {ns}" in flat, run
    assert f"Hint: kubectl -n {ns} get deployment flytepropeller -o wide" in flat, run


def test_wait_recovers_when_the_component_comes_back(api, deployment, propeller_restored, tmp_path):
    scale(api, deployment.namespace, "flytepropeller", 0)
    wait_until("flytepropeller's pods gone", lambda: not active_pods(api, deployment.namespace, "flytepropeller"))
    comeback = threading.Timer(4, scale, args=(api, deployment.namespace, "flytepropeller", 1))
    comeback.start()
    try:
        started = time.monotonic()
        run, result = deployment.check(tmp_path, wait=True, timeout=90, wait_sleep=1)
    finally:
        comeback.cancel()
    assert run.rc == 0, run
    assert result["healthy"] is True and result["attempts"] > 1, result["summary"]
    assert by_name(result)["flytepropeller_pods"]["status"] == "ok"
    assert time.monotonic() - started < 90


def test_wait_reports_the_last_round_at_the_timeout(api, deployment, propeller_restored, tmp_path):
    scale(api, deployment.namespace, "flytepropeller", 0)
    wait_until("flytepropeller's pods gone", lambda: not active_pods(api, deployment.namespace, "flytepropeller"))
    run, result = deployment.check(tmp_path, ignore_errors=True, wait=True, timeout=4, wait_sleep=1,
                                   checks=["flytepropeller_pods", "flyteadmin_pods"], skip_checks=[])
    assert result["failed"] is True and result["failed_checks"] == ["flytepropeller_pods"]
    assert result["attempts"] >= 2 and " attempts in " in result["summary"]


@pytest.fixture
def cluster_released(k8s, deployment):
    clusters = k8s.resources.get(api_version="postgresql.cnpg.io/v1", kind="Cluster")
    yield clusters
    clusters.patch(name="flyte-postgres", namespace=deployment.namespace, content_type="application/merge-patch+json",
                   body={"metadata": {"annotations": {"simulation.homelab.flyte/cnpg-phase": None}}})
    wait_until("the Cluster healthy again", lambda: (clusters.get(name="flyte-postgres", namespace=deployment.namespace)
                                                     .to_dict().get("status", {}).get("phase")) == "Cluster in healthy state")


def test_a_cluster_held_unhealthy_fails_the_cluster_check_with_its_hint(deployment, cluster_released, tmp_path):
    clusters, ns = cluster_released, deployment.namespace
    clusters.patch(name="flyte-postgres", namespace=ns, content_type="application/merge-patch+json",
                   body={"metadata": {"annotations": {"simulation.homelab.flyte/cnpg-phase": "Setting up primary"}}})
    wait_until("the simulated operator to hold the phase", lambda: (clusters.get(name="flyte-postgres", namespace=ns)
                                                                    .to_dict().get("status", {}).get("phase")) == "Setting up primary")
    run, result = deployment.check(tmp_path, ignore_errors=True)
    assert result["failed"] is True, run
    check = by_name(result)["database_cluster"]
    assert check["status"] == "fail"
    assert check["message"] == 'phase "Setting up primary", 0/1 instances ready'
    assert check["hint"].startswith(f"kubectl -n {ns} get cluster flyte-postgres; kubectl -n {ns} describe cluster flyte-postgres")
    assert "database_cluster" in result["failed_checks"] and "flyteadmin_pods" not in result["failed_checks"]


@pytest.fixture
def blueprint_restored(api, deployment):
    core = client.CoreV1Api(api)
    saved = core.read_namespaced_config_map("authentik-blueprint-flyte", deployment.namespace)
    yield core
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=saved.metadata.name, labels=saved.metadata.labels), data=saved.data)
    try:
        core.create_namespaced_config_map(deployment.namespace, body)
    except client.ApiException as error:
        if error.status != 409:
            raise


def test_removing_the_blueprint_configmap_fails_that_check(deployment, blueprint_restored, tmp_path):
    blueprint_restored.delete_namespaced_config_map("authentik-blueprint-flyte", deployment.namespace)
    run, result = deployment.check(tmp_path, ignore_errors=True)
    assert result["failed"] is True, run
    check = by_name(result)["blueprint_configmap"]
    assert check["status"] == "fail"
    assert check["message"] == f"no blueprint ConfigMap {deployment.namespace}/authentik-blueprint-flyte"
    assert check["hint"].startswith(f"kubectl -n {deployment.namespace} get configmap authentik-blueprint-flyte")
    # The Authentik double plays a worker that no longer sees the file.
    assert by_name(result)["blueprint_instance"]["message"] == (
        "Authentik has no blueprint instance named homelab-flyte-oidc: its worker does not see the file")
    assert by_name(result)["flyteadmin_pods"]["status"] == "ok"


def test_unknown_check_name_is_refused_before_any_read(deployment, tmp_path):
    run, result = deployment.check(tmp_path, ignore_errors=True, checks=["flyteadmin_pod"])
    assert result["failed"] is True and "checks" not in result
    assert result["msg"].startswith("unknown check name flyteadmin_pod; the checks are: flyteadmin_pods,")


@pytest.fixture
def admin_policy_restored(k8s, deployment):
    policies = k8s.resources.get(api_version="cilium.io/v2", kind="CiliumNetworkPolicy")
    saved = policies.get(name="flyte-admin", namespace=deployment.namespace).to_dict()["spec"]
    yield policies
    policies.patch(name="flyte-admin", namespace=deployment.namespace, content_type="application/merge-patch+json",
                   body={"spec": {"ingress": saved["ingress"]}})


def test_without_the_api_servers_rule_the_health_check_is_dropped(deployment, admin_policy_restored, tmp_path):
    """The policy the collection wrote before it let the API server in: the service proxy's connection is dropped."""
    policies, ns = admin_policy_restored, deployment.namespace
    ingress = policies.get(name="flyte-admin", namespace=ns).to_dict()["spec"]["ingress"]
    without = [rule for rule in ingress if rule.get("fromEntities") != ["kube-apiserver"]]
    assert len(without) == len(ingress) - 1, ingress
    policies.patch(name="flyte-admin", namespace=ns, content_type="application/merge-patch+json", body={"spec": {"ingress": without}})
    time.sleep(1)  # the simulated network's watch sees the change
    run, result = deployment.check(tmp_path, ignore_errors=True, checks=["admin_healthcheck"], skip_checks=[])
    check = by_name(result)["admin_healthcheck"]
    assert check["status"] == "fail", check
    assert "answered HTTP 503" in check["message"] and "simulated Cilium dropped kube-apiserver" in check["message"], check
