"""The flyte_health module: argument handling, fail or exit with the results, check mode, secrecy; the checks
themselves are replaced (module_utils/health.py, health_checks.py and health_reader.py have their own tests)."""

from __future__ import annotations

from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit as Exit, ModuleFail as Fail

from ansible_collections.homelab.flyte.plugins.module_utils import health, health_checks
from ansible_collections.homelab.flyte.plugins.modules import flyte_health


def outcome(*results, attempts=1):
    results = list(results)
    return {"checks": results, "healthy": health.is_healthy(results), "summary": health.summarize(results),
            "counts": health.counts(results), "failed_checks": [r["name"] for r in results if r["status"] == "fail"],
            "attempts": attempts, "elapsed": 0.1}


HEALTHY = outcome(health_checks.result("flyteadmin_pods", "ok", "1/1 pods ready"), health_checks.result("admin_healthcheck", "skipped", "x"))
UNHEALTHY = outcome(health_checks.result("flytepropeller_pods", "fail", "no running pods", "kubectl -n flyte-system get deployment flytepropeller"),
                    health_checks.result("database_cluster", "fail", 'phase "Setting up primary"', "kubectl -n flyte-system get cluster flyte-postgres"),
                    health_checks.result("http_route", "warn", "no status", "kubectl get httproute"))


def run_module(args, result=None, check=False):
    """main() with the cluster client and the checks replaced; (payload of Exit or Fail, the run mock)."""
    run = mock.Mock(return_value=result or HEALTHY)
    with patch_module_args(dict(args, _ansible_check_mode=check)), \
            mock.patch.object(flyte_health, "api_client", return_value="api") as client, \
            mock.patch.object(flyte_health, "run", run):
        try:
            flyte_health.main()
        except (Exit, Fail) as end:
            return end, run, client
    raise AssertionError("the module neither exited nor failed")


def test_healthy_exits_unchanged_with_the_results():
    end, run, client = run_module({})
    assert isinstance(end, Exit)
    payload = end.args[0]
    assert payload["changed"] is False and payload["healthy"] is True
    assert payload["summary"] == "healthy: 1 of 1 checks ok, 1 skipped"
    assert payload["checks"] == HEALTHY["checks"] and payload["failed_checks"] == []
    params, api = run.call_args.args
    assert api == "api" and params["namespace"] == "flyte-system" and params["database"]["name"] == "flyteadmin"


def test_unhealthy_fails_listing_each_failure_with_its_hint_and_every_result():
    end = run_module({"namespace": "flyte-system"}, UNHEALTHY)[0]
    assert isinstance(end, Fail)
    payload = end.args[0]
    assert payload["msg"] == (
        "unhealthy: 2 of 3 checks failed (flytepropeller_pods, database_cluster), 1 warning (http_route).\n"
        "flytepropeller_pods: no running pods. Hint: kubectl -n flyte-system get deployment flytepropeller\n"
        'database_cluster: phase "Setting up primary". Hint: kubectl -n flyte-system get cluster flyte-postgres')
    assert payload["checks"] == UNHEALTHY["checks"] and payload["healthy"] is False
    assert payload["failed_checks"] == ["flytepropeller_pods", "database_cluster"] and payload["changed"] is False


def test_unhealthy_without_failing_when_asked():
    end = run_module({"fail_on_unhealthy": False}, UNHEALTHY)[0]
    assert isinstance(end, Exit) and end.args[0]["healthy"] is False and end.args[0]["counts"]["fail"] == 2


def test_check_mode_runs_the_same_read_only_checks():
    end, run = run_module({}, check=True)[:2]
    assert isinstance(end, Exit) and run.called and end.args[0]["changed"] is False


@pytest.mark.parametrize("args, message", [
    ({"checks": ["flyteadmin_pod"]}, "unknown check name flyteadmin_pod; the checks are: flyteadmin_pods, flytepropeller_pods,"),
    ({"check_timeout": -1}, "check_timeout must be a positive number of seconds, got -1"),
    ({"authentik": {"url": "auth.example.com"}}, "authentik.url must be an http:// or https:// URL"),
])
def test_invalid_arguments_fail_before_touching_the_cluster(args, message):
    end, run, client = run_module(args)
    assert isinstance(end, Fail) and end.args[0]["msg"].startswith(message), end.args[0]["msg"]
    assert not run.called and not client.called


def test_argument_types_are_checked_by_the_spec():
    end, run = run_module({"secrets": {"backend": "vault"}})[:2]
    assert isinstance(end, Fail) and "backend" in end.args[0]["msg"] and not run.called


def test_auth_options_are_kubernetes_cores():
    run = run_module({"kubeconfig": "/tmp/kubeconfig", "context": "homelab", "wait": True, "wait_timeout": 30})[1]
    params = run.call_args.args[0]
    assert params["kubeconfig"] == "/tmp/kubeconfig" and params["context"] == "homelab"
    assert params["wait"] is True and params["timeout"] == 30  # wait_timeout is an alias


def test_secrets_are_not_logged():
    with patch_module_args({"authentik": {"api_token": "tok-123", "url": "https://auth.example.com"},
                            "database": {"password": "pw-456", "host": "db"}}), \
            mock.patch.object(flyte_health, "api_client", return_value="api"), \
            mock.patch.object(flyte_health, "run", return_value=HEALTHY), \
            mock.patch.object(basic.AnsibleModule, "__init__", autospec=True, side_effect=basic.AnsibleModule.__init__) as init:
        with pytest.raises(Exit):
            flyte_health.main()
    module = init.call_args.args[0]
    assert {"tok-123", "pw-456"} <= module.no_log_values
