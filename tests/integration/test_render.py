"""playbooks/render.yml writes every manifest and the Helm values without touching a cluster; the API
server then accepts every rendered object (server-side dry run against the real schemas)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from conftest import REPO, run_playbook

RENDER = "playbooks/render.yml"


def render_vars(directory: Path, namespace: str, **extra) -> dict:
    return {
        "homelab_flyte_render_dir": str(directory), "flyte_namespace": namespace,
        "authentik_namespace": f"{namespace}-authentik", "authentik_oidc_client_id": "flyte",
        "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests/charts/flyte-core"), **extra,
    }


@pytest.fixture
def no_cluster(tmp_path, monkeypatch):
    """Credentials that reach no cluster: a render that tried to touch one would fail."""
    broken = tmp_path / "unreachable-kubeconfig"
    broken.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {"token": "x"}}]}))
    return {"KUBECONFIG": str(broken), "K8S_AUTH_KUBECONFIG": str(broken)}


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
            ("HTTPRoute", "flyte"), ("GRPCRoute", "flyte"), ("CiliumNetworkPolicy", "flyte-default-deny")} <= kinds

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
    assert documents == [{
        "apiVersion": "onepassword.com/v1", "kind": "OnePasswordItem",
        "metadata": {"name": "flyte-secrets", "namespace": "flyte-system",
                     "labels": {"app.kubernetes.io/part-of": "flyte", "app.kubernetes.io/managed-by": "homelab.flyte"}},
        "spec": {"itemPath": "vaults/Secrets/items/flyte-secrets"}}]


def test_render_stops_on_bad_input_and_needs_a_folder(tmp_path, no_cluster, kubeconfig):
    run = run_playbook(RENDER, extra_vars={"flyte_chart_source": "local",
                                           "flyte_chart_path": str(REPO / "tests/charts/flyte-core")}, env=no_cluster)
    assert run.rc != 0 and "homelab_flyte_render_dir must name the folder" in run.output, run
    bad = run_playbook(RENDER, extra_vars=render_vars(tmp_path / "r", "flyte-system", storage_pvc_size="lots"), env=no_cluster)
    assert bad.rc != 0 and "storage_pvc_size must be a Kubernetes quantity" in " ".join(bad.output.split()), bad


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
