"""homelab.flyte.flyte_database against a real PostgreSQL 15 (tests/postgres.py), directly and through the
platform's Kubernetes API into a simulated CloudNativePG primary whose `postgres` container runs psql
against that same server (tests/platform/simulations/postgres-exec.yaml).

Every test uses its own role and database names and drops them afterwards; results are checked with
psycopg as the superuser, never through the module.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import psycopg
import pytest
from kubernetes import client

from ansible_collections.homelab.flyte.tests.postgres import postgres_fixture
from conftest import run_playbook

DIRECT = "tests/integration/playbooks/flyte_database_direct.yml"
KUBERNETES = "tests/integration/playbooks/flyte_database_kubernetes.yml"
DB_ALL = ["CONNECT", "CREATE", "TEMPORARY"]

postgres = postgres_fixture()


@pytest.fixture
def names(postgres):
    """An owner and two databases no other test uses; dropped afterwards, whatever the test did."""
    suffix = uuid.uuid4().hex[:8]
    chosen = {"owner": f"flyte_{suffix}", "databases": [f"flyteadmin_{suffix}", f"datacatalog_{suffix}"]}
    yield chosen
    postgres.drop(databases=chosen["databases"], roles=[chosen["owner"], f"intruder_{suffix}"])


def run(playbook, tmp_path, *, check=False, diff=False, verbosity=0, **test_vars):
    result_file = tmp_path / f"result-{uuid.uuid4().hex[:6]}.json"
    extra = {f"test_{key}": value for key, value in test_vars.items()}
    extra["test_result_file"] = str(result_file)
    outcome = run_playbook(playbook, extra_vars=extra, check=check, diff=diff, verbosity=verbosity)
    outcome.result = json.loads(result_file.read_text()) if result_file.exists() else None
    return outcome


def login(postgres, **overrides):
    return {"host": postgres.host, "port": postgres.port, "user": postgres.user, "password": postgres.password, **overrides}


def database_facts(postgres, name):
    """(owner, the privileges by grantee) of a database, read from the catalog."""
    rows = postgres.sql(
        "SELECT pg_get_userbyid(d.datdba), CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
        "WHERE d.datname = %s", [name])
    if not rows:
        return None, {}
    privileges: dict[str, list[str]] = {}
    for _owner, grantee, privilege in rows:
        privileges.setdefault(grantee, []).append(privilege)
    return rows[0][0], {grantee: sorted(values) for grantee, values in privileges.items()}


def assert_ready_for_flyte(postgres, owner, databases, password=None, public_connect=True):
    """What FlyteAdmin and DataCatalog need, proven: log in as the owner and create a table in public."""
    assert postgres.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [owner]) == [(True,)]
    for name in databases:
        found_owner, privileges = database_facts(postgres, name)
        assert found_owner == owner, name
        assert privileges[owner] == DB_ALL, name
        assert ("CONNECT" in privileges.get("public", [])) is public_connect, name
        schema_privileges = postgres.sql(
            "SELECT array_agg(a.privilege_type ORDER BY a.privilege_type) FROM pg_namespace n, "
            "aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a "
            "WHERE n.nspname = 'public' AND a.grantee = %s::regrole", [owner], dbname=name)
        assert schema_privileges == [(["CREATE", "USAGE"],)], name
        if password is not None:
            with postgres.connect(user=owner, password=password, dbname=name) as conn:
                conn.execute("CREATE TABLE flyte_migration_probe (id bigserial PRIMARY KEY)")
                conn.execute("DROP TABLE flyte_migration_probe")


# -- direct connections ------------------------------------------------------------------------------


def test_direct_creates_everything_then_changes_nothing(postgres, names, tmp_path):
    owner_password = f"owner-{uuid.uuid4().hex}"
    args = {"login": login(postgres), "owner": names["owner"], "databases": names["databases"],
            "owner_password": owner_password, "revoke_public_connect": True}

    first = run(DIRECT, tmp_path, verbosity=3, **args)
    assert first.rc == 0 and first.changed == 1, first
    owner, (admin, catalog) = names["owner"], names["databases"]
    assert first.result["queries"] == [
        f"""CREATE ROLE "{owner}" LOGIN PASSWORD '********'""",
        f'CREATE DATABASE "{admin}" OWNER "{owner}"',
        f'CREATE DATABASE "{catalog}" OWNER "{owner}"',
        f'REVOKE CONNECT ON DATABASE "{admin}" FROM PUBLIC',
        f'REVOKE CONNECT ON DATABASE "{catalog}" FROM PUBLIC',
        f'GRANT ALL ON SCHEMA public TO "{owner}"',
        f'GRANT ALL ON SCHEMA public TO "{owner}"',
    ]
    assert [(step["database"], step["transaction"]) for step in first.result["steps"]] == [
        ("postgres", True), ("postgres", False), ("postgres", False), ("postgres", True), (admin, True), (catalog, True)]
    assert owner_password not in first.output and postgres.password not in first.output  # at -vvv
    assert_ready_for_flyte(postgres, owner, names["databases"], password=owner_password, public_connect=False)

    # PUBLIC lost CONNECT: another role cannot get in.
    intruder = owner.replace("flyte_", "intruder_")
    postgres.sql(f"CREATE ROLE {intruder} LOGIN PASSWORD 'intruder'")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        postgres.connect(user=intruder, password="intruder", dbname=admin).close()

    second = run(DIRECT, tmp_path, diff=True, **args)
    assert second.rc == 0 and second.changed == 0, second
    assert second.result["queries"] == [] and second.result["changed"] is False


def test_direct_check_mode_returns_the_sql_and_creates_nothing(postgres, names, tmp_path):
    databases, roles = postgres.databases(), postgres.roles()
    checked = run(DIRECT, tmp_path, check=True, diff=True, login=login(postgres), owner=names["owner"],
                  databases=names["databases"], owner_password="never-sent")
    assert checked.rc == 0 and checked.changed == 1, checked
    owner = names["owner"]
    assert checked.result["queries"][:3] == [f"""CREATE ROLE "{owner}" LOGIN PASSWORD '********'""",
                                             f'CREATE DATABASE "{names["databases"][0]}" OWNER "{owner}"',
                                             f'CREATE DATABASE "{names["databases"][1]}" OWNER "{owner}"']
    assert "never-sent" not in checked.output
    assert "--- before" in checked.output and "+++ after" in checked.output  # --diff shows the databases to come
    assert re.search(r"^-\s+exists: false$", checked.output, re.MULTILINE), checked
    assert postgres.databases() == databases and postgres.roles() == roles


def test_direct_wrong_password_fails_clearly_and_creates_nothing(postgres, names, tmp_path):
    databases, roles = postgres.databases(), postgres.roles()
    failed = run(DIRECT, tmp_path, verbosity=3, login=login(postgres, password="not-the-password"),
                 owner=names["owner"], databases=names["databases"])
    assert failed.rc != 0 and failed.failed == 1, failed
    assert (f"Authentication failed for user postgres at {postgres.host}:{postgres.port}: the server refused the "
            "password. Check login_user and login_password") in " ".join(failed.output.split())
    assert "not-the-password" not in failed.output
    assert postgres.databases() == databases and postgres.roles() == roles


def test_direct_unreachable_server(names, tmp_path, postgres):
    failed = run(DIRECT, tmp_path, login=login(postgres, port=1), owner=names["owner"], databases=names["databases"])
    assert failed.rc != 0
    assert "Cannot reach PostgreSQL at 127.0.0.1:1" in " ".join(failed.output.split())


def test_direct_takes_over_a_database_with_another_owner(postgres, names, tmp_path):
    owner, (admin, catalog) = names["owner"], names["databases"]
    postgres.sql(f'CREATE ROLE "{owner}" NOLOGIN')
    postgres.sql(f'CREATE DATABASE "{admin}"')  # owned by postgres, default privileges
    assert database_facts(postgres, admin)[0] == "postgres"

    changed = run(DIRECT, tmp_path, diff=True, login=login(postgres), owner=owner, databases=names["databases"])
    assert changed.rc == 0 and changed.changed == 1, changed
    assert changed.result["steps"][0] == {"database": "postgres", "transaction": True, "queries": [
        f'ALTER ROLE "{owner}" LOGIN', f'ALTER DATABASE "{admin}" OWNER TO "{owner}"']}
    assert f'CREATE DATABASE "{catalog}" OWNER "{owner}"' in changed.result["queries"]
    assert_ready_for_flyte(postgres, owner, names["databases"])

    again = run(DIRECT, tmp_path, login=login(postgres), owner=owner, databases=names["databases"])
    assert again.changed == 0 and again.result["queries"] == [], again


def test_direct_converges_after_a_partial_failure(postgres, names, tmp_path):
    """CREATE DATABASE refused after the role's transaction committed: the failure says what stays, a rerun finishes."""
    owner = names["owner"]
    args = {"login": login(postgres), "owner": owner, "databases": names["databases"]}
    with postgres.connect(dbname="template1"):  # CREATE DATABASE copies template1 and refuses while it is in use
        failed = run(DIRECT, tmp_path, **args)
    assert failed.rc != 0, failed
    message = " ".join(failed.output.split())
    assert 'source database "template1" is being accessed by other users' in message
    assert f'Statements committed before this failure: CREATE ROLE "{owner}" LOGIN.' in message
    assert "run the task again" in message
    assert postgres.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", [owner]) == [(1,)]
    assert not set(names["databases"]) & postgres.databases()

    rerun = run(DIRECT, tmp_path, **args)
    assert rerun.rc == 0 and rerun.changed == 1, rerun
    assert not any(query.startswith("CREATE ROLE") for query in rerun.result["queries"])
    assert_ready_for_flyte(postgres, owner, names["databases"])


# -- through the Kubernetes API into a CloudNativePG primary ------------------------------------------


def create_cluster(k8s, namespace, name, annotations=None):
    body = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"instances": 1, "storage": {"size": "1Gi", "storageClass": "longhorn"}}}
    k8s.resources.get(api_version="postgresql.cnpg.io/v1", kind="Cluster").create(body=body, namespace=namespace)


def wait_for_primary(api, namespace, cluster, timeout=90) -> str:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector=f"cnpg.io/cluster={cluster},cnpg.io/instanceRole=primary").items
        if pods and pods[0].status.phase == "Running":
            return pods[0].metadata.name
        time.sleep(0.5)
    raise AssertionError(f"the simulated primary of {namespace}/{cluster} did not run within {timeout}s")


def test_kubernetes_creates_everything_then_changes_nothing(postgres, names, tmp_path, api, k8s, namespace):
    create_cluster(k8s, namespace, "flyte-postgres")
    pod = wait_for_primary(api, namespace, "flyte-postgres")
    args = {"cluster": "flyte-postgres", "namespace": namespace, "owner": names["owner"],
            "databases": names["databases"], "owner_password": "through-the-api"}

    first = run(KUBERNETES, tmp_path, verbosity=3, **args)
    assert first.rc == 0 and first.changed == 1, first
    assert first.result["pod"] == pod == "flyte-postgres-1"
    assert len(first.result["queries"]) == 5
    assert "through-the-api" not in first.output
    assert_ready_for_flyte(postgres, names["owner"], names["databases"], password="through-the-api")

    second = run(KUBERNETES, tmp_path, **args)
    assert second.rc == 0 and second.changed == 0, second
    assert second.result["queries"] == []


def test_kubernetes_check_mode_creates_nothing(postgres, names, tmp_path, api, k8s, namespace):
    create_cluster(k8s, namespace, "pg")
    wait_for_primary(api, namespace, "pg")
    databases, roles = postgres.databases(), postgres.roles()
    checked = run(KUBERNETES, tmp_path, check=True, cluster="pg", namespace=namespace, owner=names["owner"],
                  databases=names["databases"])
    assert checked.rc == 0 and checked.changed == 1, checked
    assert checked.result["queries"][0] == f'CREATE ROLE "{names["owner"]}" LOGIN'
    assert postgres.databases() == databases and postgres.roles() == roles


def test_kubernetes_cluster_without_primary_pod(postgres, names, tmp_path, k8s, namespace):
    create_cluster(k8s, namespace, "held", annotations={"simulation.homelab.flyte/cnpg-phase": "Setting up primary"})
    roles = postgres.roles()
    for cluster in ("held", "absent"):
        failed = run(KUBERNETES, tmp_path, cluster=cluster, namespace=namespace, owner=names["owner"],
                     databases=names["databases"])
        assert failed.rc != 0 and failed.failed == 1, failed
        assert (f"The CloudNativePG cluster {cluster} in namespace {namespace} has no primary pod (none labelled "
                f"cnpg.io/cluster={cluster},cnpg.io/instanceRole=primary)") in " ".join(failed.output.split())
    assert postgres.roles() == roles


def test_kubernetes_primary_pod_not_running(names, tmp_path, api, namespace):
    client.CoreV1Api(api).create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stuck-1", "labels": {"cnpg.io/cluster": "stuck", "cnpg.io/instanceRole": "primary"}},
        "spec": {"nodeSelector": {"no-such-node": "true"}, "containers": [{"name": "postgres", "image": "postgres"}]}})
    failed = run(KUBERNETES, tmp_path, cluster="stuck", namespace=namespace, owner=names["owner"],
                 databases=names["databases"])
    assert failed.rc != 0
    assert f"The primary pod {namespace}/stuck-1 of CloudNativePG cluster stuck is Pending, not Running" in \
        " ".join(failed.output.split())


# -- the simulated instance authenticates as CloudNativePG does ---------------------------------------


def kubectl_exec(namespace, pod, *command, stdin=None):
    return subprocess.run(["kubectl", "-n", namespace, "exec", *(["-i"] if stdin is not None else []), pod,
                           "-c", "postgres", "--", *command], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_instance_admits_only_postgres_over_its_socket_and_others_by_password(postgres, names, api, k8s, namespace):
    """pg_hba/pg_ident as CloudNativePG writes them: `local` by peer with the map `local` (postgres only), `host` by
    SCRAM password. The reference's `psql -U flyte -d flyteadmin` in the pod fails, as on a real cluster."""
    create_cluster(k8s, namespace, "flyte-postgres")
    pod = wait_for_primary(api, namespace, "flyte-postgres")
    owner, database = names["owner"], names["databases"][0]
    password = f"pw-{uuid.uuid4().hex}"
    postgres.sql(f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'")
    postgres.sql(f'CREATE DATABASE "{database}" OWNER {owner}')

    refused = kubectl_exec(namespace, pod, "psql", "-U", owner, "-d", database, "-c", "select 1")
    assert refused.returncode != 0
    assert f'Peer authentication failed for user "{owner}"' in refused.stderr, refused

    superuser = kubectl_exec(namespace, pod, "psql", "-At", "-U", "postgres", "-d", database, "-c", "select current_user")
    assert superuser.returncode == 0 and superuser.stdout.strip() == "postgres", superuser
    default = kubectl_exec(namespace, pod, "psql", "-At", "-c", "select current_user, current_database()")
    assert default.returncode == 0 and default.stdout.strip() == "postgres|postgres", default  # the container's default user

    over_tcp = kubectl_exec(namespace, pod, "psql", "-At", "-h", "localhost", "-U", owner, "-d", database,
                            "-c", "select current_user", stdin=password + "\n")
    assert over_tcp.returncode == 0 and over_tcp.stdout.strip() == owner, over_tcp
    wrong = kubectl_exec(namespace, pod, "psql", "-h", "localhost", "-U", owner, "-d", database, "-c", "select 1",
                         stdin="not-the-password\n")
    assert wrong.returncode != 0 and f'password authentication failed for user "{owner}"' in wrong.stderr, wrong
    no_password = kubectl_exec(namespace, pod, "psql", "-w", "-h", "localhost", "-U", "postgres", "-c", "select 1")
    assert no_password.returncode != 0 and "no password supplied" in no_password.stderr, no_password
