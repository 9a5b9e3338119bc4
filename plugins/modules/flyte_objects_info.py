#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_objects_info
short_description: Look up and list several Kubernetes objects of any kinds in one task, as the roles need them
version_added: 0.1.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Reads each CRD of O(crds) and each object of O(objects) by kind and name and says whether it exists. The roles' preflights use it to ask in
    one task for everything they require of the cluster (CRDs, a StorageClass, Gateways), where one
    M(kubernetes.core.k8s_info) task per object would start one Python process per object.
  - Lists the objects of each kind of O(lists) that carry the given labels, for a role that prunes the objects it no
    longer wants (the networking role's policies of both engines, in one task).
  - An object whose kind the API server does not serve (its CRD is not installed) does not exist, and lists no object;
    RV(objects[].api_found) and RV(lists[].api_found) tell the cases apart.
  - A CustomResourceDefinition is returned without its versions' OpenAPI schemas, which can be megabytes long and which
    no preflight reads. Every object is returned without C(metadata.managedFields).
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
options:
  crds:
    description: Names of CustomResourceDefinitions to look up, e.g. C(httproutes.gateway.networking.k8s.io).
    type: list
    elements: str
    default: []
  objects:
    description: Other objects to look up.
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: Group and version of the kind, e.g. C(apiextensions.k8s.io/v1), C(storage.k8s.io/v1).
        type: str
        required: true
      kind:
        description: The kind, e.g. C(CustomResourceDefinition), C(StorageClass), C(Gateway).
        type: str
        required: true
      name:
        description: The object's name.
        type: str
        required: true
      namespace:
        description: Its namespace; leave it out for a kind that is not namespaced.
        type: str
  lists:
    description: Kinds to list the objects of, by label.
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: Group and version of the kind, e.g. C(cilium.io/v2), C(networking.k8s.io/v1).
        type: str
        required: true
      kind:
        description: The kind, e.g. C(CiliumNetworkPolicy).
        type: str
        required: true
      namespace:
        description: The namespace to list in; leave it out for a kind that is not namespaced.
        type: str
      label_selectors:
        description: Label selectors the objects must all match, e.g. C(app.kubernetes.io/managed-by=homelab.flyte).
        type: list
        elements: str
        default: []
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode changes nothing.
  diff_mode:
    support: none
    description: The module only reads.
notes:
  - The credentials need C(get) on each object looked up, and C(list) on each kind listed.
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Look up the CRDs and the Gateway the routes need
  homelab.flyte.flyte_objects_info:
    crds:
      - httproutes.gateway.networking.k8s.io
      - grpcroutes.gateway.networking.k8s.io
    objects:
      - {api_version: gateway.networking.k8s.io/v1, kind: Gateway, name: homelab, namespace: gateway}
  register: prerequisites

- name: Require them
  ansible.builtin.assert:
    that: (prerequisites.crds + prerequisites.objects) | rejectattr('exists') | list | length == 0
    fail_msg: "Missing: {{ (prerequisites.crds + prerequisites.objects) | rejectattr('exists') | map(attribute='name') | join(', ') }}"

- name: List the network policies of both engines that this collection labelled
  homelab.flyte.flyte_objects_info:
    lists:
      - {api_version: cilium.io/v2, kind: CiliumNetworkPolicy, namespace: flyte-system,
         label_selectors: [app.kubernetes.io/managed-by=homelab.flyte]}
      - {api_version: networking.k8s.io/v1, kind: NetworkPolicy, namespace: flyte-system,
         label_selectors: [app.kubernetes.io/managed-by=homelab.flyte]}
  register: policies
"""

RETURN = r"""
crds:
  description: One entry per name in O(crds), in the same order, shaped as the entries of RV(objects).
  returned: success
  type: list
  elements: dict
  sample:
    - api_version: apiextensions.k8s.io/v1
      kind: CustomResourceDefinition
      name: ciliumnetworkpolicies.cilium.io
      namespace: null
      api_found: true
      exists: false
      resource: null
objects:
  description: One entry per entry of O(objects), in the same order.
  returned: success
  type: list
  elements: dict
  contains:
    api_version:
      description: As asked.
      type: str
    kind:
      description: As asked.
      type: str
    name:
      description: As asked.
      type: str
    namespace:
      description: As asked (V(null) for a kind that is not namespaced).
      type: str
    api_found:
      description: Whether the API server serves the kind.
      type: bool
    exists:
      description: Whether the object exists.
      type: bool
    resource:
      description:
        - The object, without C(metadata.managedFields) (and, for a CRD, without its schemas), or V(null) when it does
          not exist.
      type: dict
  sample:
    - api_version: storage.k8s.io/v1
      kind: StorageClass
      name: longhorn
      namespace: null
      api_found: true
      exists: true
      resource: {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "longhorn"},
                 "provisioner": "driver.longhorn.io"}
lists:
  description: One entry per entry of O(lists), in the same order.
  returned: success
  type: list
  elements: dict
  contains:
    api_version:
      description: As asked.
      type: str
    kind:
      description: As asked.
      type: str
    namespace:
      description: As asked.
      type: str
    label_selectors:
      description: As asked.
      type: list
      elements: str
    api_found:
      description: Whether the API server serves the kind.
      type: bool
    items:
      description: The objects that match, each without C(metadata.managedFields); empty when the kind is not served.
      type: list
      elements: dict
  sample:
    - api_version: networking.k8s.io/v1
      kind: NetworkPolicy
      namespace: flyte-system
      label_selectors: [app.kubernetes.io/managed-by=homelab.flyte]
      api_found: true
      items: [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "flyteadmin"}}]
"""

import copy

from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ansible_collections.homelab.flyte.plugins.module_utils.kube import auth_argument_spec, dynamic_client

try:
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
except ImportError:  # kubernetes.core's client reports the missing library itself
    pass


def argument_spec() -> dict:
    spec = auth_argument_spec()
    spec["crds"] = dict(type="list", elements="str", default=[])
    spec["objects"] = dict(type="list", elements="dict", default=[], options=dict(
        api_version=dict(type="str", required=True),
        kind=dict(type="str", required=True),
        name=dict(type="str", required=True),
        namespace=dict(type="str"),
    ))
    spec["lists"] = dict(type="list", elements="dict", default=[], options=dict(
        api_version=dict(type="str", required=True),
        kind=dict(type="str", required=True),
        namespace=dict(type="str"),
        label_selectors=dict(type="list", elements="str", default=[]),
    ))
    return spec


def crd_request(name: str) -> dict:
    return {"api_version": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "name": name, "namespace": None}


def slim(resource: dict) -> dict:
    """The object as a preflight reads it: without managedFields, and a CRD without its (large) schemas."""
    resource = copy.deepcopy(resource)
    resource.get("metadata", {}).pop("managedFields", None)
    if resource.get("kind") == "CustomResourceDefinition":
        for version in resource.get("spec", {}).get("versions") or []:
            version.pop("schema", None)
    return resource


def look_up(get, wanted: dict) -> dict:
    """One entry of the result. `get(api_version, kind, name, namespace)` returns the object as a dict and raises
    LookupError('api') when the kind is not served, LookupError('object') when the object does not exist."""
    entry = {key: wanted.get(key) for key in ("api_version", "kind", "name", "namespace")}
    try:
        resource = get(wanted["api_version"], wanted["kind"], wanted["name"], wanted.get("namespace"))
    except LookupError as missing:
        return {**entry, "api_found": str(missing) != "api", "exists": False, "resource": None}
    return {**entry, "api_found": True, "exists": True, "resource": slim(resource)}


def list_up(list_objects, wanted: dict) -> dict:
    """One entry of the lists result. `list_objects(api_version, kind, namespace, label_selector)` returns the objects
    as dicts and raises LookupError('api') when the kind is not served."""
    entry = {key: wanted.get(key) for key in ("api_version", "kind", "namespace")}
    entry["label_selectors"] = list(wanted.get("label_selectors") or [])
    try:
        items = list_objects(wanted["api_version"], wanted["kind"], wanted.get("namespace"), ",".join(entry["label_selectors"]))
    except LookupError:
        return {**entry, "api_found": False, "items": []}
    return {**entry, "api_found": True, "items": [slim(item) for item in items]}


def client_getter(client):
    """`get` for look_up, over kubernetes.core's DynamicClient (discovery is cached by kubernetes.core)."""
    def get(api_version, kind, name, namespace):
        try:
            api = client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise LookupError("api") from None
        try:
            return api.get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            raise LookupError("object") from None
    return get


def client_lister(client):
    """`list_objects` for list_up, over the same DynamicClient."""
    def list_objects(api_version, kind, namespace, label_selector):
        try:
            api = client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise LookupError("api") from None
        return api.get(namespace=namespace, label_selector=label_selector or None).to_dict().get("items") or []
    return list_objects


def where(wanted: dict) -> str:
    return f" in namespace {wanted['namespace']}" if wanted.get("namespace") else ""


def main():
    module = AnsibleK8SModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        client = dynamic_client(module)
    except CoreException as error:
        module.fail_json(msg=f"{error}: check the kubeconfig, context or K8S_AUTH_* options.")
    get, list_objects = client_getter(client), client_lister(client)
    wanted_crds = [crd_request(name) for name in module.params["crds"]]
    results = {"crds": [], "objects": [], "lists": []}
    for key, requests in (("crds", wanted_crds), ("objects", module.params["objects"])):
        for wanted in requests:
            try:
                results[key].append(look_up(get, wanted))
            except Exception as error:  # noqa: BLE001 - an API error names the object and what to check
                module.fail_json(msg=f"Could not read the {wanted['kind']} {wanted['name']}{where(wanted)} ({wanted['api_version']}): "
                                     f"{error}. The credentials need get on it.", **results)
    for wanted in module.params["lists"]:
        try:
            results["lists"].append(list_up(list_objects, wanted))
        except Exception as error:  # noqa: BLE001 - as above
            module.fail_json(msg=f"Could not list the {wanted['kind']} objects{where(wanted)} ({wanted['api_version']}): "
                                 f"{error}. The credentials need list on them.", **results)
    module.exit_json(changed=False, **results)


if __name__ == "__main__":
    main()
