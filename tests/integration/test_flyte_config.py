"""The configuration the Flyte 1.16.8 components will see, read by Flyte's own loader.

playbooks/render.yml renders flyte-core (the stand-in chart) with the values the flyte role
computes; each Deployment's config files are laid out as its volumes mount them and loaded by
flyte-config (tests/platform/flyte), which is flytestdlib's config/viper loader with the config
sections flytepropeller registers. viper lower-cases map keys: a key whose case matters to its
consumer (an environment variable's name, a template placeholder) must survive the load.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import run_playbook
from flyte_code import config_files, config_search_path, containers, effective_config
from test_render import render_vars

RENDER = "playbooks/render.yml"
NAMESPACE = "flyte-system"
ENDPOINT = f"http://flyte-s3.{NAMESPACE}.svc.cluster.local:7070"
# flyteadmin/pkg/clusterresource/controller.go: the sync sets these itself and refuses them in templateData.
SYSTEM_PLACEHOLDERS = {"namespace", "project", "domain"}
PLACEHOLDER = re.compile(r"{{ (\S+) }}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, kubeconfig, flyte_programs):
    """The chart's objects and each config-reading container's effective configuration."""
    assert kubeconfig, "the platform's PATH has helm"
    out = tmp_path_factory.mktemp("render")
    broken = out / "unreachable-kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    run = run_playbook(RENDER, extra_vars=render_vars(out / "rendered", NAMESPACE),
                       env={"KUBECONFIG": str(broken), "K8S_AUTH_KUBECONFIG": str(broken)})
    assert run.rc == 0, run
    objects = [d for d in yaml.safe_load_all((out / "rendered" / "51-flyte-chart.yaml").read_text()) if d]
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    loaded = {}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        for container in containers(deployment):
            if config_search_path(container) is None:
                continue
            key = f"{deployment['metadata']['name']}/{container['name']}"
            folder = out / "files" / key
            search = config_files(deployment, container, configmaps, folder)
            loaded[key] = {"container": container, "folder": folder, "search": search,
                           "config": effective_config(flyte_programs["flyte-config"], search)}
    return {"objects": objects, "configmaps": configmaps, "loaded": loaded}


def as_map(value):
    """A list of one-key mappings read as one mapping, as flytestdlib's sliceToMapHook decodes a
    list into a map-typed field (config/viper/viper.go)."""
    if isinstance(value, list):
        return {key: item for entry in value for key, item in entry.items()}
    return value


def test_every_component_loads_the_files_its_deployment_mounts(rendered):
    loaded = rendered["loaded"]
    # Every Flyte component with a config file, and each admin init container that reads it.
    assert {"flyteadmin/run-migrations", "flyteadmin/seed-projects", "flyteadmin/sync-cluster-resources",
            "flyteadmin/generate-secrets", "flyteadmin/flyteadmin", "datacatalog/run-migrations",
            "datacatalog/datacatalog", "flytepropeller/flytepropeller", "flytescheduler/flytescheduler-check",
            "flytescheduler/flytescheduler", "syncresources/sync-cluster-resources"} <= set(loaded), sorted(loaded)
    for key, entry in loaded.items():
        written = sorted(str(p) for p in Path(entry["folder"]).rglob("*.yaml"))
        assert entry["config"]["files"] and sorted(entry["config"]["files"]) == written, key
        assert entry["config"]["errors"] == [], (key, entry["config"]["errors"])


def test_task_pods_get_the_s3_endpoint_under_the_name_flytekit_reads(rendered):
    """Issue 10 item 1: the k8s plugin uses default-env-vars' keys as the variables' names."""
    config = rendered["loaded"]["flytepropeller/flytepropeller"]["config"]
    k8s = config["sections"]["plugins"]["k8s"]
    assert k8s["default-env-vars"] == {"FLYTE_AWS_ENDPOINT": ENDPOINT}
    assert k8s["default-env-from-secrets"] == ["flyte-s3-credentials"]
    storage = config["sections"]["storage"]
    assert (storage["type"], storage["container"]) == ("s3", "flyte-data")
    assert {k: storage["connection"][k] for k in ("endpoint", "auth-type", "region")} == {
        "endpoint": ENDPOINT, "auth-type": "iam", "region": "us-east-1"}


@pytest.mark.parametrize("key", ["flyteadmin/sync-cluster-resources", "syncresources/sync-cluster-resources"])
def test_every_cluster_resource_placeholder_is_substituted(rendered, key):
    """Issue 10 item 2. flyteadmin's cluster resource sync (flyteadmin/pkg/clusterresource/controller.go,
    not served as a module, so its rule is restated here) replaces the exact text `{{ <key> }}` of every
    templateData key, and of the domain's customData keys, with the value; a value from `env` is the
    sync container's variable. The keys are the ones the loader hands over."""
    entry = rendered["loaded"][key]
    settings = entry["config"]["settings"]
    resources = settings["cluster_resources"]
    env = {e["name"] for e in entry["container"].get("env", [])}
    common = as_map(resources.get("templatedata", {}))
    custom = {domain: as_map(data) for domain, data in as_map(resources.get("customdata", {})).items()}
    for name, source in [*common.items(), *(i for d in custom.values() for i in d.items())]:
        source = {k.lower(): v for k, v in source.items()}
        if "valuefrom" in source:
            assert source["valuefrom"]["env"] in env, f"{key}: {name} reads an unset variable"
    mount = next(m for m in entry["container"]["volumeMounts"] if m["mountPath"] == resources["templatepath"])
    volume = next(v for v in rendered["objects"] if v["kind"] == "Deployment"
                  and v["metadata"]["name"] == key.split("/")[0])["spec"]["template"]["spec"]["volumes"]
    templates = rendered["configmaps"][next(v for v in volume if v["name"] == mount["name"])["configMap"]["name"]]
    assert templates, key
    domains = [d["id"] for d in settings.get("domains", [])]
    assert domains == ["development", "staging", "production"], key
    for domain in domains:
        known = {*common, *custom.get(domain, {}), *SYSTEM_PLACEHOLDERS}
        for name, template in templates.items():
            left = set(PLACEHOLDER.findall(template)) - known
            assert not left, f"{key}: {name} keeps {sorted(left)} in {domain} (templateData has {sorted(common)})"
