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
  - With O(state=dumped), takes a logical dump (C(pg_dump --format=custom)) of each database of O(databases)
    through the CloudNativePG primary pod into the directory O(dest) on the host running the task, with a
    SHA-256 for each file and a C(manifest.json). With O(state=restored), restores such a dump into fresh
    databases (O(restore_targets)), owned by O(owner). Both need O(connection=kubernetes); the content of a
    dump is never read into the result or printed.
options:
  state:
    description:
      - V(present) ensures the role, databases and privileges.
      - V(dumped) ensures that O(dest) holds a complete, intact dump of O(databases). A directory that already has
        one (every file matching its recorded SHA-256) is left alone and reported unchanged, unless O(force); so
        give each dump a directory of its own.
      - V(restored) ensures that each database of O(databases) has been restored from the dump in O(src) into its
        target (O(restore_targets)), which must not exist yet. A target that this very dump was restored into
        before (marked by a comment on the database) is left alone; any other existing target is refused.
      - In check mode, V(dumped) and V(restored) return in RV(commands) and RV(queries) what they would run and
        write nothing.
    type: str
    choices: [present, dumped, restored]
    default: present
  dest:
    description:
      - Directory on the host running the task for O(state=dumped); created with mode C(0700), files C(0600).
    type: path
  src:
    description:
      - Directory of a dump written by O(state=dumped), for O(state=restored). Every file is checked against its
        recorded size and SHA-256 before anything is restored.
    type: path
  force:
    description: With O(state=dumped), dump again even when O(dest) already holds a complete dump.
    type: bool
    default: false
  restore_targets:
    description:
      - With O(state=restored), the database to restore each dumped database into, as a mapping from the
        dumped database's name to the new one's. Databases of O(databases) not named here go to C(<name>_restored).
    type: dict
    default: {}
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
      - Required with O(state=present) and O(state=restored) (the owner of the restored databases, which must exist).
    type: str
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
    description:
      - Inspects the server and returns in RV(queries) the statements it would run, running none.
      - With O(state=dumped) or O(state=restored), returns in RV(commands) the pg_dump or pg_restore commands it would
        run in the pod, writes no file and creates no database.
  diff_mode:
    support: full
    description: The role and databases as found (before) and as they will be (after).
notes:
  - With O(connection=kubernetes) the user running the task needs C(list) on C(pods) and C(create) on
    C(pods/exec) in O(namespace).
  - Database and role names are always double-quoted, so they are used exactly as given (case included).
    Names longer than 63 bytes are refused, since PostgreSQL would truncate them.
  - Idempotent - a second run with the same options runs no statement and reports no change.
  - Dumps and restores stream through the Kubernetes API's exec connection; their time grows with the size of the
    database (see O(command_timeout), which bounds each pg_dump and pg_restore).
  - The dumps are as secret as the databases are; keep O(dest) private (the module writes it C(0700)).
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

- name: Dump flyteadmin and datacatalog through the primary pod, before an upgrade
  homelab.flyte.flyte_database:
    state: dumped
    cluster: flyte-postgres
    namespace: flyte-system
    dest: /var/backups/flyte/2025-01-31T0300
  register: dump

- name: Restore that dump into fresh databases
  homelab.flyte.flyte_database:
    state: restored
    cluster: flyte-postgres
    namespace: flyte-system
    owner: flyte
    src: /var/backups/flyte/2025-01-31T0300
    restore_targets:
      flyteadmin: flyteadmin_20250131
      datacatalog: datacatalog_20250131
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
commands:
  description:
    - With O(state=dumped) or O(state=restored), the pg_dump or pg_restore commands run in the pod (in check mode, the
      ones that would run), one shell-quoted line each. Empty when nothing had to be done.
  returned: when state is dumped or restored
  type: list
  elements: str
  sample:
    - pg_dump --format=custom --no-password '--dbname=dbname='"'"'flyteadmin'"'"' user='"'"'postgres'"'"' ...'
manifest:
  description: With O(state=dumped), the dump's manifest (also written to C(<dest>/manifest.json)).
  returned: when state is dumped, not in check mode
  type: dict
  contains:
    created:
      description: When the dump was taken (UTC, ISO 8601).
      type: str
    source:
      description: The pod and container the dump was taken in.
      type: str
    dumps:
      description: One entry per database - C(database), C(file), C(size) (bytes), C(sha256), C(seconds), C(command).
      type: list
      elements: dict
  sample:
    created: "2025-01-31T03:00:02.114242+00:00"
    source: pod flyte-system/flyte-postgres-1 (container postgres)
    dumps:
      - {database: flyteadmin, file: flyteadmin.dump, size: 81234, sha256: 9f86d0..., seconds: 1.2}
dumps:
  description: With O(state=dumped), each dump file - C(database), C(path), C(size), C(sha256).
  returned: when state is dumped, not in check mode
  type: list
  elements: dict
  sample:
    - {database: flyteadmin, path: /var/backups/flyte/2025-01-31T0300/flyteadmin.dump, size: 81234, sha256: 9f86d0...}
restores:
  description:
    - With O(state=restored), per database - C(database), C(target), C(file), C(sha256), C(size), C(restored) (false
      when the target already held this dump) and C(seconds).
  returned: when state is restored
  type: list
  elements: dict
  sample:
    - {database: flyteadmin, target: flyteadmin_20250131, restored: true, sha256: 9f86d0..., size: 81234}
pod:
  description: The primary pod psql ran in, with O(connection=kubernetes).
  returned: success and connection is kubernetes
  type: str
  sample: flyte-postgres-1
"""

import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.homelab.flyte.plugins.module_utils.cnpg import PRIMARY_SELECTOR
from ansible_collections.homelab.flyte.plugins.module_utils.database import (
    HAS_PSYCOPG,
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
from ansible_collections.homelab.flyte.plugins.module_utils.database_dump import dump, plan_dump, read_manifest, restore
from ansible_collections.homelab.flyte.plugins.module_utils.kube import (
    api_client,
    auth_argument_spec,
    exec_in_pod,
    exec_in_pod_streaming,
)
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
        state=dict(type="str", default="present", choices=["present", "dumped", "restored"]),
        connection=dict(type="str", default="kubernetes", choices=["kubernetes", "direct"]),
        owner=dict(type="str"),
        dest=dict(type="path"),
        src=dict(type="path"),
        force=dict(type="bool", default=False),
        restore_targets=dict(type="dict", default={}),
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


def streaming_exec(api, timeout):
    """kube.exec_in_pod_streaming for pg_dump/pg_restore, its failures worded like pod_exec's."""
    def run(namespace, pod, container, argv, sink=None, source=None):
        try:
            return exec_in_pod_streaming(api, namespace, pod, container, argv, sink=sink, source=source, timeout=timeout)
        except ApiException as error:
            raise DatabaseError(f"The Kubernetes API refused to run {argv[0]} in pod {namespace}/{pod}: {error.status} "
                                f"{error.reason}. The user needs create on pods/exec there.") from None
        except TimeoutError as error:
            raise DatabaseError(f"{error}: raise command_timeout for a database of this size.") from None
        except OSError as error:
            raise DatabaseError(f"Reading or writing the dump failed: {error}") from None
        except Exception as error:  # websocket and network errors of the exec stream
            raise DatabaseError(f"Running {argv[0]} in pod {namespace}/{pod} through the Kubernetes API failed: {error}") from None
    return run


def dump_or_restore(module, result):
    """state=dumped and state=restored: pg_dump/pg_restore in the primary pod, streamed to or from the controller."""
    params = module.params
    state = params["state"]
    if params["connection"] != "kubernetes":
        raise DatabaseError(f"state={state} runs pg_dump/pg_restore in the CloudNativePG primary pod, so that their "
                            "version is the server's: use connection=kubernetes.")
    databases = []
    for name in params["databases"]:
        if check_name(name, "database") not in databases:
            databases.append(name)
    check_name(params["login_user"], "login_user role")
    module.requires("kubernetes", "24.2.0", reason=f"for state={state}")
    try:
        api = api_client(module)
    except CoreException as error:
        raise DatabaseError(f"{error}. Check kubeconfig, context and the K8S_AUTH_* variables.") from None
    namespace, container = params["namespace"], params["container"]
    pod = primary_pod(api, namespace, params["cluster"], container)
    result["pod"] = pod
    where = f"pod {namespace}/{pod} (container {container})"
    streaming = streaming_exec(api, params["command_timeout"])

    def run(argv, sink=None, source=None):
        return streaming(namespace, pod, container, argv, sink=sink, source=source)

    if state == "dumped":
        dest = params["dest"]
        if module.check_mode:
            commands, needed = plan_dump(dest, params["login_user"], databases, params["connect_timeout"], params["force"])
            result.update(changed=needed, commands=commands)
            return
        manifest, changed = dump(run, dest, params["login_user"], databases, where, params["connect_timeout"],
                                 params["force"])
        entries = [entry for entry in manifest["dumps"] if entry["database"] in databases]
        result.update(changed=changed, commands=[entry["command"] for entry in entries] if changed else [],
                      manifest=manifest,
                      dumps=[{"database": entry["database"], "path": os.path.join(dest, entry["file"]),
                              "size": entry["size"], "sha256": entry["sha256"]} for entry in entries])
        return

    src = params["src"]
    manifest = read_manifest(src)
    if manifest is None:
        raise DatabaseError(f"{src} holds no dump (no manifest.json): give src the directory a state=dumped task wrote.")
    entries = {entry["database"]: entry for entry in manifest["dumps"]}
    missing = [name for name in databases if name not in entries]
    if missing:
        raise DatabaseError(f"The dump in {src} has no {', '.join(missing)} (it has {', '.join(sorted(entries)) or 'none'}).")
    unknown = sorted(set(params["restore_targets"]) - set(databases))
    if unknown:
        raise DatabaseError(f"restore_targets names {', '.join(unknown)}, which databases does not list.")
    pairs = []
    for name in databases:
        target = check_name(str(params["restore_targets"].get(name) or f"{name}_restored"), "restore target database")
        if target in databases or target in [t for _e, t in pairs]:
            raise DatabaseError(f"The restore target {target} is one of the dumped databases or another target: a "
                                "restore goes into a fresh database, never over one in use.")
        pairs.append((entries[name], target))
    owner = check_role_name(params["owner"])
    backend = PsqlBackend(pod_exec(api, params["command_timeout"]), namespace, pod, container, params["login_user"],
                          params["login_db"], params["connect_timeout"])
    changed, restores = restore(backend, run, src, pairs, owner, where, check_mode=module.check_mode,
                                connect_timeout=params["connect_timeout"])
    result.update(changed=changed, restores=restores,
                  commands=[item["command"] for item in restores if item["command"]],
                  queries=[query for item in restores for query in item["queries"]])


def main():
    # kubernetes and PyYAML are only needed with connection=kubernetes: backend_for() asks for them then.
    module = AnsibleK8SModule(
        check_k8s=False,
        check_pyyaml=False,
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("connection", "direct", ["login_host"]),
                     ("connection", "kubernetes", ["cluster", "namespace"]),
                     ("state", "present", ["owner"]),
                     ("state", "dumped", ["dest"]),
                     ("state", "restored", ["src", "owner"])],
    )
    params = module.params
    if params["state"] != "present":
        result = {"changed": False, "queries": [], "commands": [], "owner": params["owner"], "databases": params["databases"]}
        try:
            dump_or_restore(module, result)
        except DatabaseError as error:
            module.fail_json(msg=str(error), **result)
        module.exit_json(**result)
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
