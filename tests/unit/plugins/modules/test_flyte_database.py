"""The flyte_database module's argument handling and result, with the backends replaced (no server)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit as Exit, ModuleFail as Fail

from ansible_collections.homelab.flyte.plugins.module_utils.database import DatabaseError
from ansible_collections.homelab.flyte.plugins.modules import flyte_database


OUTCOME = {"changed": True, "queries": ['CREATE ROLE "flyte" LOGIN'],
           "steps": [{"database": "postgres", "transaction": True, "queries": ['CREATE ROLE "flyte" LOGIN']}],
           "server_version": 150018, "before": {"role": {"exists": False}}, "after": {"role": {"exists": True}}}
DIRECT = {"connection": "direct", "login_host": "db.example", "login_password": "admin-pw", "owner": "flyte"}
KUBERNETES = {"cluster": "flyte-postgres", "namespace": "flyte-system", "owner": "flyte"}


def run_module(args, outcome=None, side_effect=None, check=False, diff=False):
    """Run main() with the database work replaced; returns (Exit or Fail payload, the ensure mock)."""
    extra = {"_ansible_check_mode": check, "_ansible_diff": diff}
    ensure = mock.Mock(return_value=outcome or OUTCOME, side_effect=side_effect)
    with patch_module_args(dict(args, **extra)), \
            mock.patch.object(flyte_database, "ensure", ensure), \
            mock.patch.object(flyte_database, "DirectBackend") as direct, \
            mock.patch.object(flyte_database, "api_client", return_value="api"), \
            mock.patch.object(flyte_database, "primary_pod", return_value="flyte-postgres-1") as primary, \
            mock.patch.object(flyte_database, "PsqlBackend") as psql:
        try:
            flyte_database.main()
        except (Exit, Fail) as outcome_:
            return outcome_, {"ensure": ensure, "direct": direct, "psql": psql, "primary": primary}
    raise AssertionError("the module neither exited nor failed")


def test_direct_connection_builds_a_psycopg_backend():
    outcome, mocks = run_module(dict(DIRECT, login_port=6543, ssl_mode="verify-full", ssl_rootcert="/ca.pem"))
    assert isinstance(outcome, Exit)
    result = outcome.args[0]
    assert result["changed"] is True and result["queries"] == OUTCOME["queries"] and result["steps"] == OUTCOME["steps"]
    assert result["server_version"] == 150018 and "diff" not in result and "pod" not in result
    mocks["direct"].assert_called_once_with("db.example", 6543, "postgres", "admin-pw", "postgres", sslmode="verify-full",
                                            sslrootcert="/ca.pem", connect_timeout=10)
    desired = mocks["ensure"].call_args.args[1]
    assert desired["owner"] == "flyte" and desired["databases"] == ["flyteadmin", "datacatalog"]
    assert desired["password"] is None and desired["revoke_public_connect"] is False
    assert mocks["ensure"].call_args.kwargs == {"check_mode": False}
    mocks["direct"].return_value.close.assert_called_once()


def test_kubernetes_connection_is_the_default_and_runs_psql_in_the_primary():
    outcome, mocks = run_module(dict(KUBERNETES, login_user="superuser", container="pg", command_timeout=30))
    result = outcome.args[0]
    assert isinstance(outcome, Exit) and result["pod"] == "flyte-postgres-1"
    mocks["primary"].assert_called_once_with("api", "flyte-system", "flyte-postgres", "pg")
    args = mocks["psql"].call_args.args
    assert args[1:] == ("flyte-system", "flyte-postgres-1", "pg", "superuser", "postgres", 10)
    mocks["direct"].assert_not_called()


def test_check_and_diff_mode():
    outcome, mocks = run_module(KUBERNETES, check=True, diff=True)
    assert mocks["ensure"].call_args.kwargs == {"check_mode": True}
    assert outcome.args[0]["diff"] == {"before": OUTCOME["before"], "after": OUTCOME["after"]}


def test_owner_password_becomes_a_verifier():
    outcome, mocks = run_module(dict(KUBERNETES, owner_password="s3cret-pw", revoke_public_connect=True,
                                     databases=["a", "b", "a"]))
    desired = mocks["ensure"].call_args.args[1]
    assert desired["password"] == "s3cret-pw" and desired["password_verifier"].startswith("SCRAM-SHA-256$4096:")
    assert desired["databases"] == ["a", "b"] and desired["revoke_public_connect"] is True
    assert "s3cret-pw" not in json.dumps(outcome.args[0])


@pytest.mark.parametrize(("args", "message"), [
    ({"connection": "direct", "login_host": "h"}, "state is present but all of the following are missing: owner"),
    ({"state": "restored", "src": "/d", "cluster": "c", "namespace": "n"}, "state is restored but all of the following are missing: owner"),
    ({"state": "dumped", "cluster": "c", "namespace": "n"}, "state is dumped but all of the following are missing: dest"),
    ({"connection": "direct", "owner": "flyte"}, "connection is direct but all of the following are missing: login_host"),
    ({"owner": "flyte", "cluster": "c"}, "connection is kubernetes but all of the following are missing: namespace"),
    ({"owner": "flyte"}, "missing: cluster, namespace"),
    (dict(DIRECT, ssl_mode="sometimes"), "value of ssl_mode must be one of"),
    (dict(DIRECT, connection="ssh"), "value of connection must be one of"),
    (dict(DIRECT, login_port="five"), "login_port"),
    (dict(DIRECT, owner="x" * 64), "longer than 63 bytes"),
    (dict(DIRECT, owner="public"), "is reserved by PostgreSQL"),
    (dict(DIRECT, owner="pg_flyte"), "is reserved by PostgreSQL"),
    (dict(DIRECT, databases=[]), "databases is empty"),
    (dict(DIRECT, databases=["ok", ""]), "must be a non-empty string"),
    (dict(DIRECT, login_db="d" * 70), "login_db database name"),
    (dict(DIRECT, owner_password="a\x00b"), "NUL character"),
])
def test_invalid_arguments_fail_before_connecting(args, message):
    outcome, mocks = run_module(args)
    assert isinstance(outcome, Fail), outcome
    assert message in outcome.args[0]["msg"]
    mocks["ensure"].assert_not_called()
    mocks["direct"].assert_not_called()
    mocks["psql"].assert_not_called()


def test_options_of_the_other_connection_are_warned_about():
    with mock.patch.object(basic.AnsibleModule, "warn") as warn:
        run_module(dict(DIRECT, cluster="c"))
        run_module(dict(KUBERNETES, login_password="x", login_host="h"))
    warnings = " ".join(call.args[0] for call in warn.call_args_list)
    assert "cluster is ignored with connection=direct" in warnings
    assert "login_host is ignored with connection=kubernetes" in warnings
    assert "login_password is ignored with connection=kubernetes" in warnings


def test_a_failure_reports_what_was_committed():
    error = DatabaseError("PostgreSQL refused it.", executed=['CREATE ROLE "flyte" LOGIN'])
    outcome = run_module(DIRECT, side_effect=error)[0]
    result = outcome.args[0]
    assert isinstance(outcome, Fail)
    assert result["msg"] == "PostgreSQL refused it." and result["changed"] is True
    assert result["queries"] == ['CREATE ROLE "flyte" LOGIN']


def test_a_failure_before_any_change_is_not_a_change():
    outcome = run_module(KUBERNETES, side_effect=DatabaseError("no primary"))[0]
    assert outcome.args[0]["changed"] is False and outcome.args[0]["queries"] == []


def test_no_primary_pod_fails_the_module():
    with patch_module_args(KUBERNETES), mock.patch.object(flyte_database, "api_client", return_value="api"), \
            mock.patch.object(flyte_database, "CoreV1Api") as core:
        core.return_value.list_namespaced_pod.return_value.items = []
        with pytest.raises(Fail) as failure:
            flyte_database.main()
    core.return_value.list_namespaced_pod.assert_called_once_with(
        "flyte-system", label_selector="cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary")
    assert "has no primary pod" in failure.value.args[0]["msg"]


def test_passwords_are_no_log():
    spec = flyte_database.argument_spec()
    assert spec["owner_password"]["no_log"] is True and spec["login_password"]["no_log"] is True
    for name in ("kubeconfig", "context", "api_key", "validate_certs"):  # kubernetes.core's auth options
        assert name in spec


def test_documentation_matches_the_argument_spec():
    import yaml
    documented = yaml.safe_load(flyte_database.DOCUMENTATION)["options"]
    own = {name for name in flyte_database.argument_spec() if name not in flyte_database.auth_argument_spec()}
    assert set(documented) == own
    for name, option in documented.items():
        spec = flyte_database.argument_spec()[name]
        assert option.get("type") == spec["type"], name
        assert option.get("default") == spec.get("default"), name
        assert option.get("choices") == spec.get("choices"), name
