# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Flyte needs inside PostgreSQL: inspect the server, plan the SQL, apply it.

inspect -> plan -> apply. The inspection queries and the plan are pure functions of plain data
(unit-tested without a server); two small backends run SQL:

* DirectBackend - a psycopg 3 connection per database, statements composed with psycopg.sql;
* PsqlBackend - `psql` run through the Kubernetes API in the `postgres` container of a
  CloudNativePG primary, statements rendered with quote_ident()/quote_literal() and passed as `-c`
  arguments, results read back as one line of JSON.

Statements are kept as a template plus parts (identifiers, literals, secrets) until a backend runs
them, so that the text shown to the user masks every secret and both backends quote the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stringprep
import traceback
import unicodedata
from collections import namedtuple

from ansible_collections.homelab.flyte.plugins.module_utils.cnpg import CLUSTER_LABEL, PRIMARY_SELECTOR

try:
    import psycopg
    from psycopg import sql as psycopg_sql
except ImportError:
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None

DATABASE_PRIVILEGES = ("CONNECT", "CREATE", "TEMPORARY")
SCHEMA_PRIVILEGES = ("CREATE", "USAGE")
PUBLIC = "public"  # the grantee PUBLIC in parsed ACLs: no role can be named public
MASK = "********"
MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names, which would never converge
RESERVED_ROLES = ("public", "none", "current_user", "session_user", "current_role")
APPLICATION_NAME = "homelab.flyte.flyte_database"
# The one database user a CloudNativePG instance admits over its Unix socket: pg_hba.conf has
# `local all all peer map=local`, and pg_ident.conf maps only the OS user postgres to it
# (cloudnative-pg pkg/postgres/configuration.go). Every other user logs in over TCP with a password.
LOCAL_SUPERUSER = "postgres"


class DatabaseError(Exception):
    """A failure worded for the person running the playbook; `executed` lists the statements committed."""

    def __init__(self, message, executed=None):
        super().__init__(message)
        self.executed = list(executed or [])


class PrimaryError(DatabaseError):
    """No single Running primary to run psql in: what is wrong (problem) and what to look at (hint)."""

    def __init__(self, problem, hint):
        super().__init__(f"{problem} {hint} Nothing was changed.")
        self.problem, self.hint = problem, hint


class PsqlError(DatabaseError):
    """psql in the pod failed: the message explains it; rc, stdout and stderr are psql's own."""

    def __init__(self, message, rc, stdout, stderr):
        super().__init__(message)
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


# -- names and quoting ----------------------------------------------------------------------------


def check_name(name, what):
    """Return the name, or raise DatabaseError when PostgreSQL could not keep it exactly as given."""
    if not isinstance(name, str) or not name:
        raise DatabaseError(f"The {what} name must be a non-empty string.")
    if "\x00" in name:
        raise DatabaseError(f"The {what} name {name!r} contains a NUL character, which PostgreSQL cannot store.")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise DatabaseError(f"The {what} name {name!r} is longer than {MAX_NAME_BYTES} bytes: PostgreSQL would "
                            "truncate it. Choose a shorter name.")
    return name


def check_role_name(name, what="owner role"):
    check_name(name, what)
    if name.lower() in RESERVED_ROLES or name.startswith("pg_"):
        raise DatabaseError(f"The {what} name {name!r} is reserved by PostgreSQL (public, none, current_user, "
                            "session_user, current_role and names starting with pg_). Choose another name.")
    return name


def quote_ident(name):
    """A PostgreSQL identifier, always double-quoted: exact case, any character but NUL."""
    if "\x00" in name:
        raise DatabaseError(f"Cannot quote {name!r}: it contains a NUL character.")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    """A PostgreSQL string literal, as the server's quote_literal() writes it.

    The E'' form whenever a backslash occurs, so the result means the same whatever
    standard_conforming_strings is set to.
    """
    if "\x00" in value:
        raise DatabaseError("Cannot quote a string that contains a NUL character.")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def quote_conninfo(value):
    """A libpq connection-string value: single-quoted, with backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- statements -----------------------------------------------------------------------------------

Ident = namedtuple("Ident", "name")
Literal = namedtuple("Literal", "value")
Secret = namedtuple("Secret", "value")  # a literal that is shown as MASK
Statement = namedtuple("Statement", "template parts")


def statement(template, *parts):
    """A SQL statement: `template` with one {} per part; parts are Ident, Literal or Secret."""
    return Statement(template, tuple(parts))


def render(stmt, mask=True):
    """The statement's SQL text: for psql, or (with secrets masked) to show and return."""
    def one(part):
        if isinstance(part, Ident):
            return quote_ident(part.name)
        if isinstance(part, Secret) and mask:
            return "'" + MASK + "'"
        return quote_literal(part.value)
    return stmt.template.format(*[one(part) for part in stmt.parts])


def compose(stmt):
    """The statement as psycopg.sql.Composed, quoted by psycopg (libpq) itself."""
    def one(part):
        if isinstance(part, Ident):
            return psycopg_sql.Identifier(part.name)
        return psycopg_sql.Literal(part.value)
    return psycopg_sql.SQL(stmt.template).format(*[one(part) for part in stmt.parts])


# -- passwords ------------------------------------------------------------------------------------


def saslprep(password):
    """RFC 4013 SASLprep as PostgreSQL applies it to passwords; on failure PostgreSQL uses the raw text."""
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch for ch in password
                     if not stringprep.in_table_b1(ch))
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
                  stringprep.in_table_a1)
    if any(check(ch) for ch in normalized for check in prohibited):
        return password
    if any(stringprep.in_table_d1(ch) for ch in normalized):
        if any(stringprep.in_table_d2(ch) for ch in normalized) or not (
                stringprep.in_table_d1(normalized[0]) and stringprep.in_table_d1(normalized[-1])):
            return password
    return normalized


def _scram_keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password, salt=None, iterations=4096):
    """The SCRAM-SHA-256 verifier PostgreSQL would store for the password (random salt unless given).

    Sending this instead of the password keeps the plain text out of SQL, logs and pod exec commands.
    """
    salt = os.urandom(16) if salt is None else salt
    stored_key, server_key = _scram_keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _b64(raw):
    return base64.b64encode(raw).decode("ascii")


def password_matches(stored, role, password):
    """Whether pg_authid.rolpassword `stored` (SCRAM-SHA-256 or md5) accepts `password` for `role`."""
    if not stored:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            iterations, salt = stored[len("SCRAM-SHA-256$"):].split("$", 1)[0].split(":")
            expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(expected, stored)
    if stored.startswith("md5") and len(stored) == 35:
        expected = "md5" + hashlib.md5((password + role).encode("utf-8")).hexdigest()  # nosec - PostgreSQL's format
        return hmac.compare_digest(expected, stored)
    return False


# -- inspection -----------------------------------------------------------------------------------

_ACL_JSON = ("(SELECT coalesce(jsonb_agg(jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'public' "
             "ELSE pg_get_userbyid(a.grantee) END, 'privilege', a.privilege_type)), '[]'::jsonb) "
             "FROM aclexplode(coalesce({acl}, acldefault('{kind}', {owner}))) AS a)")


def cluster_inspection(owner, databases, with_password=False):
    """The query (run in the admin database) that returns the role and databases as one JSON text.

    The stored password is read (from pg_authid, superusers only) only when a password is managed.
    """
    acl = _ACL_JSON.format(acl="d.datacl", kind="d", owner="d.datdba")
    role_source = "pg_catalog.pg_authid" if with_password else "pg_catalog.pg_roles"
    password = "r.rolpassword" if with_password else "NULL::text"
    names = ", ".join(["{}"] * len(databases))
    template = (
        "SELECT jsonb_build_object("
        "'server_version', current_setting('server_version_num')::int, "
        "'login_user', current_user, "
        "'role', (SELECT jsonb_build_object('name', r.rolname, 'login', r.rolcanlogin, 'password', " + password + ") "
        "FROM " + role_source + " AS r WHERE r.rolname = {}), "
        "'databases', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', d.datname, "
        "'owner', pg_get_userbyid(d.datdba), 'default_acl', d.datacl IS NULL, 'acl', " + acl + ") "
        "ORDER BY d.datname), '[]'::jsonb) "
        "FROM pg_catalog.pg_database AS d WHERE d.datname::text = ANY (ARRAY[" + names + "]::text[]))"
        ")::text")
    return statement(template, Literal(owner), *[Literal(name) for name in databases])


def schema_inspection():
    """The query (run in each Flyte database) that returns its `public` schema as one JSON text."""
    acl = _ACL_JSON.format(acl="n.nspacl", kind="n", owner="n.nspowner")
    return statement(
        "SELECT jsonb_build_object('database', current_database(), 'public_schema', "
        "(SELECT jsonb_build_object('owner', pg_get_userbyid(n.nspowner), 'acl', " + acl + ") "
        "FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'public'))::text")


def parse_json_output(text, what="the inspection query"):
    """The JSON document a query printed (psql -A -t) or returned as text."""
    text = (text or "").strip()
    if not text:
        raise DatabaseError(f"{what} returned nothing.")
    try:
        return json.loads(text)
    except ValueError:
        lines = [line for line in text.splitlines() if line.strip()]
        for line in reversed(lines):  # anything printed before the result (a notice on stdout)
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise DatabaseError(f"{what} printed something that is not its JSON result: {text[:300]!r}")


def _acl(entries):
    acl = {}
    for entry in entries or []:
        acl.setdefault(entry["grantee"], set()).add(entry["privilege"])
    return {grantee: sorted(privileges) for grantee, privileges in sorted(acl.items())}


def parse_cluster_state(document):
    """The role and databases from cluster_inspection()'s JSON, as plain data for plan()."""
    try:
        role = document["role"]
        state = {
            "server_version": int(document["server_version"]),
            "login_user": document["login_user"],
            "role": None if role is None else {"name": role["name"], "login": bool(role["login"]),
                                               "password": role.get("password")},
            "databases": {},
        }
        for database in document["databases"]:
            state["databases"][database["name"]] = {
                "owner": database["owner"],
                "default_acl": bool(database["default_acl"]),
                "acl": _acl(database["acl"]),
            }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise DatabaseError(f"The inspection query returned an unexpected document ({error!r}): "
                            f"{json.dumps(document)[:300]}") from None
    return state


def parse_schema_state(document):
    """The `public` schema ({owner, acl}) from schema_inspection()'s JSON; None when it does not exist."""
    try:
        schema = document["public_schema"]
        if schema is None:
            return None
        return {"owner": schema["owner"], "acl": _acl(schema["acl"])}
    except (KeyError, TypeError, AttributeError) as error:
        raise DatabaseError(f"The schema inspection query returned an unexpected document ({error!r}): "
                            f"{json.dumps(document)[:300]}") from None


def inspect(backend, desired):
    """The server's state for `desired`: the cluster-wide part, then the schema of each existing database."""
    document = backend.query_json(None, cluster_inspection(desired["owner"], desired["databases"],
                                                           with_password=desired.get("password") is not None))
    state = parse_cluster_state(document)
    for name in desired["databases"]:
        if name in state["databases"]:
            state["databases"][name]["public_schema"] = parse_schema_state(backend.query_json(name, schema_inspection()))
    return state


# -- planning -------------------------------------------------------------------------------------


def default_database_acl(owner):
    """A database's privileges while its ACL is the default (NULL): the owner all, PUBLIC CONNECT and TEMPORARY."""
    return {owner: sorted(DATABASE_PRIVILEGES), PUBLIC: ["CONNECT", "TEMPORARY"]}


def acl_after_owner_change(database, new_owner):
    """The ACL after ALTER DATABASE ... OWNER TO: PostgreSQL hands the old owner's entries to the new one."""
    if database["default_acl"]:
        return default_database_acl(new_owner)
    acl = {grantee: set(privileges) for grantee, privileges in database["acl"].items()}
    moved = acl.pop(database["owner"], set())
    acl[new_owner] = acl.get(new_owner, set()) | moved
    return {grantee: sorted(privileges) for grantee, privileges in sorted(acl.items())}


def _step(database, transaction, statements):
    return {"database": database, "transaction": transaction, "statements": list(statements)}


def plan(state, desired):
    """The steps that bring `state` to `desired`, and the state expected afterwards.

    desired: owner, databases (list), revoke_public_connect (bool), password (plain text or None) and
    password_verifier (the SCRAM verifier to store when the password differs).

    Steps run in order; each is {database: None for the admin database, transaction, statements}:
      1. one transaction: the role, and owner, grants and REVOKE on databases that exist;
      2. CREATE DATABASE ... OWNER, one per missing database (PostgreSQL refuses it in a transaction);
      3. one transaction: REVOKE CONNECT on the new databases;
      4. per database, one transaction in that database: its public schema.
    Empty steps are left out; an empty list means nothing to do.
    """
    owner = desired["owner"]
    owner_ident = Ident(owner)
    role = state["role"]
    password = desired.get("password")
    first, creates, after_create, schemas = [], [], [], []

    if role is None:
        if password is not None:
            first.append(statement("CREATE ROLE {} LOGIN PASSWORD {}", owner_ident, Secret(desired["password_verifier"])))
        else:
            first.append(statement("CREATE ROLE {} LOGIN", owner_ident))
    else:
        if not role["login"]:
            first.append(statement("ALTER ROLE {} LOGIN", owner_ident))
        if password is not None and not password_matches(role.get("password"), owner, password):
            first.append(statement("ALTER ROLE {} PASSWORD {}", owner_ident, Secret(desired["password_verifier"])))

    after = {"role": {"name": owner, "exists": True, "login": True}, "databases": {}}
    if password is not None:
        after["role"]["password_matches"] = True

    for name in desired["databases"]:
        db_ident = Ident(name)
        current = state["databases"].get(name)
        if current is None:
            creates.append(_step(None, False, [statement("CREATE DATABASE {} OWNER {}", db_ident, owner_ident)]))
            acl = default_database_acl(owner)
            target = after_create
            schema = "unknown"
        else:
            acl = current["acl"]
            if current["owner"] != owner:
                first.append(statement("ALTER DATABASE {} OWNER TO {}", db_ident, owner_ident))
                acl = acl_after_owner_change(current, owner)
            target = first
            schema = current.get("public_schema", "unknown")
        acl = {grantee: list(privileges) for grantee, privileges in acl.items()}
        if not set(DATABASE_PRIVILEGES) <= set(acl.get(owner, [])):
            target.append(statement("GRANT ALL PRIVILEGES ON DATABASE {} TO {}", db_ident, owner_ident))
            acl[owner] = sorted(DATABASE_PRIVILEGES)
        if desired.get("revoke_public_connect") and "CONNECT" in acl.get(PUBLIC, []):
            target.append(statement("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", db_ident))
            acl[PUBLIC] = [privilege for privilege in acl[PUBLIC] if privilege != "CONNECT"]

        if schema is None:
            schema_statements = [statement("CREATE SCHEMA public AUTHORIZATION {}", owner_ident)]
        elif schema == "unknown" or not set(SCHEMA_PRIVILEGES) <= set(schema["acl"].get(owner, [])):
            schema_statements = [statement("GRANT ALL ON SCHEMA public TO {}", owner_ident)]
        else:
            schema_statements = []
        if schema_statements:
            schemas.append(_step(name, True, schema_statements))

        after["databases"][name] = _summary(owner, owner, acl, {"acl": {owner: list(SCHEMA_PRIVILEGES)}})

    steps = ([_step(None, True, first)] if first else []) + creates
    steps += [_step(None, True, after_create)] if after_create else []
    return steps + schemas, after


def _summary(current_owner, owner, acl, schema):
    """One database as the diff shows it: owner, the Flyte owner's privileges, PUBLIC's CONNECT, the schema."""
    return {
        "exists": True,
        "owner": current_owner,
        "owner_privileges": sorted(acl.get(owner, [])),
        "public_can_connect": "CONNECT" in acl.get(PUBLIC, []),
        "public_schema": ({"exists": False} if schema is None else
                          {"exists": True, "owner_privileges": sorted(schema["acl"].get(owner, []))}),
    }


def describe(state, desired):
    """What the module manages, as found: the `before` of the diff (plan() gives the `after`)."""
    owner = desired["owner"]
    role = state["role"]
    described = {"role": {"name": owner, "exists": role is not None, "login": bool(role and role["login"])},
                 "databases": {}}
    if desired.get("password") is not None:
        described["role"]["password_matches"] = role is not None and password_matches(
            role.get("password"), owner, desired["password"])
    for name in desired["databases"]:
        current = state["databases"].get(name)
        described["databases"][name] = {"exists": False} if current is None else _summary(
            current["owner"], owner, current["acl"], current.get("public_schema"))
    return described


# -- applying -------------------------------------------------------------------------------------


def ensure(backend, desired, check_mode=False):
    """Inspect, plan and (unless check_mode) apply; the module's result without `changed` decided elsewhere.

    A failing step raises DatabaseError with `executed` = the statements of the steps already
    committed. A rerun inspects again and plans only what is still missing, so it converges.
    """
    state = inspect(backend, desired)
    steps, after = plan(state, desired)
    queries = [render(stmt) for step in steps for stmt in step["statements"]]
    executed = []
    if not check_mode:
        for step in steps:
            try:
                backend.execute(step["database"], step["statements"], step["transaction"])
            except DatabaseError as error:
                done = "; ".join(executed) if executed else "none"
                raise DatabaseError(f"{error} Statements committed before this failure: {done}. The failed "
                                    f"{'transaction was rolled back' if step['transaction'] else 'statement had no effect'}; "
                                    "fix the cause and run the task again, it continues from what it finds.",
                                    executed) from None
            executed.extend(render(stmt) for stmt in step["statements"])
    return {
        "changed": bool(steps),
        "queries": queries,
        "steps": [{"database": step["database"] or backend.admin_db, "transaction": step["transaction"],
                   "queries": [render(stmt) for stmt in step["statements"]]} for step in steps],
        "server_version": state["server_version"],
        "before": describe(state, desired),
        "after": after,
    }


# -- direct connections (psycopg) -----------------------------------------------------------------


def explain_connect_error(message, host, port, user, dbname):
    """A libpq connection failure, said so that the reader knows what to check."""
    where = f"PostgreSQL at {host}:{port}"
    lowered = message.lower()
    if "password authentication failed" in lowered or "authentication failed" in lowered:
        return (f"Authentication failed for user {user} at {host}:{port}: the server refused the password. "
                "Check login_user and login_password (the superuser's credentials, e.g. the "
                "<cluster>-superuser Secret of a CloudNativePG cluster with enableSuperuserAccess). Nothing was changed.")
    if "no password supplied" in lowered:
        return (f"{where} requires a password for user {user}: set login_password. Nothing was changed.")
    if "no pg_hba.conf entry" in lowered:
        return (f"{where} has no pg_hba.conf rule that lets user {user} connect to database {dbname} from this "
                f"host: {message.strip()}. Allow it in the server's pg_hba (CloudNativePG: spec.postgresql.pg_hba). "
                "Nothing was changed.")
    if "does not exist" in lowered and "database" in lowered:
        return f"{where} has no database {dbname} to connect to: set login_db to an existing database. Nothing was changed."
    if "does not exist" in lowered and "role" in lowered:
        return f"{where} has no role {user}: set login_user to a superuser. Nothing was changed."
    if any(text in lowered for text in ("connection refused", "could not translate host name", "timeout expired",
                                        "no route to host", "network is unreachable", "name or service not known",
                                        "could not connect", "server closed the connection")):
        return (f"Cannot reach {where}: {message.strip()}. Check login_host and login_port, that the server runs "
                "and that this host may reach it (or use connection=kubernetes). Nothing was changed.")
    if "ssl" in lowered or "certificate" in lowered:
        return f"TLS with {where} failed: {message.strip()}. Check ssl_mode and ssl_rootcert. Nothing was changed."
    return f"Cannot connect to {where} as {user}: {message.strip()}"


class DirectBackend:
    """psycopg 3 connections from the Ansible host: one per database, in autocommit mode."""

    def __init__(self, host, port, user, password, admin_db, sslmode="prefer", sslrootcert=None, connect_timeout=10):
        self.params = {"host": host, "port": port, "user": user, "password": password, "sslmode": sslmode,
                       "connect_timeout": connect_timeout, "application_name": APPLICATION_NAME}
        if sslrootcert:
            self.params["sslrootcert"] = sslrootcert
        self.admin_db = admin_db
        self.connections = {}

    def _connection(self, database):
        dbname = database or self.admin_db
        if dbname not in self.connections:
            try:
                self.connections[dbname] = psycopg.connect(dbname=dbname, autocommit=True, **self.params)
            except psycopg.Error as error:
                raise DatabaseError(explain_connect_error(str(error), self.params["host"], self.params["port"],
                                                          self.params["user"], dbname)) from None
        return self.connections[dbname]

    def query_json(self, database, stmt):
        connection = self._connection(database)
        try:
            row = connection.execute(compose(stmt)).fetchone()
        except psycopg.Error as error:
            raise DatabaseError(f"Inspecting database {database or self.admin_db} failed: {_server_message(error)}") from None
        return parse_json_output(row[0] if row else "")

    def execute(self, database, statements, transaction):
        connection = self._connection(database)
        current = None
        try:
            if transaction:
                with connection.transaction():
                    for current in statements:
                        connection.execute(compose(current))
            else:
                for current in statements:
                    connection.execute(compose(current))
        except psycopg.Error as error:
            raise DatabaseError(f"PostgreSQL refused {render(current)} (in database {database or self.admin_db}): "
                                f"{_server_message(error)}.") from None

    def close(self):
        for connection in self.connections.values():
            connection.close()
        self.connections = {}


def _server_message(error):
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return primary or str(error).strip()


# -- psql in a CloudNativePG pod ------------------------------------------------------------------


def choose_primary(pods, cluster, namespace, container):
    """The name of the one Running primary among `pods` ({name, phase, deleting, containers}), or PrimaryError."""
    selector = PRIMARY_SELECTOR.format(cluster=cluster)
    live = [pod for pod in pods if not pod.get("deleting")]
    if not live:
        raise PrimaryError(
            f"The CloudNativePG cluster {cluster} in namespace {namespace} has no primary pod (none labelled {selector}).",
            f"Check that the Cluster exists and is healthy: kubectl get cluster {cluster} -n {namespace}; "
            f"kubectl get pods -n {namespace} -l {CLUSTER_LABEL}={cluster}.")
    if len(live) > 1:
        raise PrimaryError(
            f"The CloudNativePG cluster {cluster} in namespace {namespace} has {len(live)} pods labelled primary "
            f"({', '.join(sorted(pod['name'] for pod in live))}): a switchover is under way.",
            "Run the task again once it has finished.")
    pod = live[0]
    if pod.get("phase") != "Running":
        raise PrimaryError(
            f"The primary pod {namespace}/{pod['name']} of CloudNativePG cluster {cluster} is "
            f"{pod.get('phase') or 'in no phase'}, not Running.",
            f"Wait for the cluster to be healthy (kubectl get cluster {cluster} -n {namespace}).")
    if container not in pod.get("containers", []):
        raise PrimaryError(
            f"The primary pod {namespace}/{pod['name']} of CloudNativePG cluster {cluster} has no container {container} "
            f"(it has {', '.join(pod.get('containers', [])) or 'none'}).", "Set container.")
    return pod["name"]


def pod_summary(pod):
    """The parts of a pod that choose_primary() looks at, from a V1Pod or a pod as the API's JSON."""
    if isinstance(pod, dict):
        metadata, status, spec = pod.get("metadata") or {}, pod.get("status") or {}, pod.get("spec") or {}
        return {"name": metadata.get("name"), "phase": status.get("phase"),
                "deleting": metadata.get("deletionTimestamp") is not None,
                "containers": [container.get("name") for container in spec.get("containers") or []]}
    return {"name": pod.metadata.name, "phase": pod.status.phase if pod.status else None,
            "deleting": pod.metadata.deletion_timestamp is not None,
            "containers": [container.name for container in (pod.spec.containers if pod.spec else [])]}


def login_check(user, with_password=False):
    """The query (run as postgres in the user's database) that says whether `user` may log in there, as JSON.

    It reads pg_authid (superusers only), so it is run over the instance's socket as postgres, the
    one user CloudNativePG lets in there. The stored verifier is read only when a password is to be
    compared (password_matches(), on this side): the password itself is never sent anywhere.
    """
    verifier = "r.rolpassword" if with_password else "NULL::text"
    return statement(
        "SELECT jsonb_build_object('database', current_database(), 'login_user', current_user, "
        "'role', (SELECT jsonb_build_object('login', r.rolcanlogin, 'password', r.rolpassword IS NOT NULL, "
        "'valid_until', r.rolvaliduntil::text, 'expired', coalesce(r.rolvaliduntil < now(), false), "
        "'verifier', " + verifier + ") FROM pg_catalog.pg_authid AS r WHERE r.rolname = {}), "
        "'connect', CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {}) "
        "THEN has_database_privilege({}, current_database(), 'CONNECT') END)::text",
        Literal(user), Literal(user), Literal(user))


def psql_command(user, database, statements, transaction=False, connect_timeout=10):
    """The psql argv: no psqlrc, unaligned tuples only, stop at the first error, one -c per statement.

    A transaction is BEGIN ... COMMIT in separate -c arguments: when a statement fails, psql stops
    and disconnects, and the server rolls the open transaction back. Without one, every -c commits
    on its own (which CREATE DATABASE needs). psql does not interpolate variables in -c text.
    """
    conninfo = (f"dbname={quote_conninfo(database)} user={quote_conninfo(user)} "
                f"connect_timeout={int(connect_timeout)} application_name={APPLICATION_NAME}")
    argv = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    texts = (["BEGIN"] + list(statements) + ["COMMIT"]) if transaction else list(statements)
    for text in texts:
        argv += ["-c", text]
    return argv


def explain_psql_failure(rc, stdout, stderr, where, user, database):
    """psql's exit code and messages, said so that the reader knows what to check."""
    message = (stderr or stdout or "").strip()
    lowered = message.lower()
    if "executable file not found" in lowered or rc in (126, 127):
        return (f"psql cannot be run in {where}: {message}. The container must be a CloudNativePG "
                "PostgreSQL instance (set container).")
    if "authentication failed" in lowered or "no password supplied" in lowered:
        return (f"psql in {where} could not log in to PostgreSQL as {user}: {message}. Over an instance's socket "
                f"CloudNativePG admits only {LOCAL_SUPERUSER} (peer authentication, ident map local): set login_user "
                f"to {LOCAL_SUPERUSER}.")
    if rc == 2 or "connection to server" in lowered or "could not connect" in lowered or "psql: error:" in lowered:
        return (f"psql in {where} could not connect to PostgreSQL (database {database}, user {user}): {message}. "
                "Check that the instance is up and login_user/login_db exist.")
    if "ERROR:" in message:
        errors = [line for line in message.splitlines() if line.startswith(("ERROR:", "DETAIL:", "HINT:"))]
        return f"PostgreSQL refused a statement run by psql in {where}: {' '.join(errors)}"
    return f"psql in {where} failed with exit code {rc}: {message or 'no output'}"


class PsqlBackend:
    """psql run through the Kubernetes API in the postgres container of a CloudNativePG primary.

    `run` is the exec function (kube.exec_in_pod's signature without the client), so tests can fake it.
    """

    def __init__(self, run, namespace, pod, container, user, admin_db, connect_timeout=10):
        self.run, self.namespace, self.pod, self.container = run, namespace, pod, container
        self.user, self.admin_db, self.connect_timeout = user, admin_db, connect_timeout

    def _psql(self, database, texts, transaction):
        dbname = database or self.admin_db
        argv = psql_command(self.user, dbname, texts, transaction, self.connect_timeout)
        where = f"pod {self.namespace}/{self.pod} (container {self.container})"
        rc, stdout, stderr = self.run(self.namespace, self.pod, self.container, argv)
        if rc != 0 or "ERROR:" in (stderr or ""):
            raise PsqlError(explain_psql_failure(rc, stdout, stderr, where, self.user, dbname), rc, stdout, stderr)
        return stdout

    def query_json(self, database, stmt):
        return parse_json_output(self._psql(database, [render(stmt, mask=False)], False),
                                 f"The inspection query in database {database or self.admin_db}")

    def execute(self, database, statements, transaction):
        self._psql(database, [render(stmt, mask=False) for stmt in statements], transaction)

    def close(self):
        pass
