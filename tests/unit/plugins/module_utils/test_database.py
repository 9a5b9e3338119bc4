"""module_utils/database.py: quoting, passwords, inspection parsing, planning, psql and error wording.

Everything here is pure except the last section, which proves the quoting and both backends against the
real test PostgreSQL of tests/postgres.py (skipped without its binaries).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import database as db
from ansible_collections.homelab.flyte.tests.postgres import postgres_fixture

postgres = postgres_fixture()

NASTY = ['fly"te', "data'catalog", "back\\slash", "Flyte Admin", "x; DROP ROLE postgres; --", '"; SELECT 1; --',
         "$$ dollar $$", "unicode-ü-名前", ":psqlvar", "\\c postgres"]
DB_ALL = ["CONNECT", "CREATE", "TEMPORARY"]


# -- quoting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "quoted"), [
    ("flyte", '"flyte"'),
    ("Flyte", '"Flyte"'),
    ('fly"te', '"fly""te"'),
    ('""', '""""""'),
    ("x; DROP ROLE postgres; --", '"x; DROP ROLE postgres; --"'),
])
def test_quote_ident(name, quoted):
    assert db.quote_ident(name) == quoted


@pytest.mark.parametrize(("value", "quoted"), [
    ("flyte", "'flyte'"),
    ("it's", "'it''s'"),
    ("back\\slash", "E'back\\\\slash'"),
    ("\\'", "E'\\\\'''"),
    ("", "''"),
])
def test_quote_literal(value, quoted):
    assert db.quote_literal(value) == quoted


def test_quoting_refuses_nul():
    with pytest.raises(db.DatabaseError):
        db.quote_ident("a\x00b")
    with pytest.raises(db.DatabaseError):
        db.quote_literal("a\x00b")


def test_quote_conninfo():
    assert db.quote_conninfo("plain") == "'plain'"
    assert db.quote_conninfo("it's a \\ name") == "'it\\'s a \\\\ name'"


@pytest.mark.parametrize("name", ["a" * 63, "ü" * 31, "x y", 'q"uote'])
def test_check_name_accepts(name):
    assert db.check_name(name, "database") == name


@pytest.mark.parametrize(("name", "reason"), [("", "non-empty"), ("a" * 64, "63 bytes"), ("ü" * 32, "63 bytes"),
                                              ("a\x00", "NUL"), (None, "non-empty")])
def test_check_name_refuses(name, reason):
    with pytest.raises(db.DatabaseError, match=reason):
        db.check_name(name, "database")


@pytest.mark.parametrize("name", ["public", "PUBLIC", "none", "pg_monitor", "current_user"])
def test_check_role_name_refuses_reserved(name):
    with pytest.raises(db.DatabaseError, match="reserved"):
        db.check_role_name(name)


# -- statements ----------------------------------------------------------------------------------------


def test_render_quotes_parts_and_masks_secrets():
    stmt = db.statement("ALTER ROLE {} PASSWORD {}", db.Ident('fly"te'), db.Secret("SCRAM-SHA-256$x"))
    assert db.render(stmt) == """ALTER ROLE "fly""te" PASSWORD '********'"""
    assert db.render(stmt, mask=False) == """ALTER ROLE "fly""te" PASSWORD 'SCRAM-SHA-256$x'"""


def test_compose_uses_psycopg_sql():
    psycopg_sql = pytest.importorskip("psycopg.sql")
    composed = db.compose(db.statement("GRANT ALL ON DATABASE {} TO {}", db.Ident("a"), db.Ident("b")))
    assert isinstance(composed, psycopg_sql.Composed)


# -- passwords -----------------------------------------------------------------------------------------

# Stored by PostgreSQL 15 for the role `vec`.
PG_SCRAM = ("SCRAM-SHA-256$4096:u6kYxXYanLdYT2kmNdv2KQ==$CesmOwhCBX+K+RUHJuDM8lMwPFG5rG149dUpiBLQfXI="
            ":AH+se5GA4hmO2HCYn/9AoCDi0Gbj4ZGtHVRT76O2Uso=")  # 'correct horse'
PG_MD5 = "md5dda81278d591eafd728725b4fd963d08"  # 'correct horse' for role vec
PG_SCRAM_UNICODE = ("SCRAM-SHA-256$4096:xH1a786DeVSk1O5RocHToA==$bG982FZGPNmrKxJeBhy0GjPeLnBybAyOsZPZFLE3DLM="
                    ":muJ04JtCgLrzmuAkGsxSSoaTJ4y0nARTlVzllN2Enms=")  # 'I\u00adX\u2168 \u00aa', SASLprep'd


def test_password_matches_postgresql_verifiers():
    assert db.password_matches(PG_SCRAM, "vec", "correct horse")
    assert not db.password_matches(PG_SCRAM, "vec", "correct horse ")
    assert db.password_matches(PG_MD5, "vec", "correct horse")
    assert not db.password_matches(PG_MD5, "other", "correct horse")
    assert db.password_matches(PG_SCRAM_UNICODE, "vec", "I\u00adX\u2168 \u00aa")
    assert db.password_matches(PG_SCRAM_UNICODE, "vec", "IXIX a")  # the same after SASLprep
    assert not db.password_matches(PG_SCRAM_UNICODE, "vec", "I\u00adX\u2168 b")


@pytest.mark.parametrize("stored", [None, "", "plaintext", "SCRAM-SHA-256$garbage", "md5short"])
def test_password_matches_nothing_else(stored):
    assert not db.password_matches(stored, "vec", "plaintext")


def test_scram_verifier_round_trip_and_random_salt():
    first, second = db.scram_verifier("s3cret"), db.scram_verifier("s3cret")
    assert first != second and first.startswith("SCRAM-SHA-256$4096:")
    assert db.password_matches(first, "any", "s3cret") and not db.password_matches(first, "any", "s3cret!")
    salt = PG_SCRAM.split(":")[1].split("$")[0]
    import base64
    assert db.scram_verifier("correct horse", base64.b64decode(salt)) == PG_SCRAM


@pytest.mark.parametrize(("raw", "prepared"), [
    ("user", "user"),                   # RFC 4013 examples
    ("I\u00adX", "IX"),
    ("\u00aa", "a"),
    ("\u2168", "IX"),
    ("a\u00a0b", "a b"),
    ("\u0007bell", "\u0007bell"),       # prohibited: PostgreSQL falls back to the raw password
    ("\u0627\u0031", "\u0627\u0031"),   # bidi rule broken: raw
])
def test_saslprep(raw, prepared):
    assert db.saslprep(raw) == prepared


# -- inspection ----------------------------------------------------------------------------------------


def test_cluster_inspection_quotes_names_as_literals():
    stmt = db.cluster_inspection("o'wner", ["flyteadmin", "x'); DROP DATABASE y; --"])
    text = db.render(stmt)
    assert "'o''wner'" in text and "'x''); DROP DATABASE y; --'" in text
    assert "pg_roles" in text and "rolpassword" not in text
    assert "pg_authid" in db.render(db.cluster_inspection("o", ["d"], with_password=True))


CLUSTER_DOC = {
    "server_version": 150018, "login_user": "postgres",
    "role": {"name": "flyte", "login": True, "password": None},
    "databases": [
        {"name": "flyteadmin", "owner": "flyte", "default_acl": True,
         "acl": [{"grantee": "public", "privilege": "TEMPORARY"}, {"grantee": "public", "privilege": "CONNECT"},
                 {"grantee": "flyte", "privilege": "CREATE"}, {"grantee": "flyte", "privilege": "TEMPORARY"},
                 {"grantee": "flyte", "privilege": "CONNECT"}]},
    ],
}


def test_parse_cluster_state():
    state = db.parse_cluster_state(CLUSTER_DOC)
    assert state["server_version"] == 150018
    assert state["role"] == {"name": "flyte", "login": True, "password": None}
    assert state["databases"] == {"flyteadmin": {"owner": "flyte", "default_acl": True,
                                                 "acl": {"flyte": DB_ALL, "public": ["CONNECT", "TEMPORARY"]}}}


def test_parse_cluster_state_without_role_or_databases():
    state = db.parse_cluster_state({"server_version": "160000", "login_user": "postgres", "role": None, "databases": []})
    assert state["role"] is None and state["databases"] == {} and state["server_version"] == 160000


@pytest.mark.parametrize("document", [{}, [], {"server_version": 1, "login_user": "p", "role": None},
                                      {"server_version": "x", "login_user": "p", "role": None, "databases": []},
                                      {"server_version": 1, "login_user": "p", "role": None, "databases": [{"name": "a"}]}])
def test_parse_cluster_state_refuses_other_documents(document):
    with pytest.raises(db.DatabaseError, match="unexpected document"):
        db.parse_cluster_state(document)


def test_parse_schema_state():
    assert db.parse_schema_state({"database": "d", "public_schema": None}) is None
    parsed = db.parse_schema_state({"database": "d", "public_schema": {"owner": "pg_database_owner", "acl": [
        {"grantee": "pg_database_owner", "privilege": "USAGE"}, {"grantee": "pg_database_owner", "privilege": "CREATE"},
        {"grantee": "public", "privilege": "USAGE"}]}})
    assert parsed == {"owner": "pg_database_owner", "acl": {"pg_database_owner": ["CREATE", "USAGE"], "public": ["USAGE"]}}
    with pytest.raises(db.DatabaseError):
        db.parse_schema_state({"public_schema": {"acl": []}})


@pytest.mark.parametrize("output", ['{"a": 1}\n', '  {"a": 1}  ', 'NOTICE: something\n{"a": 1}\n', '{"a":\n 1}'])
def test_parse_json_output(output):
    assert db.parse_json_output(output) == {"a": 1}


@pytest.mark.parametrize(("output", "message"), [("", "returned nothing"), ("\n", "returned nothing"),
                                                 ("(1 row)", "not its JSON")])
def test_parse_json_output_refuses(output, message):
    with pytest.raises(db.DatabaseError, match=message):
        db.parse_json_output(output)


# -- planning ------------------------------------------------------------------------------------------


def desired(**overrides):
    values = {"owner": "flyte", "databases": ["flyteadmin", "datacatalog"], "revoke_public_connect": False,
              "password": None, "password_verifier": None}
    values.update(overrides)
    return values


def good_database(owner="flyte", public_connect=True, schema=True):
    acl = {owner: DB_ALL, "public": ["CONNECT", "TEMPORARY"] if public_connect else ["TEMPORARY"]}
    return {"owner": owner, "default_acl": public_connect, "acl": acl,
            "public_schema": {"owner": "pg_database_owner",
                              "acl": {owner: ["CREATE", "USAGE"], "pg_database_owner": ["CREATE", "USAGE"],
                                      "public": ["USAGE"]}} if schema else None}


def state(role=True, login=True, password=None, **databases):
    return {"server_version": 150018, "login_user": "postgres",
            "role": {"name": "flyte", "login": login, "password": password} if role else None,
            "databases": databases}


def plan_steps(current, wanted):
    return db.plan(current, wanted)[0]


def texts(steps):
    return [(step["database"], step["transaction"], [db.render(stmt) for stmt in step["statements"]]) for step in steps]


def test_plan_from_scratch():
    steps, after = db.plan(state(role=False), desired(revoke_public_connect=True))
    assert texts(steps) == [
        (None, True, ['CREATE ROLE "flyte" LOGIN']),
        (None, False, ['CREATE DATABASE "flyteadmin" OWNER "flyte"']),
        (None, False, ['CREATE DATABASE "datacatalog" OWNER "flyte"']),
        (None, True, ['REVOKE CONNECT ON DATABASE "flyteadmin" FROM PUBLIC',
                      'REVOKE CONNECT ON DATABASE "datacatalog" FROM PUBLIC']),
        ("flyteadmin", True, ['GRANT ALL ON SCHEMA public TO "flyte"']),
        ("datacatalog", True, ['GRANT ALL ON SCHEMA public TO "flyte"']),
    ]
    assert after["role"] == {"name": "flyte", "exists": True, "login": True}
    assert after["databases"]["flyteadmin"] == {"exists": True, "owner": "flyte", "owner_privileges": DB_ALL,
                                                "public_can_connect": False,
                                                "public_schema": {"exists": True, "owner_privileges": ["CREATE", "USAGE"]}}


def test_plan_nothing_to_do_and_after_equals_before():
    current = state(flyteadmin=good_database(), datacatalog=good_database())
    steps, after = db.plan(current, desired())
    assert steps == []
    assert after == db.describe(current, desired())


def test_plan_revoke_only_where_public_can_connect():
    current = state(flyteadmin=good_database(public_connect=False), datacatalog=good_database())
    steps = plan_steps(current, desired(revoke_public_connect=True))
    assert texts(steps) == [(None, True, ['REVOKE CONNECT ON DATABASE "datacatalog" FROM PUBLIC'])]


def test_plan_role_without_login():
    steps = plan_steps(state(login=False, flyteadmin=good_database(), datacatalog=good_database()), desired())
    assert texts(steps) == [(None, True, ['ALTER ROLE "flyte" LOGIN'])]


def test_plan_password_only_when_it_differs():
    verifier = db.scram_verifier("new")
    steps, after = db.plan(state(password=db.scram_verifier("old"), flyteadmin=good_database(),
                                 datacatalog=good_database()), desired(password="new", password_verifier=verifier))
    assert texts(steps) == [(None, True, ["""ALTER ROLE "flyte" PASSWORD '********'"""])]
    assert steps[0]["statements"][0].parts[1] == db.Secret(verifier)
    assert after["role"]["password_matches"] is True
    steps = plan_steps(state(password=verifier, flyteadmin=good_database(), datacatalog=good_database()),
                       desired(password="new", password_verifier=db.scram_verifier("new")))
    assert steps == []


def test_plan_new_role_with_password():
    steps = plan_steps(state(role=False), desired(databases=["a"], password="pw", password_verifier="SCRAM-SHA-256$v"))
    assert db.render(steps[0]["statements"][0]) == """CREATE ROLE "flyte" LOGIN PASSWORD '********'"""
    assert db.render(steps[0]["statements"][0], mask=False) == """CREATE ROLE "flyte" LOGIN PASSWORD 'SCRAM-SHA-256$v'"""


def test_plan_owner_change_with_default_acl_needs_no_grant():
    current = state(flyteadmin=good_database(owner="postgres"), datacatalog=good_database())
    current["databases"]["flyteadmin"]["public_schema"]["acl"]["flyte"] = ["CREATE", "USAGE"]
    steps, after = db.plan(current, desired())
    assert texts(steps) == [(None, True, ['ALTER DATABASE "flyteadmin" OWNER TO "flyte"'])]
    assert after["databases"]["flyteadmin"]["owner"] == "flyte"


def test_plan_owner_change_hands_over_explicit_privileges():
    explicit = {"owner": "someone", "default_acl": False,
                "acl": {"someone": DB_ALL, "public": ["TEMPORARY"]},
                "public_schema": {"owner": "x", "acl": {"flyte": ["CREATE", "USAGE"]}}}
    steps, after = db.plan(state(flyteadmin=explicit, datacatalog=good_database(public_connect=False)),
                           desired(revoke_public_connect=True))
    assert texts(steps) == [(None, True, ['ALTER DATABASE "flyteadmin" OWNER TO "flyte"'])]
    assert after["databases"]["flyteadmin"]["owner_privileges"] == DB_ALL


def test_plan_grants_privileges_the_owner_lost():
    lost = good_database()
    lost.update(default_acl=False, acl={"flyte": ["CONNECT"], "public": ["CONNECT", "TEMPORARY"]})
    steps = plan_steps(state(flyteadmin=lost, datacatalog=good_database()), desired())
    assert texts(steps) == [(None, True, ['GRANT ALL PRIVILEGES ON DATABASE "flyteadmin" TO "flyte"'])]


def test_plan_public_schema():
    # PostgreSQL 15's default: the owner may create in public only through pg_database_owner.
    pg15 = good_database()
    pg15["public_schema"]["acl"].pop("flyte")
    steps = plan_steps(state(flyteadmin=pg15, datacatalog=good_database(schema=False)), desired())
    assert texts(steps) == [("flyteadmin", True, ['GRANT ALL ON SCHEMA public TO "flyte"']),
                            ("datacatalog", True, ['CREATE SCHEMA public AUTHORIZATION "flyte"'])]


def test_plan_role_and_ownership_in_one_transaction():
    steps = plan_steps(state(role=False, flyteadmin=good_database(owner="postgres")), desired(databases=["flyteadmin"]))
    assert texts(steps)[0] == (None, True, ['CREATE ROLE "flyte" LOGIN', 'ALTER DATABASE "flyteadmin" OWNER TO "flyte"'])


def test_plan_quotes_every_name():
    steps = plan_steps(state(role=False), desired(owner=NASTY[0], databases=NASTY[1:3]))
    rendered = [text for step in steps for text in texts([step])[0][2]]
    assert 'CREATE ROLE "fly""te" LOGIN' in rendered
    assert """CREATE DATABASE "back\\slash" OWNER "fly""te\"""" in rendered


def test_acl_after_owner_change():
    assert db.acl_after_owner_change({"owner": "a", "default_acl": True, "acl": {}}, "b") == db.default_database_acl("b")
    explicit = {"owner": "a", "default_acl": False, "acl": {"a": ["CONNECT"], "b": ["TEMPORARY"], "c": ["CREATE"]}}
    assert db.acl_after_owner_change(explicit, "b") == {"b": ["CONNECT", "TEMPORARY"], "c": ["CREATE"]}


def test_describe():
    described = db.describe(state(role=False, flyteadmin=good_database(owner="postgres", schema=False)),
                            desired(password="x"))
    assert described["role"] == {"name": "flyte", "exists": False, "login": False, "password_matches": False}
    assert described["databases"]["datacatalog"] == {"exists": False}
    assert described["databases"]["flyteadmin"]["owner"] == "postgres"
    assert described["databases"]["flyteadmin"]["public_schema"] == {"exists": False}


# -- ensure with a fake backend ------------------------------------------------------------------------


class FakeBackend:
    admin_db = "postgres"

    def __init__(self, current, fail_on=None):
        self.current, self.fail_on, self.executed, self.queried = current, fail_on, [], []

    def query_json(self, database, stmt):
        self.queried.append(database)
        if database is None:
            return {"server_version": 150018, "login_user": "postgres", "role": self.current["role"],
                    "databases": [{"name": name, "owner": d["owner"], "default_acl": d["default_acl"],
                                   "acl": [{"grantee": g, "privilege": p} for g, ps in d["acl"].items() for p in ps]}
                                  for name, d in self.current["databases"].items()]}
        schema = self.current["databases"][database]["public_schema"]
        return {"database": database, "public_schema": schema and {
            "owner": schema["owner"], "acl": [{"grantee": g, "privilege": p} for g, ps in schema["acl"].items() for p in ps]}}

    def execute(self, database, statements, transaction):
        texts_ = [db.render(stmt) for stmt in statements]
        if self.fail_on and self.fail_on in texts_[0]:
            raise db.DatabaseError("PostgreSQL refused it.")
        self.executed.append((database, transaction, texts_))


def test_ensure_check_mode_runs_nothing():
    backend = FakeBackend(state(role=False))
    result = db.ensure(backend, desired(), check_mode=True)
    assert result["changed"] and backend.executed == []
    assert result["queries"][0] == 'CREATE ROLE "flyte" LOGIN'
    assert result["steps"][0] == {"database": "postgres", "transaction": True, "queries": ['CREATE ROLE "flyte" LOGIN']}
    assert result["before"]["role"]["exists"] is False and result["after"]["role"]["exists"] is True


def test_ensure_runs_steps_in_order_and_inspects_existing_databases_only():
    backend = FakeBackend(state(role=False, flyteadmin=good_database(owner="postgres")))
    result = db.ensure(backend, desired())
    assert backend.queried == [None, "flyteadmin"]
    # role and owner; CREATE DATABASE datacatalog; the public schema of both (flyte had no grant there)
    assert [step[:2] for step in backend.executed] == [(None, True), (None, False), ("flyteadmin", True),
                                                       ("datacatalog", True)]
    assert result["queries"] == [text for step in backend.executed for text in step[2]]


def test_ensure_reports_what_was_committed_before_a_failure():
    backend = FakeBackend(state(role=False), fail_on="CREATE DATABASE \"datacatalog\"")
    with pytest.raises(db.DatabaseError) as failure:
        db.ensure(backend, desired())
    assert failure.value.executed == ['CREATE ROLE "flyte" LOGIN', 'CREATE DATABASE "flyteadmin" OWNER "flyte"']
    assert "Statements committed before this failure" in str(failure.value)
    assert "statement had no effect" in str(failure.value) and "run the task again" in str(failure.value)


def test_ensure_nothing_to_do():
    backend = FakeBackend(state(flyteadmin=good_database(), datacatalog=good_database()))
    result = db.ensure(backend, desired())
    assert result["changed"] is False and result["queries"] == [] and backend.executed == []


# -- CloudNativePG primary and psql --------------------------------------------------------------------


def pod(name="pg-1", phase="Running", deleting=False, containers=("postgres",)):
    return {"name": name, "phase": phase, "deleting": deleting, "containers": list(containers)}


def test_choose_primary():
    assert db.choose_primary([pod()], "pg", "ns", "postgres") == "pg-1"
    assert db.choose_primary([pod("pg-2", deleting=True), pod()], "pg", "ns", "postgres") == "pg-1"


@pytest.mark.parametrize(("pods", "message"), [
    ([], "has no primary pod (none labelled cnpg.io/cluster=pg,cnpg.io/instanceRole=primary)"),
    ([pod(deleting=True)], "has no primary pod"),
    ([pod("pg-1"), pod("pg-2")], "has 2 pods labelled primary (pg-1, pg-2)"),
    ([pod(phase="Pending")], "ns/pg-1 of CloudNativePG cluster pg is Pending, not Running"),
    ([pod(phase=None)], "is in no phase, not Running"),
    ([pod(containers=["bootstrap"])], "has no container postgres (it has bootstrap)"),
])
def test_choose_primary_refuses(pods, message):
    with pytest.raises(db.DatabaseError) as failure:
        db.choose_primary(pods, "pg", "ns", "postgres")
    assert message in str(failure.value)


def test_psql_command():
    argv = db.psql_command("postgres", "fly'te db", ["SELECT 1"], connect_timeout=7)
    assert argv[:7] == ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    assert argv[7:9] == ["-d", "dbname='fly\\'te db' user='postgres' connect_timeout=7 "
                               "application_name=homelab.flyte.flyte_database"]
    assert argv[9:] == ["-c", "SELECT 1"]
    assert db.psql_command("u", "d", ["A", "B"], transaction=True)[9:] == ["-c", "BEGIN", "-c", "A", "-c", "B", "-c", "COMMIT"]
    assert db.psql_command("u", "d", ["A", "B"])[9:] == ["-c", "A", "-c", "B"]


@pytest.mark.parametrize(("rc", "stderr", "message"), [
    (2, 'psql: error: connection to server at "127.0.0.1", port 5432 failed: Connection refused',
     "could not connect to PostgreSQL (database postgres, user postgres)"),
    (2, 'psql: error: ... FATAL:  password authentication failed for user "postgres"', "could not log in to PostgreSQL as postgres"),
    (1, 'ERROR:  permission denied to create database\nerror: Internal error occurred: exit status 1',
     "PostgreSQL refused a statement run by psql in pod ns/pg-1 (container postgres): ERROR:  permission denied to create database"),
    (3, 'ERROR:  role "x" does not exist', 'ERROR:  role "x" does not exist'),
    (127, "", "psql cannot be run"),
    (1, 'exec: "psql": executable file not found in $PATH', "psql cannot be run"),
    (9, "", "failed with exit code 9: no output"),
])
def test_explain_psql_failure(rc, stderr, message):
    assert message in db.explain_psql_failure(rc, "", stderr, "pod ns/pg-1 (container postgres)", "postgres", "postgres")


@pytest.mark.parametrize(("error", "message"), [
    ('connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "postgres"',
     "Authentication failed for user postgres at 10.0.0.1:5432"),
    ('connection to server at "10.0.0.1", port 5432 failed: Connection refused', "Cannot reach PostgreSQL at 10.0.0.1:5432"),
    ('could not translate host name "nowhere" to address', "Cannot reach PostgreSQL at 10.0.0.1:5432"),
    ('FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "postgres", database "postgres"', "no pg_hba.conf rule"),
    ('FATAL:  database "nope" does not exist', "has no database postgres to connect to"),
    ('fe_sendauth: no password supplied', "requires a password for user postgres"),
    ('server does not support SSL, but SSL was required', "TLS with PostgreSQL"),
])
def test_explain_connect_error(error, message):
    explained = db.explain_connect_error(error, "10.0.0.1", 5432, "postgres", "postgres")
    assert message in explained


def test_psql_backend_with_a_fake_exec():
    calls = []

    def run(namespace, pod_name, container, argv):
        calls.append((namespace, pod_name, container, argv))
        return (0, '{"database": "d", "public_schema": null}\n', "") if len(calls) == 1 else (1, "", "ERROR:  boom")

    backend = db.PsqlBackend(run, "ns", "pg-1", "postgres", "postgres", "postgres")
    assert backend.query_json("d", db.schema_inspection()) == {"database": "d", "public_schema": None}
    assert calls[0][:3] == ("ns", "pg-1", "postgres") and "dbname='d'" in calls[0][3][8]
    with pytest.raises(db.DatabaseError, match="boom"):
        backend.execute(None, [db.statement("SELECT 1")], True)
    assert "dbname='postgres'" in calls[1][3][8]


def test_psql_backend_sends_secrets_unmasked_but_only_as_verifier():
    seen = []
    backend = db.PsqlBackend(lambda *args: seen.append(args[3]) or (0, "", ""), "ns", "p", "postgres", "postgres", "postgres")
    backend.execute(None, [db.statement("ALTER ROLE {} PASSWORD {}", db.Ident("flyte"), db.Secret("SCRAM-SHA-256$v"))], True)
    assert """ALTER ROLE "flyte" PASSWORD 'SCRAM-SHA-256$v'""" in seen[0]


# -- against the real test server ----------------------------------------------------------------------


def local_psql(server):
    """PsqlBackend's exec, run here instead of in a pod (what the platform's exec simulation does)."""
    if not shutil.which("psql"):
        pytest.skip("psql is not installed")
    env = {**os.environ, "PGHOST": server.host, "PGPORT": str(server.port), "PGPASSWORD": server.password}

    def run(namespace, pod_name, container, argv):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        return result.returncode, result.stdout, result.stderr
    return run


def test_quoting_round_trips_through_psql(postgres):
    run = local_psql(postgres)
    for name in NASTY:
        text = f"SELECT {db.quote_literal(name)} AS {db.quote_ident(name)}"
        rc, out, err = run("", "", "", db.psql_command("postgres", "postgres", [text]))
        assert (rc, out, err) == (0, name + "\n", "")


@pytest.mark.parametrize("mode", ["direct", "psql"])
def test_ensure_with_hostile_names_on_the_server(postgres, mode):
    suffix = uuid.uuid4().hex[:6]
    owner = f"{NASTY[0]}; DROP ROLE postgres; --{suffix}"
    names = [f"{NASTY[1]}{suffix}", f"{NASTY[2]}{suffix}", f"{NASTY[9]} {suffix}"]
    wanted = desired(owner=owner, databases=names, revoke_public_connect=True, password="pw'\\x",
                     password_verifier=db.scram_verifier("pw'\\x"))
    if mode == "direct":
        pytest.importorskip("psycopg")
        backend = db.DirectBackend(postgres.host, postgres.port, postgres.user, postgres.password, "postgres")
    else:
        backend = db.PsqlBackend(local_psql(postgres), "ns", "pod", "postgres", "postgres", "postgres")
    try:
        first = db.ensure(backend, wanted)
        second = db.ensure(backend, wanted)
        assert first["changed"] and not second["changed"] and second["queries"] == []
        assert second["before"] == first["after"]
        found = postgres.sql("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)", [names])
        assert sorted(found) == sorted((name, owner) for name in names)
        assert postgres.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'") == [(1,)]
        with postgres.connect(user=owner, password="pw'\\x", dbname=names[0]) as conn:
            conn.execute("CREATE TABLE t (id int)")  # the public schema accepts the owner's tables
    finally:
        backend.close()
        postgres.drop(databases=names, roles=[owner])
