#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_health
short_description: Tell whether a Flyte deployment is healthy, and if not, why
version_added: 0.1.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Runs the checks of the reference deployment's Troubleshooting and Health Checks sections in one call, concurrently,
    and returns one result per check with its status (V(ok), V(warn), V(fail) or V(skipped)), a message saying what was
    found, and a hint with the remedy or the C(kubectl) command that digs further.
  - "The checks, by name:"
  - "C(<component>_pods) for each of O(components): the pods labelled C(app.kubernetes.io/name=<component>) are ready;
    none is a failure, some a warning; a pod that is not ready is explained by its containers' waiting or terminated
    reasons and restart counts."
  - "C(volume_claims): every PersistentVolumeClaim of O(namespace) is Bound."
  - "C(database_cluster): the CloudNativePG Cluster's phase is C(Cluster in healthy state) with C(readyInstances) equal to
    C(spec.instances)."
  - "C(database_reachable): O(database.user) may log in to the database O(database.name). By default C(psql -U postgres -d
    <db>) runs in the container O(database.container) of the Cluster's primary pod (label C(cnpg.io/instanceRole=primary),
    the same lookup as M(homelab.flyte.flyte_database)): over an instance's socket CloudNativePG admits only C(postgres)
    (peer authentication, ident map C(local)), so the reference's C(psql -U flyte) is refused there. As C(postgres) it
    reads whether the user exists, may log in, has a password that has not expired and may connect to the database; with
    O(database.password) also whether that is the password PostgreSQL holds (compared here against the stored verifier:
    the password is never sent into the pod). With O(database.host), C(select 1) as the user over a direct connection
    with psycopg."
  - "C(onepassword_item): the OnePasswordItem O(secrets.secret_name) reports Ready; skipped unless O(secrets.backend) is
    V(onepassword_operator)."
  - "C(secret_keys): the Secret O(secrets.secret_name) holds a value for each of O(secrets.keys). Only key names are read
    into the result, never values."
  - "C(blueprint_configmap): the Authentik blueprint ConfigMap exists and holds a non-empty C(*.yaml) file."
  - "C(blueprint_instance): with O(authentik.url) and O(authentik.api_token), Authentik reports the blueprint instance
    O(authentik.blueprint_name) C(successful) (C(GET <url>/api/v3/managed/blueprints/?name=<name>)); skipped otherwise."
  - "C(admin_auth_config): FlyteAdmin's ConfigMap O(admin.configmap), key C(server.yaml), has C(server.security.useAuth: true),
    C(auth.appAuth.authServerType) O(admin.auth_server_type), and C(auth.userAuth.openId.baseUrl) equal to the expected
    issuer (when one is known, see O(authentik.issuer_url))."
  - "C(oidc_discovery): the issuer's C(.well-known/openid-configuration) answers a JSON document whose C(issuer) is the
    issuer; HS256-only ID token signing is a warning. The issuer is O(authentik.issuer_url), else derived from
    O(authentik.url), else the one FlyteAdmin's configuration names."
  - "C(http_route), C(grpc_route): the HTTPRoute and GRPCRoute O(routes.name) are C(Accepted) with C(ResolvedRefs) by every
    parent; a route whose parents no gateway controller reports on is a warning, not a failure."
  - "C(admin_healthcheck): FlyteAdmin's C(/healthcheck) answers HTTP 200, through the API server's service proxy
    (C(/api/v1/namespaces/<ns>/services/<service>:<port>/proxy/healthcheck)) or at O(admin.healthcheck_url)."
  - Fails listing the failed checks and their hints, with every result attached, unless O(fail_on_unhealthy=false).
    Warnings do not make a deployment unhealthy.
options:
  namespace:
    description: Namespace of the Flyte deployment; the default namespace of every other object checked.
    type: str
    default: flyte-system
  components:
    description:
      - The Flyte components whose pods are checked, by their C(app.kubernetes.io/name) label. Each gives a check
        named C(<component>_pods).
      - Drop C(flytescheduler) when the native scheduler is disabled (the flyte role's C(flyte_scheduler_enabled)).
    type: list
    elements: str
    default: [flyteadmin, flytepropeller, datacatalog, flyteconsole, flytescheduler]
  database:
    description: The CloudNativePG Cluster and the database FlyteAdmin uses (the database role's C(database_connection) fact).
    type: dict
    default: {}
    suboptions:
      cluster_name:
        description: Name of the CloudNativePG Cluster.
        type: str
        default: flyte-postgres
      namespace:
        description: Namespace of the Cluster; defaults to O(namespace).
        type: str
      user:
        description: The PostgreSQL user Flyte logs in as, whose login is checked (C(select 1) as this user with O(database.host)).
        type: str
        default: flyte
      name:
        description: The database that must exist and answer.
        type: str
        default: flyteadmin
      container:
        description: The container of the primary pod to run C(psql) in.
        type: str
        default: postgres
      host:
        description:
          - Connect directly to this host with psycopg instead of running C(psql) in the primary pod. The database role's
            C(database_connection.host) is only resolvable inside the cluster.
        type: str
      port:
        description: Port of O(database.host).
        type: int
        default: 5432
      password:
        description:
          - Password of O(database.user). With O(database.host), to log in; otherwise compared with the verifier
            PostgreSQL stores for the user (read as C(postgres) in the pod), to find a password that has not reached
            PostgreSQL.
        type: str
      sslmode:
        description: libpq C(sslmode) of a direct connection.
        type: str
        default: prefer
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
  secrets:
    description: The Secret holding the Flyte item's fields (the secrets role's C(secrets_flyte) fact).
    type: dict
    default: {}
    suboptions:
      backend:
        description:
          - Where the Secret comes from, as the secrets role's C(secrets_backend). The C(onepassword_item) check runs only
            for V(onepassword_operator).
        type: str
        default: onepassword_operator
        choices: [onepassword_operator, onepassword_connect, inline]
      namespace:
        description: Namespace of the Secret; defaults to O(namespace).
        type: str
      secret_name:
        description: Name of the Secret, and of the OnePasswordItem that syncs it.
        type: str
        default: flyte-secrets
      keys:
        description: The keys the Secret must hold with a value.
        type: list
        elements: str
        default: [username, password, oidc-client-id, oidc-client-secret]
  authentik:
    description: Authentik, Flyte's OIDC provider (the authentik role's C(authentik_flyte) fact and variables).
    type: dict
    default: {}
    suboptions:
      namespace:
        description: Namespace of Authentik, where the blueprint ConfigMap is.
        type: str
        default: authentik
      blueprint_configmap:
        description: Name of the blueprint ConfigMap.
        type: str
        default: authentik-blueprint-flyte
      blueprint_name:
        description: C(metadata.name) of the blueprint, as Authentik lists its instance.
        type: str
        default: homelab-flyte-oidc
      url:
        description: Authentik's base URL, for its API (and the issuer when O(authentik.issuer_url) is not given).
        type: str
      application_slug:
        description: Slug of Flyte's Authentik application; the issuer is C(<url>/application/o/<slug>/).
        type: str
        default: flyte
      issuer_url:
        description: The OIDC issuer FlyteAdmin must trust, e.g. the C(authentik_flyte.issuer_url) fact.
        type: str
      api_token:
        description: An Authentik API token of a user allowed to view blueprint instances. Without it C(blueprint_instance) is skipped.
        type: str
      validate_certs:
        description: Whether to verify Authentik's TLS certificate.
        type: bool
        default: true
  routes:
    description: The Gateway API routes of the networking role.
    type: dict
    default: {}
    suboptions:
      name:
        description: Name of the HTTPRoute and of the GRPCRoute.
        type: str
        default: flyte
      namespace:
        description: Namespace of the routes; defaults to O(namespace).
        type: str
  admin:
    description: FlyteAdmin, as the flyte-core chart installs it.
    type: dict
    default: {}
    suboptions:
      configmap:
        description: FlyteAdmin's base ConfigMap, whose C(server.yaml) holds the auth settings.
        type: str
        default: flyte-admin-base-config
      service:
        description: FlyteAdmin's Service.
        type: str
        default: flyteadmin
      port:
        description: Name (or number) of the Service's HTTP port, for the service proxy.
        type: str
        default: http
      healthcheck_url:
        description: Check this URL (e.g. C(https://flyte.example.com/healthcheck)) instead of going through the service proxy.
        type: str
      auth_server_type:
        description: The C(auth.appAuth.authServerType) expected; the flyte role sets V(External) (Authentik).
        type: str
        default: External
      validate_certs:
        description: Whether to verify the TLS certificate of O(admin.healthcheck_url).
        type: bool
        default: true
  checks:
    description: Run only these checks (by name, see the description); the others are reported skipped. Empty runs all.
    type: list
    elements: str
    default: []
  skip_checks:
    description: Do not run these checks; they are reported skipped.
    type: list
    elements: str
    default: []
  check_timeout:
    description: Seconds each check may take; a check still running then fails with "no answer within check_timeout".
    type: float
    default: 10
  wait:
    description:
      - Repeat all checks every O(wait_sleep) seconds until none fails or O(timeout) seconds have passed, and report the
        last round.
    type: bool
    default: false
  timeout:
    description: With O(wait), how many seconds to keep trying.
    type: float
    default: 300
    aliases: [wait_timeout]
  wait_sleep:
    description: With O(wait), seconds between two rounds.
    type: float
    default: 5
  fail_on_unhealthy:
    description: Fail when a check fails. With V(false), report the results and set RV(healthy) instead.
    type: bool
    default: true
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
requirements:
  - kubernetes >= 24.2.0
  - PyYAML
  - psycopg >= 3 (only with O(database.host))
attributes:
  check_mode:
    support: full
    description: The module only reads; every check also runs in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no difference to show.
notes:
  - All checks run at once, each in its own thread and bounded by O(check_timeout); a round takes about as long as its slowest check.
  - "The credentials need get and list on pods, persistentvolumeclaims, configmaps and secrets, get on
    clusters.postgresql.cnpg.io, onepassworditems.onepassword.com, httproutes and grpcroutes, create on pods/exec (for
    C(database_reachable)) and get on services/proxy (for C(admin_healthcheck))."
  - A result never holds a secret value; O(database.password) and O(authentik.api_token) are not logged.
seealso:
  - name: Flyte deployment reference
    description: The Troubleshooting and Health Checks sections these checks automate.
    link: https://www.union.ai/docs/v1/flyte/user-guide/
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Check the deployment the site playbook converged, with the facts its roles published
  homelab.flyte.flyte_health:
    namespace: "{{ flyte_release.namespace }}"
    database:
      cluster_name: "{{ database_connection.cluster_name }}"
      user: "{{ database_connection.username }}"
      name: "{{ database_connection.databases.admin }}"
    secrets:
      backend: "{{ secrets_backend }}"
      secret_name: "{{ secrets_flyte.secret_name }}"
    authentik:
      issuer_url: "{{ authentik_flyte.issuer_url }}"
    routes:
      name: "{{ networking_flyte.route_name }}"
  register: flyte_health

- name: Wait up to five minutes for Flyte to become healthy after an upgrade, and show why not
  homelab.flyte.flyte_health:
    wait: true
    timeout: 300
    authentik:
      url: https://auth.example.com
      api_token: "{{ vault_authentik_api_token }}"
    admin:
      healthcheck_url: "https://{{ networking_flyte.hostname }}/healthcheck"

- name: Only the pods and the database, without failing the play
  homelab.flyte.flyte_health:
    checks: [flyteadmin_pods, flytepropeller_pods, datacatalog_pods, database_cluster, database_reachable]
    fail_on_unhealthy: false
  register: flyte_health

- name: Say it
  ansible.builtin.debug:
    msg: "{{ flyte_health.summary }}"

- name: Query the database over a direct connection, from a host inside the cluster (AWX)
  homelab.flyte.flyte_health:
    checks: [database_reachable]
    database:
      host: "{{ database_connection.host }}"
      password: "{{ lookup('kubernetes.core.k8s', kind='Secret', namespace=database_connection.namespace,
                    resource_name=database_connection.password_secret.name).data.password | b64decode }}"
"""

RETURN = r"""
healthy:
  description: Whether no check failed (warnings and skipped checks do not count).
  returned: always
  type: bool
  sample: false
summary:
  description: One line on the outcome.
  returned: always
  type: str
  sample: "unhealthy: 2 of 15 checks failed (flytepropeller_pods, database_cluster), 2 skipped"
checks:
  description: One result per check, in a fixed order (the component pods first).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: flytepropeller_pods
    status:
      description: V(ok), V(warn), V(fail) or V(skipped).
      type: str
      sample: fail
    message:
      description: What the check found.
      type: str
      sample: no running pods labelled app.kubernetes.io/name=flytepropeller in flyte-system
    hint:
      description: The remedy, or the command that digs further; empty when ok.
      type: str
      sample: "kubectl -n flyte-system get deployment flytepropeller -o wide  # replicas 0? ..."
    details:
      description: What the check read, as data (pods and containers, phases, URLs, key names). Never a secret value.
      type: dict
      sample: {"selector": "app.kubernetes.io/name=flytepropeller", "pods": []}
    duration:
      description: Seconds the check took.
      type: float
      sample: 0.041
counts:
  description: How many checks ended in each status.
  returned: always
  type: dict
  sample: {"ok": 11, "warn": 0, "fail": 2, "skipped": 2}
failed_checks:
  description: Names of the failed checks.
  returned: always
  type: list
  elements: str
  sample: [flytepropeller_pods, database_cluster]
attempts:
  description: Rounds of checks run (more than one only with O(wait)).
  returned: always
  type: int
  sample: 1
elapsed:
  description: Seconds spent on all rounds.
  returned: always
  type: float
  sample: 0.412
"""

from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ansible_collections.homelab.flyte.plugins.module_utils.health import argument_spec, failure_message, run, validate_params
from ansible_collections.homelab.flyte.plugins.module_utils.kube import api_client, auth_argument_spec


def main():
    spec = auth_argument_spec()
    spec.update(argument_spec())
    module = AnsibleK8SModule(argument_spec=spec, supports_check_mode=True)
    problems = validate_params(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    try:
        api = api_client(module)
    except CoreException as error:
        module.fail_json(msg=f"{error}: check the kubeconfig, context or K8S_AUTH_* options.")
    outcome = run(module.params, api)
    if not outcome["healthy"] and module.params["fail_on_unhealthy"]:
        module.fail_json(msg=failure_message(outcome["checks"], outcome["summary"]), changed=False, **outcome)
    module.exit_json(changed=False, **outcome)


if __name__ == "__main__":
    main()
