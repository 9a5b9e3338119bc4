"""flyte_dump_store against a real S3 server: versitygw (the storage role's object store, built by
tests/platform/build at VERSITYGW_VERSION), on loopback with its posix backend. The dump directory is
written by database_dump.dump with a stand-in for the pg_dump stream (the real dump through the primary pod
is tests/integration/test_flyte_database_dump.py); what is tested here is the store: upload, rerun, check
mode, fetch, damage, refused credentials, and that no secret reaches the output."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import database_dump
from conftest import S3_ACCESS_KEY as ACCESS, S3_BUCKET as BUCKET, run_playbook

PLAY = """\
- name: flyte_dump_store
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the module
      homelab.flyte.flyte_dump_store:
        state: "{{ store_args.state }}"
        path: "{{ store_args.path }}"
        location: "{{ store_args.location }}"
        endpoint: "{{ store_args.endpoint }}"
        access_key_id: "{{ store_args.access_key_id }}"
        secret_access_key: "{{ store_args.secret_access_key }}"
      register: store_result
    - name: Hand the result to the test
      ansible.builtin.copy:
        content: "{{ store_result | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
      changed_when: false
      check_mode: false
"""


@pytest.fixture
def dump_dir(tmp_path) -> Path:
    """A dump directory as flyte_database writes it: manifest, dumps, checksum files."""
    contents = {"flyteadmin": b"PGDMP" + secrets.token_bytes(300_000), "datacatalog": b"PGDMP" + secrets.token_bytes(1000)}

    def run(argv, sink=None, source=None):
        database = next(name for name in contents if f"dbname='{name}'" in argv[-1])
        sink(contents[database])
        return 0, ""

    dest = tmp_path / "dumps" / "flyte-20261201T120000Z"
    database_dump.dump(run, str(dest), "postgres", list(contents), "pod flyte-postgres-1")
    return dest


def store(s3, tmp_path, check=False, **args):
    result_file = tmp_path / f"result-{secrets.token_hex(4)}.json"
    playbook = tmp_path / "store.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    arguments = {"endpoint": s3["endpoint"], "access_key_id": ACCESS, "secret_access_key": s3["secret"],
                 "location": f"s3://{BUCKET}/dumps", **args}
    run = run_playbook(playbook, check=check, extra_vars={"store_args": arguments, "result_file": str(result_file)})
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return run, result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dump_directory_is_stored_once_fetched_intact_and_no_secret_is_shown(s3, dump_dir, tmp_path):
    run, result = store(s3, tmp_path, state="stored", path=str(dump_dir))
    assert run.rc == 0 and run.changed == 1, run
    assert result["url"] == f"s3://{BUCKET}/dumps/{dump_dir.name}"
    names = sorted(p.name for p in dump_dir.iterdir())
    assert sorted(o["key"].rsplit("/", 1)[1] for o in result["objects"]) == names
    assert result["objects"][-1]["key"].endswith("/manifest.json")  # the manifest last
    assert {o["action"] for o in result["objects"]} == {"uploaded"}
    stored = s3["data"] / BUCKET / "dumps" / dump_dir.name
    assert {p.name: sha256(p) for p in stored.iterdir()} == {p.name: sha256(p) for p in dump_dir.iterdir()}
    assert s3["secret"] not in run.output

    again, result = store(s3, tmp_path, state="stored", path=str(dump_dir))
    assert again.rc == 0 and again.changed == 0 and {o["action"] for o in result["objects"]} == {"present"}, again

    target = tmp_path / "restore" / dump_dir.name
    fetched, result = store(s3, tmp_path, state="fetched", path=str(target))
    assert fetched.rc == 0 and fetched.changed == 1, fetched
    assert {p.name: sha256(p) for p in target.iterdir()} == {p.name: sha256(p) for p in dump_dir.iterdir()}
    assert [d["database"] for d in result["dumps"]] == ["flyteadmin", "datacatalog"]
    refetched, _result = store(s3, tmp_path, state="fetched", path=str(target))
    assert refetched.rc == 0 and refetched.changed == 0, refetched


def test_check_mode_writes_nothing_on_either_side(s3, dump_dir, tmp_path):
    location = f"s3://{BUCKET}/check-{secrets.token_hex(3)}"
    run, result = store(s3, tmp_path, check=True, state="stored", path=str(dump_dir), location=location)
    assert run.rc == 0 and run.changed == 1 and {o["action"] for o in result["objects"]} == {"uploaded"}, run
    assert not (s3["data"] / BUCKET / location.rsplit("/", 1)[1]).exists()
    store(s3, tmp_path, state="stored", path=str(dump_dir), location=location)
    target = tmp_path / "check-restore" / dump_dir.name
    run, result = store(s3, tmp_path, check=True, state="fetched", path=str(target), location=location)
    assert run.rc == 0 and run.changed == 1 and not target.parent.exists(), run


def test_a_damaged_stored_dump_is_refused_on_fetch(s3, dump_dir, tmp_path):
    location = f"s3://{BUCKET}/damaged-{secrets.token_hex(3)}"
    store(s3, tmp_path, state="stored", path=str(dump_dir), location=location)
    on_disk = s3["data"] / BUCKET / location.rsplit("/", 1)[1] / dump_dir.name / "flyteadmin.dump"
    damaged = bytearray(on_disk.read_bytes())
    damaged[100] ^= 0xFF
    on_disk.write_bytes(bytes(damaged))
    run, _result = store(s3, tmp_path, state="fetched", path=str(tmp_path / "damaged" / dump_dir.name), location=location)
    assert run.rc != 0 and "does not match its recorded SHA-256" in " ".join(run.output.split()), run


def test_refused_credentials_and_a_missing_bucket_say_what_to_check(s3, dump_dir, tmp_path):
    wrong = "wrong-" + secrets.token_hex(8)
    run, _result = store(s3, tmp_path, state="stored", path=str(dump_dir), secret_access_key=wrong)
    flat = " ".join(run.output.split())
    assert run.rc != 0 and "refused the credentials" in flat and wrong not in run.output, run
    run, _result = store(s3, tmp_path, state="stored", path=str(dump_dir), location="s3://no-such-bucket/dumps")
    assert run.rc != 0 and "The bucket no-such-bucket does not exist" in " ".join(run.output.split()), run.output
    run, _result = store(s3, tmp_path, state="stored", path=str(dump_dir), location="https://not-s3/dumps")
    assert run.rc != 0 and "is not an s3://<bucket>/<prefix> location" in run.output, run
