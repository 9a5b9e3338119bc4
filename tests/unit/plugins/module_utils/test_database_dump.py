"""module_utils/database_dump.py: the commands, the dump directory, checksums and the restore decisions, with a
fake exec stream (the integration tests run the real pg_dump and pg_restore)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import database_dump as dd
from ansible_collections.homelab.flyte.plugins.module_utils.database import DatabaseError


def fake_pg_dump(outputs, rc=0, stderr=""):
    """A stand-in for the exec stream: writes outputs[database] to the sink in two blocks."""
    calls = []

    def run(argv, sink=None, source=None):
        calls.append(argv)
        database = shlex.split(argv[3].removeprefix("--dbname="))[0].split("=", 1)[1].strip("'")
        data = outputs[database]
        sink(data[: len(data) // 2])
        sink(data[len(data) // 2:])
        return rc, stderr
    run.calls = calls
    return run


def test_pg_dump_and_pg_restore_commands():
    assert dd.pg_dump_command("postgres", "flyteadmin") == [
        "pg_dump", "--format=custom", "--no-password",
        "--dbname=dbname='flyteadmin' user='postgres' connect_timeout=10 application_name=homelab.flyte.flyte_database"]
    restore = dd.pg_restore_command("postgres", "fly'te", 1234)
    assert restore[:2] == ["sh", "-c"]
    script = shlex.split(restore[2])
    assert script[:3] == ["head", "-c", "1234"] and script[3] == "|"
    assert script[4:8] == ["pg_restore", "--exit-on-error", "--single-transaction", "--no-password"]
    assert script[8] == "--dbname=dbname='fly\\'te' user='postgres' connect_timeout=10 application_name=homelab.flyte.flyte_database"


def test_dump_writes_files_checksums_and_manifest_then_keeps_them(tmp_path):
    dest = tmp_path / "d"
    run = fake_pg_dump({"flyteadmin": b"PGDMP admin" * 100, "datacatalog": b"PGDMP catalog"})
    manifest, changed = dd.dump(run, str(dest), "postgres", ["flyteadmin", "datacatalog"], "pod x")
    assert changed and len(run.calls) == 2
    for entry, data in zip(manifest["dumps"], [b"PGDMP admin" * 100, b"PGDMP catalog"]):
        assert (dest / entry["file"]).read_bytes() == data
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        assert (dest / (entry["file"] + ".sha256")).read_text() == f"{entry['sha256']}  {entry['file']}\n"
        assert os.stat(dest / entry["file"]).st_mode & 0o777 == 0o600
    assert json.loads((dest / "manifest.json").read_text()) == manifest
    assert os.stat(dest).st_mode & 0o777 == 0o700

    again, changed = dd.dump(run, str(dest), "postgres", ["flyteadmin", "datacatalog"], "pod x")
    assert not changed and again == manifest and len(run.calls) == 2
    assert dd.plan_dump(str(dest), "postgres", ["flyteadmin"]) == ([], False)


def test_a_failed_pg_dump_leaves_no_partial_file(tmp_path):
    run = fake_pg_dump({"flyteadmin": b"PGDMP half"}, rc=1, stderr='pg_dump: error: database "flyteadmin" does not exist')
    with pytest.raises(DatabaseError, match="database flyteadmin does not exist"):
        dd.dump(run, str(tmp_path), "postgres", ["flyteadmin"], "pod x")
    assert os.listdir(tmp_path) == []


def test_a_changed_dump_is_refused(tmp_path):
    run = fake_pg_dump({"flyteadmin": b"PGDMP admin"})
    manifest, _outcome = dd.dump(run, str(tmp_path), "postgres", ["flyteadmin"], "pod x")
    (tmp_path / "flyteadmin.dump").write_bytes(b"PGDMP admiN")
    with pytest.raises(DatabaseError, match="does not match its recorded SHA-256"):
        dd.verify(str(tmp_path), manifest["dumps"][0])
    (tmp_path / "flyteadmin.dump").write_bytes(b"PGDMP")
    with pytest.raises(DatabaseError, match="has 5 bytes, but 11 were written"):
        dd.verify(str(tmp_path), manifest["dumps"][0])


def test_restore_decisions():
    entry = {"database": "flyteadmin", "sha256": "a" * 64}
    mark = dd.RESTORE_MARK.format(database="flyteadmin", sha256="a" * 64)
    assert dd.plan_restore({}, [(entry, "new")]) == [(entry, "new", "restore")]
    assert dd.plan_restore({"new": {"comment": mark}}, [(entry, "new")]) == [(entry, "new", "done")]
    with pytest.raises(DatabaseError, match="already exists .restored from another dump."):
        dd.plan_restore({"new": {"comment": dd.RESTORE_MARK.format(database="x", sha256="b" * 64)}}, [(entry, "new")])
    with pytest.raises(DatabaseError, match="The database new already exists: a restore goes into a fresh database"):
        dd.plan_restore({"new": {"comment": None}}, [(entry, "new")])


class FakeBackend:
    user, admin_db = "postgres", "postgres"

    def __init__(self, found):
        self.found, self.executed = found, []

    def query_json(self, database, stmt):
        return self.found

    def execute(self, database, statements, transaction):
        self.executed.extend(dd.render(s) for s in statements)


def test_restore_runs_create_pg_restore_and_mark_and_drops_on_failure(tmp_path):
    manifest, _outcome = dd.dump(fake_pg_dump({"flyteadmin": b"PGDMP admin"}), str(tmp_path), "postgres", ["flyteadmin"], "pod")
    entry = manifest["dumps"][0]
    sent = []

    def run(argv, sink=None, source=None):
        sent.append(open(source, "rb").read())
        return 0, ""

    backend = FakeBackend({})
    changed, results = dd.restore(backend, run, str(tmp_path), [(entry, "flyteadmin_r")], "flyte", "pod")
    assert changed and sent == [b"PGDMP admin"]
    assert backend.executed == ['CREATE DATABASE "flyteadmin_r" OWNER "flyte" TEMPLATE template0',
                                f"COMMENT ON DATABASE \"flyteadmin_r\" IS 'homelab.flyte restore of flyteadmin sha256:{entry['sha256']}'"]
    assert results[0]["restored"] and results[0]["target"] == "flyteadmin_r"

    checked = FakeBackend({})
    changed, results = dd.restore(checked, run, str(tmp_path), [(entry, "flyteadmin_r")], "flyte", "pod", check_mode=True)
    assert changed and checked.executed == [] and len(sent) == 1 and results[0]["command"].startswith("sh -c")

    failing = FakeBackend({})
    with pytest.raises(DatabaseError, match="was dropped again"):
        dd.restore(failing, lambda argv, source=None: (1, "pg_restore: error: x"), str(tmp_path),
                   [(entry, "flyteadmin_r")], "flyte", "pod")
    assert failing.executed[-1] == 'DROP DATABASE IF EXISTS "flyteadmin_r"'
