#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_chart_compat
short_description: Refuse Helm values keys a new flyte-core chart no longer has, before an upgrade
version_added: 0.2.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Walks every key path of O(values) (what the flyte role will give the new chart, O(overrides) merged in) down
    the new chart's default values (O(new_chart_values), the output of C(helm show values)) and, when the release
    is installed, down the installed chart's default values, which it reads from the release's Helm storage
    Secret (so it works whatever the chart's source, a repository, OCI or a local directory).
  - A key is refused when its first segment is not a top-level key of the new chart, when the installed chart had
    it and the new chart does not (removed or renamed), or when the new chart has a scalar or list where the key
    needs a mapping. Keys below mappings the installed chart had empty are free-form values and are accepted.
  - Helm itself ignores values a chart does not read, unless the chart has a values schema (flyte-core has none),
    so without this check a renamed key would silently stop applying.
  - Read-only; fails (unless O(fail_on_incompatible=false)) with a message naming every refused key, who set it
    and a likely new name.
options:
  new_chart_values:
    description: The new chart's default values, e.g. C(helm show values <chart> --version <new>) parsed as YAML.
    type: dict
    required: true
  new_chart:
    description: How to name the new chart in messages, e.g. C(flyte-core 1.16.8).
    type: str
    default: the new chart
  values:
    description: Every value the new release will be given (the flyte role's values with O(overrides) merged).
    type: dict
    required: true
  overrides:
    description: The user's own values (C(flyte_values_overrides)), to say of each refused key who set it.
    type: dict
    default: {}
  release_name:
    description: The installed Helm release, whose chart's default values tell removed keys from free-form ones.
    type: str
  release_namespace:
    description: Namespace of O(release_name).
    type: str
  previous_chart_values:
    description:
      - The installed chart's default values, when they are not to be read from the release (O(release_name) unset).
    type: dict
  fail_on_incompatible:
    description: Fail when a key is refused; V(false) only reports them.
    type: bool
    default: true
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
requirements:
  - kubernetes >= 24.2.0 (with O(release_name))
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
    description: The module only reads; there is nothing to show a difference of.
notes:
  - With O(release_name), the user needs C(list) on C(secrets) in O(release_namespace) (as helm does).
seealso:
  - name: helm show values
    description: Prints a chart's values.yaml from a repository, an OCI registry or a local chart.
    link: https://helm.sh/docs/helm/helm_show_values/
"""

EXAMPLES = r"""
- name: Read the new chart's values
  ansible.builtin.command: helm show values flyte-core --repo https://flyteorg.github.io/flyte --version 1.16.8
  register: new_values
  changed_when: false

- name: Refuse keys flyte-core 1.16.8 no longer has
  homelab.flyte.flyte_chart_compat:
    new_chart_values: "{{ new_values.stdout | from_yaml }}"
    new_chart: flyte-core 1.16.8
    values: "{{ flyte_helm_values }}"
    overrides: "{{ flyte_values_overrides }}"
    release_name: flyte
    release_namespace: flyte-system
"""

RETURN = r"""
incompatible:
  description: Every refused key, in the order of O(values).
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: The key path as set, dotted.
      type: str
    missing:
      description: The part of it the new chart lacks (or where it has a scalar or list).
      type: str
    reason:
      description: V(missing) (no such top-level key), V(removed) (the installed chart had it) or V(type).
      type: str
    set_by:
      description: C(flyte_values_overrides) or C(the flyte role).
      type: str
    replacement:
      description: A likely new name (a known rename, or the one key the new chart added beside it), or null.
      type: str
  sample:
    - {key: flyteagent.enabled, missing: flyteagent, reason: missing, set_by: flyte_values_overrides,
       replacement: flyteconnector}
messages:
  description: One line per refused key, as in the failure message.
  returned: always
  type: list
  elements: str
checked:
  description: How many key paths were checked.
  returned: always
  type: int
previous_chart:
  description: The installed release's chart, C(<name> <version>), when it was read; null without a release.
  returned: always
  type: str
  sample: flyte-core 1.15.3
"""

from ansible_collections.homelab.flyte.plugins.module_utils.chart_values import (
    describe,
    incompatible_keys,
    latest_release,
    leaf_paths,
)
from ansible_collections.homelab.flyte.plugins.module_utils.kube import api_client, auth_argument_spec
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

try:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException
except ImportError:  # kubernetes.core's client reports the missing library
    CoreV1Api = ApiException = None


def installed_chart(module):
    """(the installed chart's default values, '<name> <version>'), or (None, None) without a deployed release."""
    params = module.params
    try:
        api = api_client(module)
        secrets = CoreV1Api(api).list_namespaced_secret(
            params["release_namespace"], label_selector=f"owner=helm,name={params['release_name']}").items
    except CoreException as error:
        module.fail_json(msg=f"{error}. Check kubeconfig, context and the K8S_AUTH_* variables.")
    except ApiException as error:
        module.fail_json(msg=f"Cannot list the Secrets of namespace {params['release_namespace']} to read the release "
                             f"{params['release_name']}: {error.status} {error.reason}. The user needs list on secrets there.")
    try:
        release = latest_release([{"labels": secret.metadata.labels, "data": secret.data or {}} for secret in secrets])
    except (ValueError, KeyError, OSError) as error:
        module.fail_json(msg=f"The Helm storage Secret of release {params['release_namespace']}/{params['release_name']} "
                             f"cannot be read: {error}")
    if release is None:
        return None, None
    chart = release.get("chart") or {}
    metadata = chart.get("metadata") or {}
    return chart.get("values") or {}, f"{metadata.get('name', 'chart')} {metadata.get('version', '')}".strip()


def main():
    spec = auth_argument_spec()
    spec.update(
        new_chart_values=dict(type="dict", required=True),
        new_chart=dict(type="str", default="the new chart"),
        values=dict(type="dict", required=True),
        overrides=dict(type="dict", default={}),
        release_name=dict(type="str"),
        release_namespace=dict(type="str"),
        previous_chart_values=dict(type="dict"),
        fail_on_incompatible=dict(type="bool", default=True),
    )
    module = AnsibleK8SModule(check_k8s=False, check_pyyaml=False, argument_spec=spec, supports_check_mode=True,
                              required_together=[("release_name", "release_namespace")],
                              mutually_exclusive=[("release_name", "previous_chart_values")])
    params = module.params
    previous, previous_chart = params["previous_chart_values"], None
    if params["release_name"]:
        module.requires("kubernetes", "24.2.0", reason="to read the installed release")
        previous, previous_chart = installed_chart(module)
    found = incompatible_keys(params["values"], params["new_chart_values"], previous, params["overrides"])
    messages = [describe(entry, params["new_chart"]) for entry in found]
    result = {"changed": False, "incompatible": found, "messages": messages,
              "checked": sum(1 for _path in leaf_paths(params["values"])), "previous_chart": previous_chart}
    if found and params["fail_on_incompatible"]:
        against = f" (installed: {previous_chart})" if previous_chart else ""
        module.fail_json(msg=f"{len(found)} value key(s) would be ignored by {params['new_chart']}{against}, so nothing "
                             "was changed: " + "; ".join(messages) + ". Rename or remove them in flyte_values_overrides "
                             "(or upgrade the collection, for keys the flyte role sets), then run the upgrade again.",
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
