"""homelab.flyte.flyte_database state=dumped and state=restored: pg_dump and pg_restore through the platform's
Kubernetes API into a simulated CloudNativePG primary, whose `postgres` container runs them against the real
test PostgreSQL (tests/platform/simulations/postgres-exec.yaml). Rows are written and read back with psycopg as
the superuser, never through the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import time
import uuid

import pytest

from ansible_collections.homelab.flyte.tests.postgres import postgres_fixture
from conftest import run_playbook
from test_flyte_database import create_cluster, wait_for_primary

PLAYBOOK = "tests/integration/playbooks/flyte_database_dump.yml"

postgres = postgres_fixture()


@pytest.fixture
def flyte_data(postgres):
    """An owner and two databases with rows in them (a stand-in for FlyteAdmin's and DataCatalog's schema)."""
    suffix = uuid.uuid4().hex[:8]
    owner, admin, catalog = f"flyte_{suffix}", f"flyteadmin_{suffix}", f"datacatalog_{suffix}"
    postgres.sql(f'CREATE ROLE "{owner}" LOGIN')
    for name in (admin, catalog):
        postgres.sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    with postgres.connect(dbname=admin) as conn:
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute("CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL, labels jsonb)")
        conn.execute("CREATE TABLE executions (id bigserial PRIMARY KEY, project text REFERENCES projects (id), "
                     "phase text, created_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO projects VALUES ('flytesnacks', 'Flyte snacks', '{\"team\": \"ml\"}'), "
                     "('ünïcode', 'Ünïcode ✓', NULL)")
        conn.execute("INSERT INTO executions (project, phase) SELECT 'flytesnacks', 'SUCCEEDED' FROM generate_series(1, 500)")
    with postgres.connect(dbname=catalog) as conn:
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute("CREATE TABLE artifacts (dataset text, tag text, payload bytea)")
        conn.execute("INSERT INTO artifacts SELECT 'ds', 'v' || i, decode(md5(i::text), 'hex') FROM generate_series(1, 200) i")
    data = {"owner": owner, "databases": [admin, catalog], "suffix": suffix}
    yield data
    postgres.drop(databases=[admin, catalog, f"{admin}_restored", f"{catalog}_restored",
                             f"{admin}_r", f"{catalog}_r"], roles=[owner])


def rows(postgres, database):
    """Every row of every table of the database, for comparing a restore with its source."""
    tables = [row[0] for row in postgres.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename", dbname=database)]
    return {table: sorted(map(repr, postgres.sql(f'SELECT * FROM "{table}"', dbname=database))) for table in tables}


def table_owners(postgres, database):
    return {row[0]: row[1] for row in postgres.sql(
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'", dbname=database)}


def run(tmp_path, *, check=False, **test_vars):
    result_file = tmp_path / f"result-{uuid.uuid4().hex[:6]}.json"
    extra = {f"test_{key}": value for key, value in test_vars.items()}
    extra["test_result_file"] = str(result_file)
    outcome = run_playbook(PLAYBOOK, extra_vars=extra, check=check, verbosity=3)
    outcome.result = json.loads(result_file.read_text()) if result_file.exists() else None
    return outcome


@pytest.fixture
def primary(api, k8s, namespace):
    create_cluster(k8s, namespace, "flyte-postgres")
    wait_for_primary(api, namespace, "flyte-postgres")
    return {"cluster": "flyte-postgres", "namespace": namespace}


def test_dump_and_restore_round_trip_with_check_mode(postgres, flyte_data, primary, tmp_path):
    dest = tmp_path / "dumps" / "before-upgrade"
    databases = flyte_data["databases"]
    admin, catalog = databases

    checked = run(tmp_path, check=True, state="dumped", dest=str(dest), databases=databases, **primary)
    assert checked.rc == 0 and checked.changed == 1, checked
    assert [command.split()[0] for command in checked.result["commands"]] == ["pg_dump", "pg_dump"]
    argv = shlex.split(checked.result["commands"][0])
    assert argv[:3] == ["pg_dump", "--format=custom", "--no-password"]
    assert argv[3].startswith(f"--dbname=dbname='{admin}' user='postgres' ")
    assert not dest.exists()

    dumped = run(tmp_path, state="dumped", dest=str(dest), databases=databases, **primary)
    assert dumped.rc == 0 and dumped.changed == 1, dumped
    assert dumped.result["pod"] == "flyte-postgres-1"
    for entry in dumped.result["dumps"]:
        content = open(entry["path"], "rb").read()
        assert content.startswith(b"PGDMP")  # pg_dump's custom format
        assert hashlib.sha256(content).hexdigest() == entry["sha256"] and len(content) == entry["size"]
        assert (dest / f"{entry['database']}.dump.sha256").read_text() == f"{entry['sha256']}  {entry['database']}.dump\n"
        assert os.stat(entry["path"]).st_mode & 0o077 == 0
        # Not a byte of a dump in the output, even at -vvv: no row value, no dump header.
        assert "PGDMP" not in dumped.output
    assert "Ünïcode" not in dumped.output and "SUCCEEDED" not in dumped.output
    assert os.stat(dest).st_mode & 0o777 == 0o700
    manifest = json.loads((dest / "manifest.json").read_text())
    assert [entry["database"] for entry in manifest["dumps"]] == databases

    again = run(tmp_path, state="dumped", dest=str(dest), databases=databases, **primary)
    assert again.rc == 0 and again.changed == 0, again

    before = {name: set(postgres.databases()) for name in ("all",)}
    checked_restore = run(tmp_path, check=True, state="restored", src=str(dest), databases=databases,
                          owner=flyte_data["owner"], **primary)
    assert checked_restore.rc == 0 and checked_restore.changed == 1, checked_restore
    assert checked_restore.result["queries"][0] == f'CREATE DATABASE "{admin}_restored" OWNER "{flyte_data["owner"]}" TEMPLATE template0'
    assert checked_restore.result["commands"][0].startswith("sh -c 'head -c ")
    assert set(postgres.databases()) == before["all"]

    restored = run(tmp_path, state="restored", src=str(dest), databases=databases, owner=flyte_data["owner"], **primary)
    assert restored.rc == 0 and restored.changed == 1, restored
    for name in databases:
        assert rows(postgres, f"{name}_restored") == rows(postgres, name)
        assert set(table_owners(postgres, f"{name}_restored").values()) == {flyte_data["owner"]}
    assert len(rows(postgres, f"{admin}_restored")["executions"]) == 500

    rerun = run(tmp_path, state="restored", src=str(dest), databases=databases, owner=flyte_data["owner"], **primary)
    assert rerun.rc == 0 and rerun.changed == 0, rerun


def test_restore_refuses_an_existing_database_and_a_damaged_dump(postgres, flyte_data, primary, tmp_path):
    dest = tmp_path / "dump"
    databases = flyte_data["databases"]
    admin = databases[0]
    assert run(tmp_path, state="dumped", dest=str(dest), databases=databases, **primary).rc == 0

    into_source = run(tmp_path, state="restored", src=str(dest), databases=[admin], owner=flyte_data["owner"],
                      restore_targets={admin: databases[1]}, **primary)
    assert into_source.rc != 0 and "fresh database" in into_source.output, into_source

    postgres.sql(f'CREATE DATABASE "{admin}_r"')
    taken = run(tmp_path, state="restored", src=str(dest), databases=[admin], owner=flyte_data["owner"],
                restore_targets={admin: f"{admin}_r"}, **primary)
    assert taken.rc != 0 and f"The database {admin}_r already exists" in taken.output, taken
    assert rows(postgres, f"{admin}_r") == {}

    dump_file = dest / f"{admin}.dump"
    content = bytearray(dump_file.read_bytes())
    content[len(content) // 2] ^= 0xFF
    dump_file.write_bytes(bytes(content))
    damaged = run(tmp_path, state="restored", src=str(dest), databases=[admin], owner=flyte_data["owner"], **primary)
    assert damaged.rc != 0 and "does not match its recorded SHA-256" in damaged.output, damaged
    assert f"{admin}_restored" not in postgres.databases()


def test_a_failing_pg_restore_leaves_no_database(postgres, flyte_data, primary, tmp_path):
    """A restore that PostgreSQL refuses halfway (the owner lacks a role the dump grants to) is rolled back and
    its new database dropped, so a rerun starts clean."""
    dest = tmp_path / "dump"
    admin = flyte_data["databases"][0]
    helper = f"reader_{flyte_data['suffix']}"
    postgres.sql(f'CREATE ROLE "{helper}"')
    postgres.sql(f'GRANT SELECT ON projects TO "{helper}"', dbname=admin)
    try:
        assert run(tmp_path, state="dumped", dest=str(dest), databases=[admin], **primary).rc == 0
        postgres.sql(f'REVOKE SELECT ON projects FROM "{helper}"', dbname=admin)
        postgres.sql(f'DROP ROLE "{helper}"')
        failed = run(tmp_path, state="restored", src=str(dest), databases=[admin], owner=flyte_data["owner"], **primary)
        assert failed.rc != 0 and "pg_restore for database" in failed.output, failed
        assert "was dropped again" in failed.output
        assert f"{admin}_restored" not in postgres.databases()
    finally:
        postgres.drop(roles=[helper])


def test_dump_time_against_a_direct_pg_dump(postgres, flyte_data, primary, tmp_path):
    """The closing note's measurement: the module's dump and restore of a database of a stated size, against one
    pg_dump run directly against the same server (printed; run with -s to see it)."""
    admin = flyte_data["databases"][0]
    with postgres.connect(dbname=admin) as conn:
        conn.execute(f'SET ROLE "{flyte_data["owner"]}"')
        conn.execute("INSERT INTO executions (project, phase) SELECT 'flytesnacks', repeat(md5(i::text), 8) "
                     "FROM generate_series(1, 200000) i")
    size = postgres.sql("SELECT pg_database_size(%s)", [admin])[0][0]
    started = time.monotonic()
    direct = subprocess.run(["pg_dump", "--format=custom", f"--dbname={admin}", f"--host={postgres.host}",
                             f"--port={postgres.port}", f"--username={postgres.user}", "--file", str(tmp_path / "direct.dump")],
                            env={**os.environ, "PGPASSWORD": postgres.password}, capture_output=True, check=False)
    direct_seconds = time.monotonic() - started
    assert direct.returncode == 0, direct.stderr
    dest = tmp_path / "timed"
    dumped = run(tmp_path, state="dumped", dest=str(dest), databases=[admin], **primary)
    assert dumped.rc == 0, dumped
    restored = run(tmp_path, state="restored", src=str(dest), databases=[admin], owner=flyte_data["owner"], **primary)
    assert restored.rc == 0, restored
    dump_seconds = dumped.result["manifest"]["dumps"][0]["seconds"]
    restore_seconds = restored.result["restores"][0]["seconds"]
    print(f"\n[timing] database {size / 1e6:.1f} MB, dump file {dumped.result['dumps'][0]['size'] / 1e6:.1f} MB: "
          f"direct pg_dump {direct_seconds:.2f}s; module dump {dump_seconds:.2f}s ({dump_seconds / direct_seconds:.2f}x), "
          f"module restore {restore_seconds:.2f}s ({restore_seconds / direct_seconds:.2f}x)")
    assert rows(postgres, f"{admin}_restored") == rows(postgres, admin)
