#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_lock
short_description: Hold the Flyte deployment's lock, a Kubernetes Lease, so that one run changes it at a time
version_added: 0.1.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Takes, renews and releases a C(coordination.k8s.io/v1) Lease, O(name) in O(namespace), that stands for the right to
    change the deployment. The collection's writing playbooks (C(site.yml), C(seed.yml), C(teardown.yml), C(upgrade.yml),
    C(restore.yml)) take it before their first write, renew it between long steps and release it at the end, also when
    a step fails.
  - "The Lease says who holds it and since when: C(spec.holderIdentity) is O(holder) (by default the host name, the pid of
    the C(ansible-playbook) process and the AWX job id), C(spec.acquireTime) when it was taken, C(spec.renewTime) when it
    was last renewed, C(spec.leaseDurationSeconds) how long it stays valid without renewal."
  - With O(state=acquired), a Lease held by another holder that has not expired makes the task wait, polling every
    O(poll_interval) seconds, up to O(timeout) seconds; then it fails naming the holder, since when it holds the lock and
    when the lock expires. A Lease that has expired (its holder was killed, for example with C(kill -9), and could not
    release it) is taken over. A Lease this holder already has is renewed.
  - With O(state=renewed), the holder's Lease gets a new C(renewTime) and O(duration). The task fails when the holder no
    longer has the Lease (a step lasted longer than O(duration), the Lease expired and another run took it).
  - With O(state=released), the Lease is deleted if O(holder) has it; a Lease of another holder is left alone.
  - Times are the API server's (taken from the C(Date) header of its answers), so the clocks of the hosts that run the
    playbooks do not matter. Every write carries the Lease's C(resourceVersion), so of two runs that race for a free Lease
    exactly one gets it and the other waits.
  - The task never reports C(changed). The Lease is bookkeeping about who is running, not part of the deployment's
    state; reporting it would make every run count as a change and hide whether the deployment changed. The result's
    RV(action) says what the task did.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
options:
  state:
    description:
      - V(acquired) takes the lock (or renews it when O(holder) has it), waiting while another holder has it.
      - V(renewed) renews the lock O(holder) has, and fails if it has lost it.
      - V(released) gives the lock up.
    type: str
    choices: [acquired, renewed, released]
    default: acquired
  name:
    description: Name of the Lease.
    type: str
    default: homelab-flyte-lock
  namespace:
    description: Namespace of the Lease, the deployment's namespace.
    type: str
    default: flyte-system
  holder:
    description:
      - Identity of this run, written to C(spec.holderIdentity). Every task of one run must use the same.
      - "By default C(host <host name>, pid <pid>[, AWX job <job_id>]), where the pid is that of the C(ansible-playbook)
        process that runs the task, found from the module's own process (so the module must run on the controller, with
        C(connection: local), as in the collection's inventories; give O(holder) otherwise)."
    type: str
  job_id:
    description:
      - Id of the AWX or Automation Controller job that runs the playbook, shown in the default O(holder). The
        playbooks pass the C(awx_job_id) (or C(tower_job_id)) extra variable AWX sets.
    type: str
  duration:
    description:
      - Seconds the lock stays valid after it is taken or renewed (C(leaseDurationSeconds)).
      - It must be longer than the longest step between two renewals (the flyte role's helm install, up to twice its
        C(flyte_helm_timeout) with a rollback); it is also how long a killed run's lock blocks the next run.
    type: int
    default: 1800
  timeout:
    description: With O(state=acquired), seconds to wait for another holder's lock before failing; V(0) does not wait.
    type: int
    default: 900
  poll_interval:
    description: Seconds between two looks at a Lease another holder has.
    type: float
    default: 5
  create_namespace:
    description:
      - With O(state=acquired), create O(namespace) when it does not exist, so that a first run can hold the lock before it
        creates anything else (the first role would create the namespace anyway).
      - When false and the namespace does not exist, the task takes no lock and says so (RV(action=no_namespace)); the
        teardown and seed playbooks do this, having nothing to change in a namespace that is not there.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description:
      - The module only reads. It still waits for, and fails on, a lock another run holds, as the run would; it never
        writes the Lease or creates the namespace, and reports what a run would do (V(would_acquire), V(would_renew),
        V(would_take_over), V(would_release)).
  diff_mode:
    support: none
    description: The Lease is not part of the deployment, and the task never reports a change; RV(lease) and RV(previous) show it.
notes:
  - A run killed with C(kill -9) cannot release the lock; the next run waits until the Lease expires (O(duration) after
    its last renewal) and then takes it over. To free it sooner, make sure the holder is gone and delete the Lease.
  - The credentials need C(get), C(create), C(update) and C(delete) on C(leases.coordination.k8s.io) in O(namespace), and
    C(get) and C(create) on namespaces for O(create_namespace).
seealso:
  - name: Kubernetes Leases
    description: The Lease object and its fields.
    link: https://kubernetes.io/docs/concepts/architecture/leases/
"""

EXAMPLES = r"""
- name: Take the deployment's lock, waiting up to 15 minutes for another run
  homelab.flyte.flyte_lock:
    namespace: flyte-system
    job_id: "{{ awx_job_id | default(omit) }}"
  register: deployment_lock

- name: Renew it between two long steps
  homelab.flyte.flyte_lock:
    state: renewed
    namespace: flyte-system
    holder: "{{ deployment_lock.holder }}"

- name: Release it
  homelab.flyte.flyte_lock:
    state: released
    namespace: flyte-system
    holder: "{{ deployment_lock.holder }}"

- name: Fail at once if another run holds the lock
  homelab.flyte.flyte_lock:
    namespace: flyte-system
    timeout: 0
"""

RETURN = r"""
action:
  description:
    - What the task did. V(acquired) (a new Lease), V(renewed), V(taken_over) (a free or expired Lease of another holder),
      V(released), V(absent) (nothing to release), V(not_ours) (another holder has the Lease; left alone),
      V(no_namespace) (the namespace does not exist and O(create_namespace=false)).
    - In check mode V(would_acquire), V(would_renew), V(would_take_over), V(would_release), or V(absent), V(not_ours).
  returned: success
  type: str
  sample: acquired
acquired:
  description: Whether O(holder) has the lock after the task (in check mode, whether a run would have it).
  returned: success
  type: bool
  sample: true
holder:
  description: The holder identity the task used; pass it to the renewing and releasing tasks.
  returned: always
  type: str
  sample: host awx-job-42-abcde, pid 23, AWX job 42
lease:
  description: The Lease after the task, or V(null) when there is none.
  returned: success
  type: dict
  contains:
    name:
      description: Name of the Lease.
      type: str
    namespace:
      description: Its namespace.
      type: str
    holder:
      description: C(spec.holderIdentity).
      type: str
    acquire_time:
      description: C(spec.acquireTime), when the holder took the lock.
      type: str
    renew_time:
      description: C(spec.renewTime), when it last renewed it.
      type: str
    duration:
      description: C(spec.leaseDurationSeconds).
      type: int
    transitions:
      description: C(spec.leaseTransitions), how often the lock changed hands.
      type: int
    expires:
      description: When the lock lapses unless renewed.
      type: str
  sample: {"name": "homelab-flyte-lock", "namespace": "flyte-system", "holder": "host ctl, pid 4242",
           "acquire_time": "2025-01-01T10:00:00.000000Z", "renew_time": "2025-01-01T10:05:00.000000Z",
           "duration": 1800, "transitions": 0, "expires": "2025-01-01T10:35:00.000000Z"}
previous:
  description: The Lease before the task, when it took over another holder's Lease or released its own.
  returned: success
  type: dict
waited:
  description: Seconds the task waited for another holder.
  returned: success
  type: float
  sample: 0
created_namespace:
  description: Whether the task created O(namespace).
  returned: success
  type: bool
  sample: false
note:
  description: Why no Lease was written or would be (check mode, missing namespace).
  returned: when relevant
  type: str
"""

from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ansible_collections.homelab.flyte.plugins.module_utils.kube import api_client, auth_argument_spec
from ansible_collections.homelab.flyte.plugins.module_utils.lock import (
    KubeLeaseStore,
    LockError,
    acquire,
    default_holder,
    release,
    renew,
)
from ansible_collections.homelab.flyte.plugins.module_utils.validation import EXPECTED, is_dns_label, is_dns_subdomain

try:
    from kubernetes.client.exceptions import ApiException
except ImportError:  # kubernetes.core's client reports the missing library itself
    ApiException = Exception


def argument_spec() -> dict:
    spec = auth_argument_spec()
    spec.update(
        state=dict(type="str", choices=["acquired", "renewed", "released"], default="acquired"),
        name=dict(type="str", default="homelab-flyte-lock"),
        namespace=dict(type="str", default="flyte-system"),
        holder=dict(type="str"),
        job_id=dict(type="str"),
        duration=dict(type="int", default=1800),
        timeout=dict(type="int", default=900),
        poll_interval=dict(type="float", default=5),
        create_namespace=dict(type="bool", default=True),
    )
    return spec


def input_problems(params: dict) -> list[str]:
    problems = []
    if not is_dns_label(params["namespace"]):
        problems.append(f"namespace {params['namespace']!r} must be {EXPECTED['dns_label']}")
    if not is_dns_subdomain(params["name"]):
        problems.append(f"name {params['name']!r} must be {EXPECTED['dns_subdomain']}")
    if not 0 < params["duration"] <= 2**31 - 1:
        problems.append("duration must be a positive number of seconds (the Lease's leaseDurationSeconds, an int32)")
    if params["timeout"] < 0:
        problems.append("timeout must be 0 (do not wait) or a positive number of seconds")
    if params["poll_interval"] <= 0:
        problems.append("poll_interval must be a positive number of seconds")
    if params["holder"] is not None and not params["holder"].strip():
        problems.append("holder must not be empty")
    return problems


def main():
    module = AnsibleK8SModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    problems = input_problems(params)
    if problems:
        module.fail_json(msg="Invalid input: " + "; ".join(problems), problems=problems)
    holder = params["holder"] or default_holder(params["job_id"])
    try:
        store = KubeLeaseStore(api_client(module))
    except CoreException as error:
        module.fail_json(msg=f"{error}: check the kubeconfig, context or K8S_AUTH_* options.", holder=holder)
    try:
        if params["state"] == "acquired":
            result = acquire(store, params["namespace"], params["name"], holder, duration=params["duration"],
                             timeout=params["timeout"], poll_interval=params["poll_interval"], check_mode=module.check_mode,
                             create_namespace=params["create_namespace"])
        elif params["state"] == "renewed":
            result = renew(store, params["namespace"], params["name"], holder, duration=params["duration"],
                           check_mode=module.check_mode)
        else:
            result = release(store, params["namespace"], params["name"], holder, check_mode=module.check_mode)
    except LockError as error:
        module.fail_json(msg=str(error), holder=holder)
    except ApiException as error:
        module.fail_json(msg=f"The API server refused the Lease {params['namespace']}/{params['name']}: {error.status} "
                             f"{error.reason}; the credentials need get, create, update and delete on "
                             f"leases.coordination.k8s.io in {params['namespace']}.", holder=holder, status=error.status)
    if result["action"] == "not_ours" and not module.check_mode:
        module.warn(f"Not released: the lock {params['namespace']}/{params['name']} is held by {result['lease']['holder']!r}, "
                    f"not by this run ({holder!r}): this run's Lease expired or was deleted, and another run took the lock.")
    elif result["action"] == "taken_over":
        module.warn(f"Took over the expired lock {params['namespace']}/{params['name']} of {result['previous']['holder']!r} "
                    f"(last renewed {result['previous']['renew_time']}); that run ended without releasing it.")
    if result.get("note") is None:
        result.pop("note", None)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
