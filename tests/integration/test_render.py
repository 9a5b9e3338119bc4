"""playbooks/render.yml writes every manifest and the Helm values without touching a cluster; the API
server then accepts every rendered object (server-side dry run against the real schemas)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ansible_collections.homelab.flyte.plugins.module_utils import flyte_config
from ansible_collections.homelab.flyte.tests.blueprint_schema import load as load_blueprint
from conftest import REPO, run_playbook

RENDER = "playbooks/render.yml"
CHART = REPO / "tests/charts/flyte-core"


def render_vars(directory: Path, namespace: str, **extra) -> dict:
    return {
        "homelab_flyte_render_dir": str(directory), "flyte_namespace": namespace,
        "authentik_namespace": f"{namespace}-authentik", "authentik_oidc_client_id": "flyte",
        "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests/charts/flyte-core"), **extra,
    }


def unreachable(directory: Path) -> dict[str, str]:
    """Credentials that reach no cluster: a render that tried to touch one would fail."""
    broken = directory / "unreachable-kubeconfig"
    broken.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {"token": "x"}}]}))
    return {"KUBECONFIG": str(broken), "K8S_AUTH_KUBECONFIG": str(broken)}


@pytest.fixture
def no_cluster(tmp_path):
    return unreachable(tmp_path)


def objects(path: Path) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text()) if d}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, kubeconfig) -> Path:
    """One render of the defaults with the stand-in chart, shared by the tests that only read it."""
    base = tmp_path_factory.mktemp("render-defaults")
    out = base / "rendered"
    run = run_playbook(RENDER, extra_vars=render_vars(out, "flyte-system"), env=unreachable(base))
    assert run.rc == 0, run
    return out


def test_render_writes_valid_manifests_and_no_secret(api, kubeconfig, tmp_path, no_cluster):
    namespace = f"it-render-{uuid.uuid4().hex[:6]}"
    item = {"username": "flyte", "password": secrets.token_urlsafe(18), "oidc-client-id": "flyte",
            "oidc-client-secret": secrets.token_urlsafe(30)}
    out = tmp_path / "rendered"
    run = run_playbook(RENDER, extra_vars=render_vars(out, namespace, secrets_backend="inline", secrets_inline=item),
                       env=no_cluster, verbosity=2)
    assert run.rc == 0, run
    files = sorted(p.name for p in out.iterdir())
    assert files == ["10-secrets.yaml", "20-storage.yaml", "30-database.yaml", "40-authentik.yaml",
                     "50-flyte-values.yaml", "51-flyte-chart.yaml", "60-networking.yaml"]
    written = "".join(p.read_text() for p in out.iterdir())
    for value in (item["password"], item["oidc-client-secret"]):
        assert value not in written and value not in run.output

    values = yaml.safe_load((out / "50-flyte-values.yaml").read_text())
    assert values["db"]["admin"]["database"]["host"] == f"flyte-postgres-rw.{namespace}.svc.cluster.local"
    assert values["configmap"]["adminServer"]["auth"]["appAuth"]["externalAuthServer"]["baseUrl"] == \
        "https://authentik.platform.test/application/o/flyte/"

    kinds = {(d["kind"], d["metadata"]["name"]) for p in out.glob("[1-4,6]*.yaml")
             for d in yaml.safe_load_all(p.read_text()) if d}
    assert {("PersistentVolumeClaim", "flyte-artifacts"), ("Cluster", "flyte-postgres"),
            ("Database", "flyte-postgres-datacatalog"), ("ConfigMap", "authentik-blueprint-flyte"),
            ("HTTPRoute", "flyte"), ("GRPCRoute", "flyte"), ("CiliumNetworkPolicy", "flyte-default-deny"),
            ("ObjectStore", "flyte-postgres-backups"), ("ScheduledBackup", "flyte-postgres-daily")} <= kinds

    # The real API server, with the real CRDs, accepts every rendered object.
    core = client.CoreV1Api(api)
    for name in (namespace, f"{namespace}-authentik"):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        for path in sorted(out.iterdir()):
            if path.name == "50-flyte-values.yaml" or not any(yaml.safe_load_all(path.read_text())):
                continue
            dry = subprocess.run(["kubectl", "apply", "--dry-run=server", "-f", str(path)],
                                 capture_output=True, text=True, check=False)
            assert dry.returncode == 0, f"{path.name}: {dry.stderr}"
    finally:
        for name in (namespace, f"{namespace}-authentik"):
            core.delete_namespace(name)


def test_render_of_the_operator_backend_includes_the_onepassword_item(tmp_path, no_cluster, kubeconfig):
    out = tmp_path / "rendered"
    run = run_playbook(RENDER, extra_vars=render_vars(out, "flyte-system"), env=no_cluster)
    assert run.rc == 0, run
    documents = [d for d in yaml.safe_load_all((out / "10-secrets.yaml").read_text()) if d]
    labels = {"app.kubernetes.io/part-of": "flyte", "app.kubernetes.io/managed-by": "homelab.flyte"}
    assert documents == [{
        "apiVersion": "onepassword.com/v1", "kind": "OnePasswordItem",
        "metadata": {"name": "flyte-secrets", "namespace": "flyte-system", "labels": labels},
        "spec": {"itemPath": "vaults/Secrets/items/flyte-secrets"}}, {
        # The database credentials: the 1Password operator writes them basic-auth, CloudNativePG reloads them.
        "apiVersion": "onepassword.com/v1", "kind": "OnePasswordItem",
        "metadata": {"name": "flyte-db-credentials", "namespace": "flyte-system", "labels": {**labels, "cnpg.io/reload": "true"},
                     "annotations": {"operator.1password.io/auto-restart": "true"}},
        "type": "kubernetes.io/basic-auth",
        "spec": {"itemPath": "vaults/Secrets/items/flyte-secrets"}}]


def test_render_stops_on_bad_input_and_needs_a_folder(tmp_path, no_cluster, kubeconfig):
    run = run_playbook(RENDER, extra_vars={"flyte_chart_source": "local",
                                           "flyte_chart_path": str(REPO / "tests/charts/flyte-core")}, env=no_cluster)
    assert run.rc != 0 and "homelab_flyte_render_dir must name the folder" in run.output, run
    bad = run_playbook(RENDER, extra_vars=render_vars(tmp_path / "r", "flyte-system", storage_pvc_size="lots"), env=no_cluster)
    assert bad.rc != 0 and "storage_pvc_size must be a Kubernetes quantity" in " ".join(bad.output.split()), bad


def test_datacatalog_service_is_not_a_node_port(rendered):
    """flyte-core's default for datacatalog.service.type is NodePort, which opens DataCatalog on every node."""
    chart = objects(rendered / "51-flyte-chart.yaml")
    assert chart[("Service", "datacatalog")]["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert [name for (kind, name), svc in chart.items() if kind == "Service" and svc["spec"].get("type") == "NodePort"] == []


def test_the_default_render_has_no_config_key_the_binaries_reject_but_the_tolerated_ones(rendered):
    text = (rendered / "51-flyte-chart.yaml").read_text()
    assert flyte_config.unknown_config_keys(text) == []
    rejected = flyte_config.unknown_config_keys(text, tolerated={})
    # Every tolerated entry is needed by the chart's own defaults, and nothing else is rejected.
    used = {entry for entry in flyte_config.TOLERATED
            for p in rejected if (p["configmap"], p["file"]) == entry[:2] and p["key"].lower().startswith(entry[2].lower())}
    assert used == set(flyte_config.TOLERATED), rejected
    assert sorted(p["key"] for p in rejected) == [
        "flyteadmin.testing.host", "manager.pod-application", "manager.pod-template-container-name",
        "manager.pod-template-name", "scheduler.metricsScope"]


FLYTE_BINARIES = {"flyteadmin", "datacatalog", "flytepropeller", "flytescheduler"}


def config_readers(chart: dict) -> dict[str, set[str]]:
    """Which Flyte binary loads which ConfigMap, read off the rendered Deployments: each container's
    --config directory, the volume mounted there, and the ConfigMaps of that volume."""
    readers: dict[str, set[str]] = {}
    for (kind, _name), deployment in chart.items():
        if kind != "Deployment":
            continue
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod.get("initContainers", []) + pod["containers"]:
            words = " ".join(container.get("command", []) + container.get("args", [])).replace("=", " ").split()
            binary = next((w for w in words if w in FLYTE_BINARIES), None)
            if binary is None or "--config" not in words:
                continue
            directory = words[words.index("--config") + 1].rsplit("/", 1)[0]
            mount = next(m for m in container["volumeMounts"] if m["mountPath"].rstrip("/") == directory)
            volume = volumes[mount["name"]]
            sources = volume.get("projected", {}).get("sources", []) + [volume]
            for source in sources:
                if "configMap" in source:
                    readers.setdefault(source["configMap"]["name"], set()).add(binary)
    return readers


def test_the_checker_reads_each_configmap_for_the_binary_the_chart_gives_it(rendered):
    readers = config_readers(objects(rendered / "51-flyte-chart.yaml"))
    assert readers == {name: {binary for binary, _description in who} for name, who in flyte_config.READERS.items()}


def test_a_packaged_chart_is_a_local_chart_source(tmp_path, no_cluster, kubeconfig):
    """docs/air-gapped.md: flyte_chart_path may be a .tgz made by helm package."""
    subprocess.run(["helm", "package", str(CHART), "--destination", str(tmp_path)], check=True, capture_output=True)
    package = tmp_path / "flyte-core-1.16.8.tgz"
    assert package.is_file()
    out = tmp_path / "rendered"
    run = run_playbook(RENDER, extra_vars=render_vars(out, "flyte-system", flyte_chart_path=str(package)), env=no_cluster)
    assert run.rc == 0, run
    chart = objects(out / "51-flyte-chart.yaml")
    assert {("Deployment", "flyteadmin"), ("ConfigMap", "flyte-admin-base-config")} <= set(chart)
    assert f"helm upgrade --install flyte {package} -n flyte-system\n" in (out / "50-flyte-values.yaml").read_text()


def test_flytectl_redirect_uri_is_the_one_the_blueprint_registers(tmp_path, no_cluster, kubeconfig):
    out = tmp_path / "rendered"
    redirect = "http://localhost:8765/flytectl/callback"
    run = run_playbook(RENDER, env=no_cluster, extra_vars=render_vars(out, "flyte-system", authentik_flytectl_redirect_uri=redirect))
    assert run.rc == 0, run
    values = yaml.safe_load((out / "50-flyte-values.yaml").read_text())
    flyte_client = values["configmap"]["adminServer"]["auth"]["appAuth"]["thirdPartyConfig"]["flyteClient"]
    blueprint_map = objects(out / "40-authentik.yaml")[("ConfigMap", "authentik-blueprint-flyte")]
    entries = load_blueprint(next(iter(blueprint_map["data"].values())))["entries"]
    flytectl = next(e["attrs"] for e in entries
                    if e["model"] == "authentik_providers_oauth2.oauth2provider" and e["attrs"].get("client_type") == "public")
    assert [uri["url"] for uri in flytectl["redirect_uris"]] == [redirect]
    assert flyte_client["redirectUri"] == redirect


def test_secret_names_are_the_ones_flyte_core_mounts_even_where_an_inventory_renames_them(tmp_path, no_cluster, kubeconfig):
    """flyte-core mounts flyte-admin-secrets in flyteadmin and flyte-secret-auth in the scheduler whatever the values
    say: the role writes exactly those, and gives propeller the same client-credentials Secret."""
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory/local", inventory)
    with (inventory / "group_vars/flyte.yml").open("a") as group_vars:
        group_vars.write("flyte_admin_secret_name: my-admin-secrets\nflyte_client_secret_name: my-client-auth\n")
    out = tmp_path / "rendered"
    run = run_playbook(RENDER, inventory=inventory / "hosts.yml", env=no_cluster, extra_vars=render_vars(out, "flyte-system"))
    assert run.rc == 0, run

    values = yaml.safe_load((out / "50-flyte-values.yaml").read_text())
    chart = objects(out / "51-flyte-chart.yaml")

    def secret_volumes(name: str) -> set[str]:
        pod = chart[("Deployment", name)]["spec"]["template"]["spec"]
        return {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}

    assert values["secrets"]["adminOauthClientCredentials"]["secretName"] == "flyte-secret-auth"
    assert "flyte-secret-auth" in secret_volumes("flytepropeller") and "flyte-secret-auth" in secret_volumes("flytescheduler")
    assert "flyte-admin-secrets" in secret_volumes("flyteadmin")
    header = "".join(line for line in (out / "50-flyte-values.yaml").read_text().splitlines(True) if line.startswith("#"))
    assert "flyte-admin-secrets" in header and "flyte-secret-auth" in header and "my-" not in header


def flyteadmin_keys() -> set[str]:
    """The keys FlyteAdmin 1.16.8 accepts under strict validation (../shared/flyte-config-keys), lower-cased as viper reads them."""
    shared = Path(os.environ.get("HOMELAB_FLYTE_SHARED") or REPO.parent / "shared")
    return {key.lower() for key in json.loads((shared / "flyte-config-keys" / "flyteadmin.json").read_text())}


def chart_configmap(out: Path, name: str) -> dict:
    [found] = [d for d in yaml.safe_load_all((out / "51-flyte-chart.yaml").read_text())
               if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    return {key: yaml.safe_load(text) for key, text in found["data"].items()}


def test_signed_urls_name_the_object_stores_public_host(tmp_path, no_cluster, kubeconfig):
    """pyflyte register from a laptop uploads to the signed URL FlyteAdmin's DataProxy hands out."""
    out = tmp_path / "rendered"
    namespace = "flyte-system"
    run = run_playbook(RENDER, extra_vars=render_vars(out, namespace), env=no_cluster)
    assert run.rc == 0, run
    values = yaml.safe_load((out / "50-flyte-values.yaml").read_text())
    # flyte-core renders storage.signedUrl only for its sandbox type; for s3 it goes into FlyteAdmin's server.yaml.
    assert values["configmap"]["adminServer"]["storage"] == {
        "signedUrl": {"stowConfigOverride": {"endpoint": "https://flyte-s3.platform.test"}}}
    admin = chart_configmap(out, "flyte-admin-base-config")
    assert admin["server.yaml"]["storage"]["signedUrl"]["stowConfigOverride"] == {"endpoint": "https://flyte-s3.platform.test"}
    # The pods keep the in-cluster endpoint; viper merges server.yaml's storage section into storage.yaml's.
    assert admin["storage.yaml"]["storage"]["connection"]["endpoint"] == f"http://flyte-s3.{namespace}.svc.cluster.local:7070"
    assert "signedUrl" not in admin["storage.yaml"]["storage"]
    assert "storage.signedurl.stowconfigoverride" in flyteadmin_keys()
    routes = [d for d in yaml.safe_load_all((out / "60-networking.yaml").read_text()) if d and d["kind"] == "HTTPRoute"]
    [s3] = [r for r in routes if r["spec"]["hostnames"] == ["flyte-s3.platform.test"]]
    assert [(b["name"], b["port"]) for b in s3["spec"]["rules"][0]["backendRefs"]] == [("flyte-s3", 7070)]


def test_an_external_object_store_signs_its_own_urls(tmp_path, no_cluster, kubeconfig):
    out = tmp_path / "rendered"
    run = run_playbook(RENDER, extra_vars=render_vars(out, "flyte-system", storage_object_store="external",
                                                      storage_s3_endpoint="https://s3.example.com",
                                                      storage_s3_access_key_id="AKIAEXAMPLE",
                                                      storage_s3_secret_access_key="not-a-real-secret"), env=no_cluster)
    assert run.rc == 0, run
    values = yaml.safe_load((out / "50-flyte-values.yaml").read_text())
    assert "storage" not in values["configmap"]["adminServer"]
    assert chart_configmap(out, "flyte-admin-base-config")["storage.yaml"]["storage"]["connection"]["endpoint"] == \
        "https://s3.example.com"
    routes = [d for d in yaml.safe_load_all((out / "60-networking.yaml").read_text()) if d and d["kind"] == "HTTPRoute"]
    assert [r["metadata"]["name"] for r in routes] == ["flyte"]
