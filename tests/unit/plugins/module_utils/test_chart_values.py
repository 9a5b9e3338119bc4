"""module_utils/chart_values.py: which value keys a new chart would ignore, and reading a Helm release Secret."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import yaml

from ansible_collections.homelab.flyte.plugins.module_utils import chart_values as cv

REPO = Path(__file__).resolve().parents[4]
STAND_IN = yaml.safe_load((REPO / "tests/charts/flyte-core/values.yaml").read_text())


def as_1_15(values):
    """The stand-in's values as flyte-core 1.15 named them (see tests/integration/test_upgrade.py)."""
    return json.loads(json.dumps(values).replace("flyteconnector", "flyteagent"))


def test_leaf_paths_stop_at_scalars_lists_and_empty_mappings():
    values = {"a": {"b": 1, "c": [1, 2], "d": {}}, "e": None}
    assert list(cv.leaf_paths(values)) == [("a", "b"), ("a", "c"), ("a", "d"), ("e",)]


def test_a_top_level_key_the_new_chart_lacks_is_refused_with_the_known_rename():
    found = cv.incompatible_keys({"flyteagent": {"enabled": True}}, STAND_IN, as_1_15(STAND_IN),
                                 overrides={"flyteagent": {"enabled": True}})
    assert found == [{"key": "flyteagent.enabled", "missing": "flyteagent", "reason": "missing",
                      "set_by": "flyte_values_overrides", "replacement": "flyteconnector"}]
    assert cv.describe(found[0], "flyte-core 1.16.8") == (
        "flyteagent.enabled (set by flyte_values_overrides): the new chart (flyte-core 1.16.8) has no top-level key "
        "flyteagent; renamed to flyteconnector?")


def test_a_key_the_installed_chart_had_and_the_new_one_lost_is_refused_with_its_new_sibling():
    old = {"flyteadmin": {"image": {"repository": "x", "tag": "v1"}, "replicaCount": 1}}
    new = {"flyteadmin": {"image": {"repository": "x", "version": "v2"}, "replicaCount": 1}}
    found = cv.incompatible_keys({"flyteadmin": {"image": {"tag": "v9"}, "replicaCount": 2}}, new, old)
    assert found == [{"key": "flyteadmin.image.tag", "missing": "flyteadmin.image.tag", "reason": "removed",
                      "set_by": "the flyte role", "replacement": "flyteadmin.image.version"}]


def test_free_form_values_below_known_mappings_are_accepted():
    # Flyte configuration sections: the chart passes whatever is below them on.
    old = new = {"configmap": {"adminServer": {"server": {"httpPort": 8088}}}, "flyteadmin": {"podAnnotations": {}},
                 "extra": None}
    values = {"configmap": {"adminServer": {"auth": {"appAuth": {"authServerType": "External"}}}},
              "flyteadmin": {"podAnnotations": {"a": "b"}}, "extra": {"anything": 1}}
    assert cv.incompatible_keys(values, new, old) == []
    # Without the installed chart, only the top level is judged.
    assert cv.incompatible_keys(values, new, None) == []


def test_a_scalar_where_the_installed_chart_had_a_mapping_is_refused():
    found = cv.incompatible_keys({"storage": {"s3": {"endpoint": "x"}}}, {"storage": {"s3": "now a string"}},
                                 {"storage": {"s3": {"endpoint": ""}}})
    assert [(entry["key"], entry["reason"]) for entry in found] == [("storage.s3.endpoint", "type")]


def test_a_mapping_set_over_a_list_default_is_accepted():
    # flyte-core's configmap.k8s.plugins.k8s.default-env-vars defaults to a list; helm replaces it.
    chart = {"configmap": {"k8s": {"plugins": {"k8s": {"default-env-vars": []}}}}}
    values = {"configmap": {"k8s": {"plugins": {"k8s": {"default-env-vars": {"FLYTE_AWS_ENDPOINT": "x"}}}}}}
    assert cv.incompatible_keys(values, chart, chart) == []
    assert cv.incompatible_keys(values, chart, None) == []


def test_the_collections_own_values_fit_both_stand_in_shapes():
    """The keys the flyte role sets (its template's top level and below) are all read by the 1.16.8 stand-in."""
    values = {"db": {"admin": {"database": {"dbname": "x"}}}, "common": {"databaseSecret": {"name": "s"}},
              "storage": {"type": "s3", "bucketName": "b", "s3": {"endpoint": "e", "authType": "iam"}},
              "flyteadmin": {"initialProjects": ["p"], "env": []}, "datacatalog": {"podEnv": []},
              "workflow_scheduler": {"enabled": True, "type": "native"},
              "cluster_resource_manager": {"enabled": True, "templates": []},
              "configmap": {"k8s": {"plugins": {"k8s": {"default-env-vars": {"FLYTE_AWS_ENDPOINT": "e"}}}}}}
    assert cv.incompatible_keys(values, STAND_IN, as_1_15(STAND_IN)) == []


def helm_secret(release, version, status="deployed"):
    payload = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
    return {"labels": {"owner": "helm", "name": "flyte", "version": str(version), "status": status},
            "data": {"release": base64.b64encode(payload.encode()).decode()}}


def test_the_newest_deployed_revision_is_read():
    secrets = [helm_secret({"chart": {"values": {"v": 1}}}, 1, "superseded"),
               helm_secret({"chart": {"values": {"v": 3}}}, 3),
               helm_secret({"chart": {"values": {"v": 4}}}, 4, "failed")]
    assert cv.latest_release(secrets)["chart"]["values"] == {"v": 3}
    assert cv.latest_release([]) is None
