# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical dumps of Flyte's databases through a CloudNativePG primary pod, and their restore.

pg_dump and pg_restore run in the pod's `postgres` container (so their version is the server's),
logging in as `postgres` over the instance's local socket, which CloudNativePG admits by peer
authentication. The dump's bytes travel through the Kubernetes exec stream: pg_dump writes the
custom format to stdout, which is written to a file on the Ansible host while its SHA-256 is
computed; a restore sends the file back as pg_restore's stdin. Nothing here ever reads, prints or
returns the content of a dump.

Layout of a dump directory (written by dump(), read by restore()):

    <dest>/manifest.json          what was dumped: databases, sizes, checksums, server, pod, time
    <dest>/<database>.dump        pg_dump --format=custom
    <dest>/<database>.dump.sha256 `sha256sum` format, so `sha256sum -c` checks it by hand

The planning functions are pure (unit-tested without a server); `run` is the streaming exec
function (kube.exec_in_pod_streaming's signature without the client), so tests can fake it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shlex
import tempfile
import time

from ansible_collections.homelab.flyte.plugins.module_utils.database import (
    APPLICATION_NAME,
    DatabaseError,
    Ident,
    Literal,
    check_name,
    quote_conninfo,
    render,
    statement,
)

MANIFEST = "manifest.json"
FORMAT = 1
CHUNK = 1024 * 1024
RESTORE_MARK = "homelab.flyte restore of {database} sha256:{sha256}"
MARK_PATTERN = re.compile(r"^homelab\.flyte restore of (?P<database>\S+) sha256:(?P<sha256>[0-9a-f]{64})$")


def dump_file(database):
    return f"{database}.dump"


def conninfo(user, database, connect_timeout=10):
    """libpq connection string without host: PGHOST in the CloudNativePG container is the instance's socket."""
    return (f"dbname={quote_conninfo(database)} user={quote_conninfo(user)} "
            f"connect_timeout={int(connect_timeout)} application_name={APPLICATION_NAME}")


def pg_dump_command(user, database, connect_timeout=10):
    """pg_dump of one database in the custom format (compressed, restorable table by table) to stdout."""
    return ["pg_dump", "--format=custom", "--no-password", f"--dbname={conninfo(user, database, connect_timeout)}"]


def pg_restore_command(user, database, size, connect_timeout=10):
    """pg_restore of `size` bytes of stdin into `database`, all or nothing.

    `head -c` takes exactly the dump's bytes from stdin, so the restore does not depend on the exec
    stream passing on the end of stdin (older API servers cannot). --single-transaction rolls
    everything back on the first error (--exit-on-error).
    """
    restore = ["pg_restore", "--exit-on-error", "--single-transaction", "--no-password",
               f"--dbname={conninfo(user, database, connect_timeout)}"]
    script = f"head -c {int(size)} | {shlex.join(restore)}"
    return ["sh", "-c", script]


def shown(argv):
    """An argv as one shell-quoted line, to show what runs."""
    return shlex.join(argv)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(dest):
    """The manifest of a dump directory, or None when there is none."""
    path = os.path.join(dest, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("dumps"), list):
            raise ValueError("not a manifest of this format")
        return manifest
    except (OSError, ValueError) as error:
        raise DatabaseError(f"{path} is not a dump manifest written by flyte_database ({error}). Choose another "
                            "directory, or remove it.") from None


def verify(dest, entry):
    """Raise DatabaseError unless the dump file of a manifest entry exists with its recorded size and SHA-256."""
    path = os.path.join(dest, entry["file"])
    if not os.path.isfile(path):
        raise DatabaseError(f"The dump {path} listed in {os.path.join(dest, MANIFEST)} is missing.")
    size = os.path.getsize(path)
    if size != entry["size"]:
        raise DatabaseError(f"The dump {path} has {size} bytes, but {entry['size']} were written: it is damaged or "
                            "incomplete. Use another dump.")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise DatabaseError(f"The dump {path} does not match its recorded SHA-256 ({entry['sha256']}, found {actual}): "
                            "it is damaged or was changed. Use another dump.")
    return path


def complete_dump(manifest, databases):
    """Whether a manifest lists every database of `databases`."""
    listed = {entry["database"] for entry in (manifest or {}).get("dumps", [])}
    return manifest is not None and set(databases) <= listed


def plan_dump(dest, user, databases, connect_timeout=10, force=False):
    """(commands, needed): what dump() would run, and whether anything is to be done."""
    manifest = read_manifest(dest)
    if complete_dump(manifest, databases) and not force:
        for entry in manifest["dumps"]:
            if entry["database"] in databases:
                verify(dest, entry)
        return [], False
    return [shown(pg_dump_command(user, name, connect_timeout)) for name in databases], True


def dump(run, dest, user, databases, where, connect_timeout=10, force=False, now=None):
    """Dump every database into `dest`; the manifest. An existing complete, intact dump is kept (changed False).

    `run(argv, sink=callable)` streams stdout to `sink`; it returns (rc, stderr).
    """
    manifest = read_manifest(dest)
    if complete_dump(manifest, databases) and not force:
        for entry in manifest["dumps"]:
            if entry["database"] in databases:
                verify(dest, entry)
        return manifest, False
    os.makedirs(dest, mode=0o700, exist_ok=True)
    os.chmod(dest, 0o700)
    entries = []
    for name in databases:
        check_name(name, "database")
        argv = pg_dump_command(user, name, connect_timeout)
        final = os.path.join(dest, dump_file(name))
        handle = tempfile.NamedTemporaryFile(dir=dest, prefix=f".{name}.", suffix=".partial", delete=False)
        digest, size, started = hashlib.sha256(), 0, time.monotonic()
        try:
            with handle:
                os.chmod(handle.name, 0o600)

                def sink(block, handle=handle, digest=digest):
                    handle.write(block)
                    digest.update(block)

                rc, stderr = run(argv, sink=sink)
                size = handle.tell()
            if rc != 0:
                raise DatabaseError(explain_tool_failure("pg_dump", rc, stderr, where, user, name))
            os.replace(handle.name, final)
        except BaseException:
            if os.path.exists(handle.name):
                os.unlink(handle.name)
            raise
        sha256 = digest.hexdigest()
        checksum = final + ".sha256"
        with open(checksum, "w", encoding="utf-8") as out:
            out.write(f"{sha256}  {dump_file(name)}\n")
        os.chmod(checksum, 0o600)
        entries.append({"database": name, "file": dump_file(name), "size": size, "sha256": sha256,
                        "seconds": round(time.monotonic() - started, 3), "command": shown(argv)})
    manifest = {"format": FORMAT, "created": (now or datetime.datetime.now(datetime.timezone.utc)).isoformat(),
                "source": where, "user": user, "dumps": entries}
    path = os.path.join(dest, MANIFEST)
    with open(path + ".partial", "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=2, sort_keys=True)
        out.write("\n")
    os.chmod(path + ".partial", 0o600)
    os.replace(path + ".partial", path)
    return manifest, True


def explain_tool_failure(tool, rc, stderr, where, user, database):
    """pg_dump's or pg_restore's failure, said so that the reader knows what to check (stderr holds no data)."""
    message = (stderr or "").strip()[-1500:] or "no message"
    lowered = message.lower()
    if "executable file not found" in lowered or rc in (126, 127):
        return (f"{tool} cannot be run in {where}: {message}. The container must be a CloudNativePG PostgreSQL "
                "instance (set container).")
    if "authentication failed" in lowered or "no password supplied" in lowered or "peer authentication" in lowered:
        return (f"{tool} in {where} could not log in as {user}: {message}. CloudNativePG admits the local postgres "
                "user over the instance's socket; set login_user to postgres.")
    if "does not exist" in lowered and "database" in lowered:
        return f"{tool} in {where}: database {database} does not exist ({message})."
    return f"{tool} for database {database} in {where} failed with exit code {rc}: {message}"


# -- restore ----------------------------------------------------------------------------------------


def restore_inspection(targets):
    """The query (run in the admin database) that returns, for each target, whether it exists and its comment."""
    names = ", ".join(["{}"] * len(targets))
    return statement(
        "SELECT coalesce(jsonb_object_agg(d.datname, jsonb_build_object('owner', pg_get_userbyid(d.datdba), "
        "'comment', shobj_description(d.oid, 'pg_database'))), '{{}}'::jsonb)::text "
        "FROM pg_catalog.pg_database AS d WHERE d.datname::text = ANY (ARRAY[" + names + "]::text[])",
        *[Literal(name) for name in targets])


def plan_restore(found, pairs):
    """For each (source entry, target database): 'done' when a restore of this very dump is there, else 'restore'.

    found: {target: {owner, comment}} from restore_inspection(). A target that exists and was not
    restored from this dump is refused: a restore only ever goes into a fresh database.
    """
    decisions = []
    for entry, target in pairs:
        existing = found.get(target)
        if existing is None:
            decisions.append((entry, target, "restore"))
            continue
        mark = MARK_PATTERN.match(existing.get("comment") or "")
        if mark and mark.group("sha256") == entry["sha256"]:
            decisions.append((entry, target, "done"))
            continue
        raise DatabaseError(
            f"The database {target} already exists{' (restored from another dump)' if mark else ''}: a restore goes "
            "into a fresh database only, so nothing was restored. Choose other target names, or drop it yourself "
            f"if it is not needed (DROP DATABASE {render(statement('{}', Ident(target)))}).")
    return decisions


def restore_statements(target, owner, entry):
    """CREATE DATABASE before pg_restore; the COMMENT that marks the restore done, after it."""
    create = statement("CREATE DATABASE {} OWNER {} TEMPLATE template0", Ident(target), Ident(owner))
    mark = statement("COMMENT ON DATABASE {} IS {}", Ident(target),
                     Literal(RESTORE_MARK.format(database=entry["database"], sha256=entry["sha256"])))
    drop = statement("DROP DATABASE IF EXISTS {}", Ident(target))
    return create, mark, drop


def restore(backend, run, src, pairs, owner, where, check_mode=False, connect_timeout=10):
    """Restore each (manifest entry, target) into a fresh database; (changed, results).

    backend: a PsqlBackend in the same pod (for CREATE DATABASE, the inspection and the mark).
    run(argv, source=path) streams the file to stdin; it returns (rc, stderr).
    """
    for entry, _target in pairs:
        verify(src, entry)
    targets = [target for _entry, target in pairs]
    found = backend.query_json(None, restore_inspection(targets)) if targets else {}
    decisions = plan_restore(found, pairs)
    results, changed = [], False
    for entry, target, decision in decisions:
        path = os.path.join(src, entry["file"])
        create, mark, drop = restore_statements(target, owner, entry)
        argv = pg_restore_command(backend.user, target, entry["size"], connect_timeout)
        result = {"database": entry["database"], "target": target, "file": path, "sha256": entry["sha256"],
                  "size": entry["size"], "restored": decision == "restore",
                  "queries": [render(create), render(mark)] if decision == "restore" else [],
                  "command": shown(argv) if decision == "restore" else None}
        if decision == "restore" and not check_mode:
            started = time.monotonic()
            backend.execute(None, [create], False)
            try:
                rc, stderr = run(argv, source=path)
                if rc != 0:
                    raise DatabaseError(explain_tool_failure("pg_restore", rc, stderr, where, backend.user, target)
                                        + f" The new database {target} was dropped again; nothing else was changed.")
                backend.execute(None, [mark], False)
            except BaseException:
                try:
                    backend.execute(None, [drop], False)
                except DatabaseError:
                    pass
                raise
            result["seconds"] = round(time.monotonic() - started, 3)
        changed = changed or decision == "restore"
        results.append(result)
    return changed, results
