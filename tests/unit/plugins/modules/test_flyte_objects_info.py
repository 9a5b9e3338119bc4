"""The flyte_objects_info module: what it returns for a present object, a missing one and a kind the API server does not
serve, and that it trims what no preflight reads. The real API server and CRDs answer in tests/integration
(the roles' preflights, e.g. test_networking.py and test_foundation_roles.py)."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.flyte.plugins.modules import flyte_objects_info as module

CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "httproutes.gateway.networking.k8s.io", "managedFields": [{"manager": "kubectl"}]},
       "spec": {"group": "gateway.networking.k8s.io",
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
STORAGE_CLASS = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "longhorn"},
                 "provisioner": "driver.longhorn.io"}


def getter(objects: dict, served: set):
    def get(api_version, kind, name, namespace):
        if (api_version, kind) not in served:
            raise LookupError("api")
        try:
            return objects[(kind, namespace, name)]
        except KeyError:
            raise LookupError("object") from None
    return get


GET = getter({("CustomResourceDefinition", None, CRD["metadata"]["name"]): CRD,
              ("StorageClass", None, "longhorn"): STORAGE_CLASS},
             {("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("storage.k8s.io/v1", "StorageClass")})


def test_a_crd_comes_back_without_schemas_or_managed_fields_and_the_input_is_untouched():
    entry = module.look_up(GET, module.crd_request(CRD["metadata"]["name"]))
    assert entry["exists"] and entry["api_found"] and entry["namespace"] is None
    assert entry["resource"]["spec"]["versions"] == [{"name": "v1", "served": True, "storage": True}]
    assert "managedFields" not in entry["resource"]["metadata"]
    assert "schema" in CRD["spec"]["versions"][0] and "managedFields" in CRD["metadata"]


@pytest.mark.parametrize(("wanted", "api_found"), [
    ({"api_version": "storage.k8s.io/v1", "kind": "StorageClass", "name": "local-path"}, True),
    ({"api_version": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "homelab", "namespace": "gateway"}, False),
], ids=["missing-object", "kind-not-served"])
def test_a_missing_object_and_an_unserved_kind_do_not_exist(wanted, api_found):
    entry = module.look_up(GET, wanted)
    assert entry == {"api_version": wanted["api_version"], "kind": wanted["kind"], "name": wanted["name"],
                     "namespace": wanted.get("namespace"), "api_found": api_found, "exists": False, "resource": None}


def test_a_present_object_is_returned_as_read():
    entry = module.look_up(GET, {"api_version": "storage.k8s.io/v1", "kind": "StorageClass", "name": "longhorn"})
    assert entry["exists"] and entry["resource"] == STORAGE_CLASS


def test_other_api_errors_are_not_taken_for_absence():
    def refuses(*_args):
        raise PermissionError("403 Forbidden")
    with pytest.raises(PermissionError):
        module.look_up(refuses, module.crd_request("clusters.postgresql.cnpg.io"))


POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "flyteadmin", "labels": {"app.kubernetes.io/managed-by": "homelab.flyte"},
                       "managedFields": [{"manager": "OpenAPI-Generator"}]}}


def lister(items: dict, served: set, seen: list):
    def list_objects(api_version, kind, namespace, label_selector):
        seen.append((kind, namespace, label_selector))
        if (api_version, kind) not in served:
            raise LookupError("api")
        return items.get((kind, namespace), [])
    return list_objects


def test_a_list_returns_the_matching_objects_without_managed_fields_and_joins_the_selectors():
    seen = []
    list_objects = lister({("NetworkPolicy", "flyte-system"): [POLICY]}, {("networking.k8s.io/v1", "NetworkPolicy")}, seen)
    entry = module.list_up(list_objects, {"api_version": "networking.k8s.io/v1", "kind": "NetworkPolicy", "namespace": "flyte-system",
                                          "label_selectors": ["app.kubernetes.io/managed-by=homelab.flyte", "app.kubernetes.io/part-of=flyte"]})
    assert seen == [("NetworkPolicy", "flyte-system", "app.kubernetes.io/managed-by=homelab.flyte,app.kubernetes.io/part-of=flyte")]
    assert entry["api_found"] and [item["metadata"]["name"] for item in entry["items"]] == ["flyteadmin"]
    assert "managedFields" not in entry["items"][0]["metadata"] and "managedFields" in POLICY["metadata"]
    assert entry["label_selectors"] == ["app.kubernetes.io/managed-by=homelab.flyte", "app.kubernetes.io/part-of=flyte"]


def test_a_kind_that_is_not_served_lists_nothing_and_says_so():
    entry = module.list_up(lister({}, set(), []), {"api_version": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "namespace": "flyte-system"})
    assert entry == {"api_version": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "namespace": "flyte-system", "label_selectors": [],
                     "api_found": False, "items": []}


def test_other_list_errors_are_not_taken_for_an_empty_list():
    def refuses(*_args):
        raise PermissionError("403 Forbidden")
    with pytest.raises(PermissionError):
        module.list_up(refuses, {"api_version": "networking.k8s.io/v1", "kind": "NetworkPolicy", "namespace": "flyte-system"})
