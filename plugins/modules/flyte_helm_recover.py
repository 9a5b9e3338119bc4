#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_helm_recover
short_description: Undo a helm operation on the Flyte release that a killed run left unfinished
version_added: 0.2.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - A run killed while helm works on a release (C(kill -9), a lost AWX pod) leaves its last revision
    C(pending-install), C(pending-upgrade), C(pending-rollback) or C(uninstalling), and helm then refuses every upgrade,
    saying C(another operation is in progress).
  - The module reads C(helm history) and undoes the interrupted operation the way helm would have. A pending upgrade or
    rollback is rolled back (C(helm rollback)) to the last C(deployed) revision, or else the last C(superseded) one.
    Helm computes that rollback from the interrupted revision's manifest, so whatever the killed operation added to
    the live objects is removed. A pending install, or an uninstall, is uninstalled (C(helm uninstall --wait)), as an
    atomic install that failed would have been.
  - Deleting the interrupted revision's record instead would not be enough. The next upgrade computes its patches from
    the older manifest and keeps what the killed operation added (an install adopts it the same way).
  - A pending upgrade with no earlier revision that was ever deployed is refused, with what to do.
  - Safe only while no other helm operation can be running on the release, which the collection's deployment lock
    (M(homelab.flyte.flyte_lock)) guarantees. A release that is not installed, or not interrupted, is left alone.
options:
  release_name:
    description: Name of the Helm release.
    type: str
    default: flyte
  release_namespace:
    description: Namespace of the release.
    type: str
    required: true
  timeout:
    description: Seconds helm waits for an uninstall to delete the release's objects.
    type: int
    default: 300
extends_documentation_fragment:
  - kubernetes.core.helm_common_options
requirements:
  - helm >= 3.0.0
attributes:
  check_mode:
    support: full
    description: Reads the history only, and returns the helm command it would run in RV(command).
  diff_mode:
    support: full
    description: The diff is the release's last revision and status before and after.
notes:
  - Helm's own storage of the release (the C(HELM_DRIVER)) is whatever helm uses; the module only runs helm.
seealso:
  - module: kubernetes.core.helm
"""

EXAMPLES = r"""
- name: Undo what a killed run left on the release, then upgrade
  homelab.flyte.flyte_helm_recover:
    release_name: flyte
    release_namespace: flyte-system
  register: recovered

- name: Say what was undone
  ansible.builtin.debug:
    msg: "{{ recovered.action }} of revision {{ recovered.interrupted.revision }} ({{ recovered.interrupted.status }})"
  when: recovered is changed
"""

RETURN = r"""
action:
  description: V(none) (not installed, or nothing interrupted), V(rollback) or V(uninstall).
  returned: always
  type: str
  sample: rollback
interrupted:
  description: The revision a killed run left unfinished, and its status.
  returned: when RV(action) is not V(none)
  type: dict
  sample: {"revision": 4, "status": "pending-upgrade"}
revision:
  description: The revision a rollback returned to.
  returned: when RV(action=rollback)
  type: int
  sample: 3
command:
  description: The helm command run (in check mode, the one that would run).
  returned: when RV(action) is not V(none)
  type: list
  elements: str
  sample: [helm, rollback, flyte, "3", --namespace, flyte-system]
"""

import json

from ansible_collections.homelab.flyte.plugins.module_utils.helm_recovery import recovery_plan
from ansible_collections.kubernetes.core.plugins.module_utils.helm import AnsibleHelmModule
from ansible_collections.kubernetes.core.plugins.module_utils.helm_args_common import (
    HELM_AUTH_ARG_SPEC,
    HELM_AUTH_MUTUALLY_EXCLUSIVE,
)


def argument_spec() -> dict:
    spec = dict(HELM_AUTH_ARG_SPEC)
    spec.update(
        release_name=dict(type="str", default="flyte"),
        release_namespace=dict(type="str", required=True),
        timeout=dict(type="int", default=300),
    )
    return spec


def read_history(module, helm: str, release: str, namespace: str) -> list[dict]:
    rc, out, err = module.run_helm_command([helm, "history", release, "--namespace", namespace, "--output", "json"],
                                           fails_on_error=False)
    if rc != 0:
        if "not found" in err:
            return []
        module.fail_json(msg=f"helm history {release} -n {namespace} failed ({rc}): {err.strip()}; check the cluster "
                             "credentials (kubeconfig, context or K8S_AUTH_*).", stderr=err)
    try:
        return json.loads(out) or []
    except ValueError:
        module.fail_json(msg=f"helm history {release} -n {namespace} did not print JSON: {out[:200]!r}")


def main():
    module = AnsibleHelmModule(argument_spec=argument_spec(), mutually_exclusive=HELM_AUTH_MUTUALLY_EXCLUSIVE,
                               supports_check_mode=True)
    release, namespace = module.params["release_name"], module.params["release_namespace"]
    if module.params["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be a positive number of seconds, got {module.params['timeout']}")
    helm = module.get_helm_binary()
    plan = recovery_plan(read_history(module, helm, release, namespace), release, namespace)
    if plan["action"] == "none":
        module.exit_json(changed=False, action="none")
    if plan["action"] == "refuse":
        module.fail_json(msg=plan["msg"], action="refuse", interrupted=plan["interrupted"])
    argv = plan["argv"] + (["--timeout", f"{module.params['timeout']}s"] if plan["action"] == "uninstall" else [])
    result = dict(changed=True, action=plan["action"], interrupted=plan["interrupted"], command=["helm", *argv])
    if "revision" in plan:
        result["revision"] = plan["revision"]
    before = f"revision {plan['interrupted']['revision']}: {plan['interrupted']['status']}\n"
    after = f"rolled back to revision {plan['revision']}\n" if plan["action"] == "rollback" else "not installed\n"
    if module._diff:
        result["diff"] = dict(before=before, after=after, before_header=f"release {namespace}/{release}",
                              after_header=f"release {namespace}/{release}")
    if not module.check_mode:
        module.run_helm_command([helm, *argv])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
