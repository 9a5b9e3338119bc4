#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_database
short_description: Ensure the PostgreSQL role, databases and privileges that Flyte needs
version_added: 0.1.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Ensures inside PostgreSQL that the role O(owner) exists and may log in, that every database of
    O(databases) (FlyteAdmin's and DataCatalog's) exists and is owned by it, that it holds all privileges
    on those databases and on their C(public) schema, and optionally that PUBLIC may not connect to them.
  - PostgreSQL 15 no longer lets every role create objects in the C(public) schema; FlyteAdmin's
    migrations create their tables there, so the owner gets C(GRANT ALL ON SCHEMA public) explicitly.
  - Reaches the server either through the Kubernetes API, running C(psql) in the C(postgres) container of
    the primary instance of a CloudNativePG cluster (O(connection=kubernetes), no password needed), or
    directly with psycopg 3 (O(connection=direct)).
  - Inspects the server first and runs only the statements that are missing, so a second run changes
    nothing. Role, ownership and privilege changes run in one transaction; C(CREATE DATABASE) cannot run
    in a transaction block and runs on its own, after the role exists. If a step fails, the steps before it
    stay committed and the failure names them; running the task again continues from what it finds.
options:
  connection:
    description:
      - How to reach PostgreSQL.
      - V(kubernetes) runs C(psql) through the Kubernetes API (C(pods/exec)) in the primary pod of the
        CloudNativePG cluster O(cluster) in O(namespace), found by its labels
        C(cnpg.io/cluster=<cluster>,cnpg.io/instanceRole=primary). psql logs in locally as O(login_user),
        which CloudNativePG allows by peer authentication, so no password is involved.
      - V(direct) connects from the Ansible host with psycopg 3 to O(login_host) as O(login_user) with
        O(login_password).
    type: str
    choices: [kubernetes, direct]
    default: kubernetes
  owner:
    description:
      - The role that owns the Flyte databases and that FlyteAdmin and DataCatalog log in as. Created
        with C(LOGIN) when missing; given C(LOGIN) when it lacks it.
    type: str
    required: true
  owner_password:
    description:
      - The password O(owner) must have. Set when it differs from the one stored (compared against the
        stored SCRAM-SHA-256 or md5 verifier, which requires a superuser O(login_user)).
      - Sent to the server only as a SCRAM-SHA-256 verifier computed on the Ansible host, never as plain
        text, and shown as V(********) in RV(queries).
      - Leave unset to leave the role's password alone (for example when CloudNativePG manages it).
    type: str
  databases:
    description:
      - The databases to ensure, owned by O(owner).
    type: list
    elements: str
    default: [flyteadmin, datacatalog]
  revoke_public_connect:
    description:
      - Revoke C(CONNECT) on O(databases) from PUBLIC, so that only O(owner) and superusers can connect.
      - V(false) leaves PUBLIC's privileges as they are (it does not grant C(CONNECT) back).
    type: bool
    default: false
  login_user:
    description:
      - The PostgreSQL superuser to work as. With O(connection=kubernetes), psql connects as this user in the
        container; V(postgres) is the one CloudNativePG lets in by peer authentication.
    type: str
    default: postgres
  login_db:
    description: The existing database to connect to for the role and database statements.
    type: str
    default: postgres
  connect_timeout:
    description: Seconds to wait for a connection to PostgreSQL.
    type: int
    default: 10
  login_host:
    description:
      - Host name or address of the PostgreSQL server. Required with O(connection=direct), ignored otherwise.
    type: str
  login_port:
    description: Port of the PostgreSQL server, with O(connection=direct).
    type: int
    default: 5432
  login_password:
    description:
      - Password of O(login_user), with O(connection=direct). Unset, libpq looks in E(PGPASSWORD) and C(~/.pgpass).
    type: str
  ssl_mode:
    description: libpq's C(sslmode) for O(connection=direct).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
  ssl_rootcert:
    description: CA certificates to verify the server with, for O(ssl_mode=verify-ca) and O(ssl_mode=verify-full).
    type: path
  cluster:
    description:
      - Name of the CloudNativePG C(Cluster). Required with O(connection=kubernetes), ignored otherwise.
    type: str
  namespace:
    description:
      - Namespace of the CloudNativePG C(Cluster). Required with O(connection=kubernetes), ignored otherwise.
    type: str
  container:
    description: The container of the primary pod to run psql in, with O(connection=kubernetes).
    type: str
    default: postgres
  command_timeout:
    description: Seconds to wait for each psql command through the Kubernetes API, with O(connection=kubernetes).
    type: int
    default: 120
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
requirements:
  - psycopg >= 3.1 (with O(connection=direct))
  - kubernetes >= 24.2.0 (with O(connection=kubernetes))
attributes:
  check_mode:
    support: full
    description: Inspects the server and returns in RV(queries) the statements it would run, running none.
  diff_mode:
    support: full
    description: The role and databases as found (before) and as they will be (after).
notes:
  - With O(connection=kubernetes) the user running the task needs C(list) on C(pods) and C(create) on
    C(pods/exec) in O(namespace).
  - Database and role names are always double-quoted, so they are used exactly as given (case included).
    Names longer than 63 bytes are refused, since PostgreSQL would truncate them.
  - Idempotent - a second run with the same options runs no statement and reports no change.
  - Partial failure - the first transaction (role, ownership, grants on existing databases) is all or nothing.
    Each C(CREATE DATABASE) commits on its own. The privileges of new databases and the C(public) schema of
    each database follow in their own transactions. A failure reports the statements already committed.
seealso:
  - name: CloudNativePG - the pg_hba section
    description: The operator's fixed rules, which let local connections in by peer authentication.
    link: https://cloudnative-pg.io/documentation/current/postgresql_conf/#the-pg_hba-section
  - name: PostgreSQL 15 release notes
    description: The removal of CREATE on the public schema from PUBLIC.
    link: https://www.postgresql.org/docs/release/15.0/
"""

EXAMPLES = r"""
- name: Ensure Flyte's databases in the CloudNativePG cluster, through the Kubernetes API
  homelab.flyte.flyte_database:
    cluster: "{{ database_connection.cluster_name }}"
    namespace: "{{ database_connection.namespace }}"
    owner: "{{ database_connection.username }}"
    databases: "{{ database_connection.databases.values() | list }}"
    revoke_public_connect: true

- name: Ensure them over a direct connection, setting the owner's password
  homelab.flyte.flyte_database:
    connection: direct
    login_host: db.example.internal
    login_user: postgres
    login_password: "{{ postgres_superuser_password }}"
    ssl_mode: verify-full
    ssl_rootcert: /etc/ssl/certs/db-ca.pem
    owner: flyte
    owner_password: "{{ flyte_db_password }}"
    databases: [flyteadmin, datacatalog]

- name: Show what would run, without running it
  homelab.flyte.flyte_database:
    cluster: flyte-postgres
    namespace: flyte-system
    owner: flyte
  check_mode: true
  register: plan

- name: Print the statements
  ansible.builtin.debug:
    var: plan.queries
"""

RETURN = r"""
queries:
  description:
    - The SQL statements run, in order; in check mode the ones that would run. Empty when nothing had to change.
    - Passwords appear as V(********).
  returned: always
  type: list
  elements: str
  sample:
    - CREATE ROLE "flyte" LOGIN PASSWORD '********'
    - CREATE DATABASE "flyteadmin" OWNER "flyte"
    - CREATE DATABASE "datacatalog" OWNER "flyte"
    - GRANT ALL ON SCHEMA public TO "flyte"
    - GRANT ALL ON SCHEMA public TO "flyte"
steps:
  description:
    - RV(queries) grouped as they run - each group in one database, and either in one transaction or
      (C(CREATE DATABASE)) one statement at a time.
  returned: always
  type: list
  elements: dict
  contains:
    database:
      description: The database the statements run in.
      type: str
    transaction:
      description: Whether the statements run in one transaction.
      type: bool
    queries:
      description: The statements, passwords masked.
      type: list
      elements: str
  sample:
    - {database: postgres, transaction: true, queries: ['CREATE ROLE "flyte" LOGIN']}
    - {database: postgres, transaction: false, queries: ['CREATE DATABASE "flyteadmin" OWNER "flyte"']}
    - {database: flyteadmin, transaction: true, queries: ['GRANT ALL ON SCHEMA public TO "flyte"']}
owner:
  description: The owner role.
  returned: always
  type: str
  sample: flyte
databases:
  description: The databases ensured.
  returned: always
  type: list
  elements: str
  sample: [flyteadmin, datacatalog]
server_version:
  description: The server's C(server_version_num).
  returned: success
  type: int
  sample: 150013
pod:
  description: The primary pod psql ran in, with O(connection=kubernetes).
  returned: success and connection is kubernetes
  type: str
  sample: flyte-postgres-1
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.homelab.flyte.plugins.module_utils.database import (
    HAS_PSYCOPG,
    PRIMARY_SELECTOR,
    PSYCOPG_IMPORT_ERROR,
    DatabaseError,
    DirectBackend,
    PsqlBackend,
    check_name,
    check_role_name,
    choose_primary,
    ensure,
    pod_summary,
    scram_verifier,
)
from ansible_collections.homelab.flyte.plugins.module_utils.kube import api_client, auth_argument_spec, exec_in_pod
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

try:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException
except ImportError:  # kubernetes.core's client reports the missing library when connection=kubernetes
    CoreV1Api = ApiException = None

DIRECT_ONLY = ("login_host", "login_password", "ssl_rootcert")
KUBERNETES_ONLY = ("cluster", "namespace")


def argument_spec():
    spec = auth_argument_spec()
    spec.update(
        connection=dict(type="str", default="kubernetes", choices=["kubernetes", "direct"]),
        owner=dict(type="str", required=True),
        owner_password=dict(type="str", no_log=True),
        databases=dict(type="list", elements="str", default=["flyteadmin", "datacatalog"]),
        revoke_public_connect=dict(type="bool", default=False),
        login_user=dict(type="str", default="postgres"),
        login_db=dict(type="str", default="postgres"),
        connect_timeout=dict(type="int", default=10),
        login_host=dict(type="str"),
        login_port=dict(type="int", default=5432),
        login_password=dict(type="str", no_log=True),
        ssl_mode=dict(type="str", default="prefer", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        ssl_rootcert=dict(type="path"),
        cluster=dict(type="str"),
        namespace=dict(type="str"),
        container=dict(type="str", default="postgres"),
        command_timeout=dict(type="int", default=120),
    )
    return spec


def desired_state(params):
    """The module's options as plan() wants them; DatabaseError for names PostgreSQL could not keep."""
    owner = check_role_name(params["owner"])
    databases = []
    for name in params["databases"]:
        if check_name(name, "database") not in databases:
            databases.append(name)
    if not databases:
        raise DatabaseError("databases is empty: name at least one database (Flyte needs flyteadmin and datacatalog).")
    check_name(params["login_db"], "login_db database")
    check_name(params["login_user"], "login_user role")
    password = params["owner_password"]
    if password is not None and "\x00" in password:
        raise DatabaseError("owner_password contains a NUL character, which PostgreSQL cannot store.")
    return {"owner": owner, "databases": databases, "revoke_public_connect": params["revoke_public_connect"],
            "password": password, "password_verifier": scram_verifier(password) if password is not None else None}


def primary_pod(api, namespace, cluster, container):
    """The name of the Running primary pod of the CloudNativePG cluster, found by its labels."""
    try:
        pods = CoreV1Api(api).list_namespaced_pod(namespace, label_selector=PRIMARY_SELECTOR.format(cluster=cluster)).items
    except ApiException as error:
        raise DatabaseError(f"Cannot list the pods of namespace {namespace} to find the primary of CloudNativePG cluster "
                            f"{cluster}: {error.status} {error.reason}. The user needs list on pods there.") from None
    return choose_primary([pod_summary(pod) for pod in pods], cluster, namespace, container)


def pod_exec(api, timeout):
    def run(namespace, pod, container, argv):
        try:
            return exec_in_pod(api, namespace, pod, container, argv, timeout=timeout)
        except ApiException as error:
            raise DatabaseError(f"The Kubernetes API refused to run psql in pod {namespace}/{pod}: {error.status} "
                                f"{error.reason} {error.body or ''}".strip() + ". The user needs create on pods/exec there.") from None
        except Exception as error:  # websocket and network errors of the exec stream
            raise DatabaseError(f"Running psql in pod {namespace}/{pod} through the Kubernetes API failed: {error}") from None
    return run


def backend_for(module):
    params = module.params
    if params["connection"] == "direct":
        for name in KUBERNETES_ONLY:
            if params[name] is not None:
                module.warn(f"{name} is ignored with connection=direct.")
        if not HAS_PSYCOPG:
            module.fail_json(msg=missing_required_lib("psycopg (version 3)"), exception=PSYCOPG_IMPORT_ERROR)
        return DirectBackend(params["login_host"], params["login_port"], params["login_user"], params["login_password"],
                             params["login_db"], sslmode=params["ssl_mode"], sslrootcert=params["ssl_rootcert"],
                             connect_timeout=params["connect_timeout"]), {}
    for name in DIRECT_ONLY:
        if params[name] is not None:
            module.warn(f"{name} is ignored with connection=kubernetes: psql logs in inside the pod.")
    module.requires("kubernetes", "24.2.0", reason="for connection=kubernetes")
    try:
        api = api_client(module)
    except CoreException as error:
        raise DatabaseError(f"{error}. Check kubeconfig, context and the K8S_AUTH_* variables.") from None
    pod = primary_pod(api, params["namespace"], params["cluster"], params["container"])
    return PsqlBackend(pod_exec(api, params["command_timeout"]), params["namespace"], pod, params["container"],
                       params["login_user"], params["login_db"], params["connect_timeout"]), {"pod": pod}


def main():
    # kubernetes and PyYAML are only needed with connection=kubernetes: backend_for() asks for them then.
    module = AnsibleK8SModule(
        check_k8s=False,
        check_pyyaml=False,
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("connection", "direct", ["login_host"]),
                     ("connection", "kubernetes", ["cluster", "namespace"])],
    )
    params = module.params
    result = {"changed": False, "queries": [], "steps": [], "owner": params["owner"], "databases": params["databases"]}
    backend = None
    try:
        desired = desired_state(params)
        result["databases"] = desired["databases"]
        backend, extra = backend_for(module)
        result.update(extra)
        outcome = ensure(backend, desired, check_mode=module.check_mode)
    except DatabaseError as error:
        result.update(queries=error.executed, changed=bool(error.executed))
        module.fail_json(msg=str(error), **result)
    finally:
        if backend is not None:
            backend.close()
    result.update(changed=outcome["changed"], queries=outcome["queries"], steps=outcome["steps"],
                  server_version=outcome["server_version"])
    if module._diff:
        result["diff"] = {"before": outcome["before"], "after": outcome["after"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
