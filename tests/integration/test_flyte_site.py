"""All six roles in site order on the platform, in a namespace of the test's own: what the flyte role
gives flyte-core (the test stand-in chart) and how the release behaves on reruns and failed upgrades."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid

import pytest
import yaml
from kubernetes import client

from conftest import REPO, remove_deployment, run_playbook

ROLES = "tests/integration/playbooks/roles.yml"
SITE_ORDER = ["secrets", "storage", "database", "authentik", "flyte", "networking"]


def site_vars(namespace: str, overrides: dict | None = None, **extra) -> dict:
    # The FlyteWorkflow CRD is cluster-scoped and owned by one release: the molecule scenario and
    # `make deploy` install it in flyte-system; releases in test namespaces must not compete for it.
    overrides = {"flytepropeller": {"createCRDs": False}, **(overrides or {})}
    return {
        "test_roles": SITE_ORDER, "flyte_namespace": namespace,
        "homelab_flyte_hostname": "flyte.platform.test",
        "networking_parent_refs": [{"name": "platform-gateway", "namespace": "gateway-system", "sectionName": "https"}],
        "authentik_url": "https://authentik.platform.test", "authentik_namespace": f"{namespace}-authentik",
        # Nothing answers at that URL (test_authentik.py tests the wait for the issuer with a test double).
        "authentik_issuer_wait": False,
        "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests/charts/flyte-core"),
        "flyte_release_name": "flyte", "flyte_helm_timeout": 180, "flyte_values_overrides": overrides, **extra,
    }


def helm(*args: str) -> str:
    return subprocess.run(["helm", *args], check=True, capture_output=True, text=True).stdout


def release(namespace: str) -> dict:
    return json.loads(helm("status", "flyte", "-n", namespace, "-o", "json"))


@pytest.fixture(scope="module")
def site(api):
    """One converged deployment shared by the tests of this module (a site converge takes a minute)."""
    namespace = f"it-site-{uuid.uuid4().hex[:6]}"
    run = run_playbook(ROLES, extra_vars=site_vars(namespace))
    assert run.rc == 0, run
    yield namespace, run
    subprocess.run(["helm", "uninstall", "flyte", "-n", namespace, "--wait"], check=False, capture_output=True)
    core = client.CoreV1Api(api)
    for name in (namespace, f"{namespace}-authentik"):
        try:
            core.delete_namespace(name)
        except client.ApiException as error:  # the teardown test removes the namespace itself
            if error.status != 404:
                raise


def config(api, namespace: str, name: str) -> dict[str, object]:
    data = client.CoreV1Api(api).read_namespaced_config_map(name, namespace).data
    return {key: yaml.safe_load(value) for key, value in data.items() if key.endswith(".yaml")}


def secret(api, namespace: str, name: str) -> dict[str, str]:
    data = client.CoreV1Api(api).read_namespaced_secret(name, namespace).data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_flyteadmin_config_points_at_the_other_roles(api, site):
    namespace = site[0]
    admin = config(api, namespace, "flyte-admin-base-config")
    assert admin["db.yaml"]["database"] == {
        "host": f"flyte-postgres-rw.{namespace}.svc.cluster.local", "port": 5432, "username": "flyte",
        "dbname": "flyteadmin", "passwordPath": "/etc/db/password"}
    auth = admin["server.yaml"]["auth"]
    issuer = "https://authentik.platform.test/application/o/flyte/"
    assert admin["server.yaml"]["server"]["security"]["useAuth"] is True
    assert auth["appAuth"]["authServerType"] == "External"
    assert auth["appAuth"]["externalAuthServer"] == {
        "baseUrl": issuer, "metadataUrl": ".well-known/openid-configuration", "allowedAudience": ["flyte", "flytectl"]}
    assert auth["appAuth"]["thirdPartyConfig"]["flyteClient"]["clientId"] == "flytectl"
    assert auth["userAuth"]["openId"]["baseUrl"] == issuer and auth["userAuth"]["openId"]["clientId"] == "flyte"
    # The chart's defaults name the namespace "flyte"; every in-cluster URI must name the real one.
    assert auth["authorizedUris"] == ["https://flyte.platform.test", "http://flyteadmin:80",
                                      f"http://flyteadmin.{namespace}.svc.cluster.local:80"]
    storage = admin["storage.yaml"]["storage"]
    assert storage["container"] == "flyte-data"
    assert storage["connection"]["endpoint"] == f"http://flyte-s3.{namespace}.svc.cluster.local:7070"
    assert storage["connection"]["auth-type"] == "iam"
    assert "secret-key" not in json.dumps(storage) or not storage["connection"].get("secret-key")

    catalog = config(api, namespace, "datacatalog-config")
    assert catalog["db.yaml"]["database"]["dbname"] == "datacatalog"
    propeller = config(api, namespace, "flyte-propeller-config")
    lock = propeller["core.yaml"]["propeller"]["leader-election"]["lock-config-map"]
    assert lock["namespace"] == namespace
    assert propeller["admin.yaml"]["admin"]["clientId"] == "flyte"


def test_secrets_reach_the_pods_from_secrets_not_values(api, site):
    namespace = site[0]
    item = secret(api, namespace, "flyte-secrets")
    assert secret(api, namespace, "flyte-admin-secrets")["oidc_client_secret"] == item["oidc-client-secret"]
    assert secret(api, namespace, "flyte-secret-auth") == {"client_secret": item["oidc-client-secret"]}
    values = helm("get", "values", "flyte", "-n", namespace, "-o", "json")
    s3 = secret(api, namespace, "flyte-s3-credentials")
    for value in [item["password"], item["oidc-client-secret"], *s3.values()]:
        assert value not in values
    admin = client.AppsV1Api(api).read_namespaced_deployment("flyteadmin", namespace).spec.template.spec
    env = {e.name: e.value_from.secret_key_ref for e in admin.containers[0].env or [] if e.value_from}
    assert (env["AWS_SECRET_ACCESS_KEY"].name, env["AWS_SECRET_ACCESS_KEY"].key) == ("flyte-s3-credentials", "AWS_SECRET_ACCESS_KEY")
    mounts = {v.name: v.secret.secret_name for v in admin.volumes if v.secret}
    assert "flyte-db-credentials" in mounts.values() and "flyte-admin-secrets" in mounts.values()


def test_every_component_is_deployed_with_its_label(api, site):
    namespace = site[0]
    apps = client.AppsV1Api(api)
    for name in ["flyteadmin", "flytepropeller", "datacatalog", "flyteconsole", "flytescheduler"]:
        deployments = apps.list_namespaced_deployment(namespace, label_selector=f"app.kubernetes.io/name={name}").items
        assert [d.status.available_replicas for d in deployments] == [1], name


def contained(rendered, live, path: str = "") -> list[str]:
    """Where `live` departs from `rendered`: every key and list item the render has must be in the live object with
    the same value. The API server may add (defaults, status, metadata), so `live` may have more."""
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [f"{path}: rendered a mapping, live has {live!r}"]
        return [problem for key, value in rendered.items() if value is not None
                for problem in contained(value, live.get(key), f"{path}.{key}")]
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(live) != len(rendered):
            return [f"{path}: rendered {len(rendered)} items, live has {live!r}"]
        return [problem for index, (a, b) in enumerate(zip(rendered, live)) for problem in contained(a, b, f"{path}[{index}]")]
    return [] if rendered == live else [f"{path}: rendered {rendered!r}, live {live!r}"]


# The kinds the roles write themselves (the chart's objects are helm's, compared through the values).
ROLE_KINDS = [("v1", "PersistentVolumeClaim"), ("apps/v1", "Deployment"), ("v1", "Service"), ("batch/v1", "Job"),
              ("v1", "ConfigMap"), ("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "Database"),
              ("postgresql.cnpg.io/v1", "ScheduledBackup"), ("barmancloud.cnpg.io/v1", "ObjectStore"),
              ("onepassword.com/v1", "OnePasswordItem"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
              ("gateway.networking.k8s.io/v1", "GRPCRoute"), ("cilium.io/v2", "CiliumNetworkPolicy"),
              ("networking.k8s.io/v1", "NetworkPolicy")]


def test_render_writes_what_the_converge_applied(api, k8s, site, tmp_path):
    """Render and converge build their objects from one source. For the converged deployment's inputs, every object
    playbooks/render.yml writes is on the cluster as rendered, helm has exactly the rendered values, and every object
    the roles wrote (labelled as theirs, owned by no controller) is in the render. Secrets are the exception: a render
    never writes their values."""
    namespace = site[0]
    out = tmp_path / "rendered"
    variables = {key: value for key, value in site_vars(namespace).items() if key != "test_roles"}
    client_id = secret(api, namespace, "flyte-secrets")["oidc-client-id"]
    run = run_playbook("playbooks/render.yml", extra_vars={**variables, "homelab_flyte_render_dir": str(out),
                                                           "authentik_oidc_client_id": client_id})
    assert run.rc == 0, run

    documents = [d for p in sorted(out.glob("*.yaml")) if not p.name.startswith("5")
                 for d in yaml.safe_load_all(p.read_text()) if d]
    assert documents
    problems = {}
    for document in documents:
        live = k8s.resources.get(api_version=document["apiVersion"], kind=document["kind"]).get(
            name=document["metadata"]["name"], namespace=document["metadata"].get("namespace")).to_dict()
        problems.update({f"{document['kind']}/{document['metadata']['name']}": found
                         for found in [contained(document, live)] if found})
    assert problems == {}

    values = yaml.safe_load((out / "50-flyte-values.yaml").read_text())
    assert json.loads(helm("get", "values", "flyte", "-n", namespace, "-o", "json")) == values

    rendered = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in documents}
    written = set()
    for api_version, kind in ROLE_KINDS:
        for name in (namespace, f"{namespace}-authentik"):
            for item in k8s.resources.get(api_version=api_version, kind=kind).get(
                    namespace=name, label_selector="app.kubernetes.io/managed-by=homelab.flyte").to_dict()["items"]:
                if not item["metadata"].get("ownerReferences"):
                    written.add((kind, name, item["metadata"]["name"]))
    assert ("Cluster", namespace, "flyte-postgres") in written and ("HTTPRoute", namespace, "flyte") in written
    assert written - rendered == set()


def test_rerun_changes_nothing_and_leaves_the_release_alone(site):
    namespace = site[0]
    revision = release(namespace)["version"]
    rerun = run_playbook(ROLES, extra_vars=site_vars(namespace))
    assert rerun.rc == 0 and rerun.changed == 0, rerun
    check = run_playbook(ROLES, extra_vars=site_vars(namespace), check=True, diff=True)
    assert check.rc == 0 and check.changed == 0, check
    assert release(namespace)["version"] == revision


def test_changed_values_upgrade_and_a_failed_upgrade_rolls_back(api, site):
    namespace = site[0]
    before = release(namespace)["version"]
    upgraded = run_playbook(ROLES, extra_vars=site_vars(
        namespace, overrides={"flyteadmin": {"podAnnotations": {"homelab.flyte/test": "upgrade"}}}))
    assert upgraded.rc == 0 and upgraded.changed == 1, upgraded
    assert release(namespace)["version"] == before + 1

    # Pods that can never be scheduled: helm --wait times out, and --atomic rolls the release back.
    failing = run_playbook(ROLES, extra_vars=site_vars(
        namespace, flyte_helm_timeout=20,
        overrides={"flyteadmin": {"podAnnotations": {"homelab.flyte/test": "upgrade"},
                                  "nodeSelector": {"homelab.flyte/no-such-node": "true"}}}))
    assert failing.rc != 0, failing
    status = release(namespace)
    assert status["info"]["status"] == "deployed" and status["version"] == before + 3, status
    admin = client.AppsV1Api(api).read_namespaced_deployment("flyteadmin", namespace)
    assert not admin.spec.template.spec.node_selector
    assert admin.spec.template.metadata.annotations.get("homelab.flyte/test") == "upgrade"


def test_a_misspelt_flyte_config_key_is_refused_by_the_preflight_before_any_write(api):
    """flyte-core accepts any values key and FlyteAdmin ignores a config key it does not know: the preflight,
    which renders the chart, must refuse the key before the first role writes anything."""
    namespace = f"it-typo-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    try:
        run = run_playbook(ROLES, extra_vars=site_vars(
            namespace, overrides={"configmap": {"adminServer": {"server": {"securityy": {"secure": True}}}}}))
        assert run.rc != 0, run
        message = " ".join(run.output.split())
        assert ("server.securityy.secure in ConfigMap flyte-admin-base-config, file server.yaml, is not a configuration "
                "key Flyte flyteadmin accepts") in message, run
        assert "Preflight | every Flyte config key the chart renders" in run.output, run
        names = {n.metadata.name for n in core.list_namespace().items}
        assert namespace not in names and f"{namespace}-authentik" not in names
    finally:  # what a run that should have been refused left behind
        remove_deployment(api, namespace)


@pytest.mark.parametrize("old_name", ["networking_hostname", "flyte_hostname", "authentik_flyte_hostname"])
def test_a_host_name_variable_that_was_renamed_is_refused_before_any_write(api, old_name):
    """An inventory of before 0.2.0 still names the host by a role's own variable: the role reading it
    refuses it, names homelab_flyte_hostname, and nothing is written."""
    namespace = f"it-old-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    try:
        run = run_playbook(ROLES, extra_vars=site_vars(namespace, **{old_name: "flyte.platform.test"}))
        assert run.rc != 0, run
        assert f"{old_name} must be unset (it was renamed homelab_flyte_hostname" in " ".join(run.output.split()), run
        names = {n.metadata.name for n in core.list_namespace().items}
        assert namespace not in names and f"{namespace}-authentik" not in names
    finally:
        remove_deployment(api, namespace)


def test_a_misspelt_database_key_names_every_component_that_reads_it_and_leaves_the_release_alone(site):
    namespace = site[0]
    revision = release(namespace)["version"]
    run = run_playbook(ROLES, extra_vars=site_vars(namespace, overrides={
        "db": {"admin": {"database": {"hots": "x"}}, "datacatalog": {"database": {"prot": 5432}}}}))
    assert run.rc != 0, run
    message = " ".join(run.output.split())
    for configmap, binary in [("flyte-admin-base-config", "flyteadmin"), ("flyte-clusterresourcesync-config", "flyteadmin"),
                              ("flyte-scheduler-config", "flytescheduler")]:
        assert f"database.hots in ConfigMap {configmap}, file db.yaml, is not a configuration key Flyte {binary}" in message, run
    assert "database.prot in ConfigMap datacatalog-config, file db.yaml, is not a configuration key Flyte datacatalog" in message
    assert release(namespace)["version"] == revision


def test_teardown_keeps_the_data_volumes_unless_told(api, k8s, site):
    """Last in this module: it removes the shared deployment."""
    namespace = site[0]
    variables = site_vars(namespace)
    down = run_playbook("playbooks/teardown.yml", extra_vars=variables)
    assert down.rc == 0 and down.changed > 0, down
    again = run_playbook("playbooks/teardown.yml", extra_vars=variables)
    assert again.rc == 0 and again.changed == 0, again

    core = client.CoreV1Api(api)
    kept = {p.metadata.name: p for p in core.list_namespaced_persistent_volume_claim(namespace).items}
    assert set(kept) == {"flyte-artifacts", "flyte-postgres-1"}
    assert not kept["flyte-postgres-1"].metadata.owner_references
    assert {s.metadata.name for s in core.list_namespaced_secret(namespace).items} == {"flyte-s3-credentials"}
    assert subprocess.run(["helm", "status", "flyte", "-n", namespace], capture_output=True, check=False).returncode != 0
    for api_version, kind in [("gateway.networking.k8s.io/v1", "HTTPRoute"), ("cilium.io/v2", "CiliumNetworkPolicy"),
                              ("postgresql.cnpg.io/v1", "Cluster"), ("apps/v1", "Deployment"),
                              ("onepassword.com/v1", "OnePasswordItem")]:
        assert k8s.resources.get(api_version=api_version, kind=kind).get(namespace=namespace).items == [], kind

    everything = {**variables, "teardown_delete_volumes": True, "teardown_delete_namespace": True}
    gone = run_playbook("playbooks/teardown.yml", extra_vars=everything)
    assert gone.rc == 0, gone
    assert namespace not in {n.metadata.name for n in core.list_namespace().items}
