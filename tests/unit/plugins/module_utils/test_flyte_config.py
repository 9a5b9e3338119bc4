"""module_utils/flyte_config.py and the filter flyte_unknown_config_keys: strict keys of Flyte's config files.

The key sets are the binaries' own (see tests/unit/test_flyte_config_keys.py); these tests pin how a
rendered config file is walked and matched against them.
"""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.flyte.plugins.filter.flyte_config import FilterModule
from ansible_collections.homelab.flyte.plugins.module_utils import flyte_config as fc
from ansible_collections.homelab.flyte.plugins.module_utils.flyte_config_keys import KEYS


def configmap(name: str, **files) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {filename.replace("_yaml", ".yaml"): yaml.safe_dump(doc) if not isinstance(doc, str) else doc
                     for filename, doc in files.items()}}


def keys(problems) -> list[tuple[str, str, str]]:
    return [(p["configmap"], p["file"], p["key"]) for p in problems]


# ---- walking a document ------------------------------------------------------------------------

def test_paths_of_nested_mappings_lists_of_objects_and_leaves():
    doc = {"server": {"httpPort": 8088, "security": {"allowedOrigins": ["*"], "secure": False}},
           "domains": [{"id": "development", "name": "development"}, {"id": "production"}],
           "empty": {}, "none": None, "nolist": []}
    assert sorted(fc.config_paths(doc)) == sorted([
        ("server", "httpPort"), ("server", "security", "allowedOrigins"), ("server", "security", "secure"),
        ("domains[]", "id"), ("domains[]", "name"), ("domains[]", "id"), ("empty",), ("none",), ("nolist",)])


def test_a_list_mixing_objects_and_scalars_is_a_leaf():
    assert list(fc.config_paths({"a": [{"b": 1}, "c"]})) == [("a",)]


def test_an_empty_document_has_no_keys():
    assert list(fc.config_paths(None)) == [] and list(fc.config_paths({})) == []


# ---- matching one path ---------------------------------------------------------------------------

@pytest.mark.parametrize("path,binary", [
    (("server", "security", "secure"), "flyteadmin"),
    (("admin", "clientId"), "flytepropeller"),
    (("database", "postgres", "passwordPath"), "datacatalog"),
    (("scheduler", "profilerPort"), "flytescheduler"),
])
def test_keys_of_the_binary_are_accepted(path, binary):
    assert fc.is_accepted(path, binary)


@pytest.mark.parametrize("path", [
    ("SERVER", "Security", "SECURE"), ("server", "security", "allowcors"), ("Admin", "ClientID"),
])
def test_matching_ignores_case_as_viper_does(path):
    binary = "flytepropeller" if path[0].lower() == "admin" else "flyteadmin"
    assert fc.is_accepted(path, binary)


@pytest.mark.parametrize("path", [
    ("server", "securityy", "secure"), ("server", "security", "secur"), ("serverr",), ("server", "z"),
])
def test_misspelt_keys_are_rejected(path):
    assert not fc.is_accepted(path, "flyteadmin")


def test_keys_of_another_binary_are_rejected():
    assert fc.is_accepted(("admin", "clientId"), "flyteadmin")
    assert not fc.is_accepted(("admin", "clientId"), "datacatalog")
    assert fc.is_accepted(("plugins", "athena", "defaultCatalog"), "flytepropeller")
    assert not fc.is_accepted(("plugins", "athena", "defaultCatalog"), "flyteadmin")
    assert not fc.is_accepted(("application", "grpcPort"), "flyteadmin")
    assert fc.is_accepted(("application", "grpcPort"), "datacatalog")


def test_a_section_holding_an_empty_value_is_accepted():
    assert fc.is_accepted(("server",), "flyteadmin")  # server: {} or server: null
    assert fc.is_accepted(("server", "security"), "flyteadmin")
    assert fc.is_accepted(("plugins", "k8s"), "flytepropeller")
    assert not fc.is_accepted(("plugins", "k8ss"), "flytepropeller")


def test_entries_of_map_typed_keys_are_data_in_any_case_and_form():
    for entry in (("FLYTE_AWS_ENDPOINT",), ("flyte_aws_endpoint",), ("anything", "deeper")):
        assert fc.is_accepted(("plugins", "k8s", "default-env-vars") + entry, "flytepropeller")
    # The list form Flyte's sandbox chart writes: - FLYTE_AWS_ENDPOINT: ...
    assert fc.is_accepted(("plugins", "k8s", "default-env-vars[]", "FLYTE_AWS_ENDPOINT"), "flytepropeller")
    assert fc.is_accepted(("cluster_resources", "templateData", "s3AccessKeyId", "valueFrom", "env"), "flyteadmin")
    assert fc.is_accepted(("cluster_resources", "templateData[]", "s3AccessKeyId", "value"), "flyteadmin")
    # Map-typed leaves other than the two the collection sets.
    assert fc.is_accepted(("plugins", "k8s", "default-annotations", "cluster-autoscaler.kubernetes.io/safe-to-evict"),
                          "flytepropeller")
    assert not fc.is_accepted(("plugins", "k8s", "default-env-var", "FLYTE_AWS_ENDPOINT"), "flytepropeller")
    assert not fc.is_accepted(("cluster_resources", "templatedatas", "x"), "flyteadmin")


def test_list_of_object_paths_match_the_marked_keys_only():
    assert "domains[].id" in KEYS["flyteadmin"]
    assert fc.is_accepted(("domains[]", "id"), "flyteadmin")
    assert fc.is_accepted(("Domains[]", "NAME"), "flyteadmin")
    assert fc.is_accepted(("domains",), "flyteadmin")  # domains: []
    assert not fc.is_accepted(("domains[]", "idd"), "flyteadmin")
    assert not fc.is_accepted(("domains", "id"), "flyteadmin")  # a mapping where a list of objects belongs


# ---- a rendered chart ----------------------------------------------------------------------------

def test_only_the_flyte_configmaps_and_their_yaml_files_are_read():
    manifests = [
        configmap("flyte-console-config", settings_yaml={"whatever": 1}),
        configmap("flyte-admin-base-config", **{"server_yaml": {"server": {"securityy": {"secure": False}}},
                                                "README": "not: a config file"}),
        {"kind": "Secret", "metadata": {"name": "flyte-admin-base-config"}, "data": {"x.yaml": "nope: 1"}},
        None,
    ]
    problems = fc.unknown_config_keys(manifests)
    assert keys(problems) == [("flyte-admin-base-config", "server.yaml", "server.securityy.secure")]
    msg = problems[0]["msg"]
    assert problems[0]["binaries"] == ["flyteadmin"]
    for word in ("server.securityy.secure", "flyte-admin-base-config", "server.yaml", "flyteadmin",
                 "Deployment flyteadmin"):
        assert word in msg, word


def test_every_configmap_is_checked_against_the_binary_that_loads_it():
    # admin.clientId is a key of flyteadmin, flytepropeller and flytescheduler, not of datacatalog.
    admin = {"admin": {"clientId": "flyte"}}
    manifests = [configmap(name, admin_yaml=admin) for name in fc.READERS]
    assert keys(fc.unknown_config_keys(manifests)) == [("datacatalog-config", "admin.yaml", "admin.clientId")]
    # The athena plugin is flytepropeller's only.
    manifests = [configmap(name, core_yaml={"plugins": {"athena": {"defaultCatalog": "x"}}}) for name in fc.READERS]
    assert sorted(p["configmap"] for p in fc.unknown_config_keys(manifests)) == sorted(
        set(fc.READERS) - {"flyte-propeller-config"})


def test_the_six_configmaps_of_the_issue_are_read():
    assert set(fc.READERS) == {"flyte-admin-base-config", "flyte-admin-clusters-config",
                               "flyte-clusterresourcesync-config",
                               "datacatalog-config", "flyte-propeller-config", "flyte-scheduler-config"}
    assert {binary for readers in fc.READERS.values() for binary, _description in readers} == set(KEYS)


def test_helm_template_output_is_read_as_multi_document_yaml():
    text = "---\n# Source: flyte-core/templates/x.yaml\n" + yaml.safe_dump(
        configmap("flyte-scheduler-config", server_yaml={"scheduler": {"profilerPort": 10254, "profilerport2": 1}}))
    text += "---\n# Source: empty\n---\n" + yaml.safe_dump({"kind": "Service", "metadata": {"name": "x"}})
    assert keys(fc.unknown_config_keys(text)) == [("flyte-scheduler-config", "server.yaml", "scheduler.profilerport2")]


def test_a_config_file_that_is_not_yaml_is_a_problem():
    problems = fc.unknown_config_keys([configmap("datacatalog-config", db_yaml="a: [unclosed")])
    assert [(p["file"], p["key"]) for p in problems] == [("db.yaml", None)] and "is not YAML" in problems[0]["msg"]


# ---- what the chart's own defaults add ------------------------------------------------------------

def chart_defaults() -> list[dict]:
    """The three entries flyte-core 1.16.8's values.yaml puts in, verbatim in shape."""
    return [
        configmap("flyte-admin-base-config",
                  server_yaml={"flyteadmin": {"profilerPort": 10254, "testing": {"host": "http://flyteadmin"}}}),
        configmap("flyte-scheduler-config",
                  server_yaml={"scheduler": {"metricsScope": "flyte:", "profilerPort": 10254}}),
        configmap("flyte-propeller-config", core_yaml={"manager": {"pod-application": "flytepropeller",
                                                                   "pod-template-name": "flytepropeller-template"},
                                                       "propeller": {"workers": 4}}),
    ]


def test_the_chart_defaults_are_rejected_by_the_binaries_and_tolerated_only_by_the_list():
    assert keys(fc.unknown_config_keys(chart_defaults(), tolerated={})) == [
        ("flyte-admin-base-config", "server.yaml", "flyteadmin.testing.host"),
        ("flyte-scheduler-config", "server.yaml", "scheduler.metricsScope"),
        ("flyte-propeller-config", "core.yaml", "manager.pod-application"),
        ("flyte-propeller-config", "core.yaml", "manager.pod-template-name"),
    ]
    assert fc.unknown_config_keys(chart_defaults()) == []


def test_every_tolerated_key_is_one_its_binary_rejects_and_says_why():
    for (configmap_name, filename, key), why in fc.TOLERATED.items():
        assert configmap_name in fc.READERS and filename.endswith(".yaml")
        path = tuple(key.split("."))
        assert not any(fc.is_accepted(path, binary) for binary, _description in fc.READERS[configmap_name]), key
        assert len(why) > 40


def test_a_tolerated_key_elsewhere_is_still_refused():
    moved = [configmap("flyte-admin-base-config", db_yaml={"flyteadmin": {"testing": {"host": "x"}}}),
             configmap("flyte-admin-clusters-config", server_yaml={"flyteadmin": {"testing": {"host": "x"}}}),
             configmap("datacatalog-config", core_yaml={"manager": {"x": 1}})]
    assert keys(fc.unknown_config_keys(moved)) == [
        ("flyte-admin-base-config", "db.yaml", "flyteadmin.testing.host"),
        ("flyte-admin-clusters-config", "server.yaml", "flyteadmin.testing.host"),
        ("datacatalog-config", "core.yaml", "manager.x")]


def test_tolerated_matching_ignores_case_too():
    cm = configmap("flyte-scheduler-config", server_yaml={"Scheduler": {"METRICSSCOPE": "x"}})
    assert fc.unknown_config_keys([cm]) == []


# ---- the filter --------------------------------------------------------------------------------------

def test_the_filter_returns_the_problems():
    flt = FilterModule().filters()["flyte_unknown_config_keys"]
    text = yaml.safe_dump_all(chart_defaults() + [configmap("datacatalog-config", db_yaml={"databse": {"host": "x"}})])
    assert keys(flt(text)) == [("datacatalog-config", "db.yaml", "databse.host")]
    assert flt(text.replace("databse", "database")) == []


@pytest.mark.parametrize("bad", [None, 3, {"kind": "ConfigMap"}])
def test_the_filter_refuses_input_that_is_not_manifests(bad):
    with pytest.raises(AnsibleFilterError, match="output of helm template"):
        FilterModule().filters()["flyte_unknown_config_keys"](bad)


def test_the_filter_reports_manifests_that_are_not_yaml():
    with pytest.raises(AnsibleFilterError, match="could not read the manifests"):
        FilterModule().filters()["flyte_unknown_config_keys"]("kind: ConfigMap\n  bad: [")
