"""The flyte_helm_recover module: which helm commands it runs, check mode, diff, failures a user can act on. helm is
replaced by a recorder of its argv here; the real helm on the real API server is in tests/integration/test_lock.py."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.flyte.plugins.modules import flyte_helm_recover
from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit as Exit, ModuleFail as Fail

HELM = "/opt/helm"


class Helm:
    """Answers `helm history` from a list of revisions; records every command."""

    def __init__(self, revisions=None, history_rc=0, history_err=""):
        self.revisions, self.history_rc, self.history_err = revisions, history_rc, history_err
        self.commands: list[list[str]] = []

    def __call__(self, command, fails_on_error=True, data=None):
        self.commands.append(command)
        if command[1] == "history":
            return self.history_rc, json.dumps(self.revisions) if self.revisions is not None else "", self.history_err
        return 0, "", ""


def run_module(args, helm, check=False, diff=False):
    with patch_module_args(dict({"release_namespace": "ns", "binary_path": HELM}, **args, _ansible_check_mode=check,
                                _ansible_diff=diff)), \
            mock.patch.object(flyte_helm_recover.AnsibleHelmModule, "run_helm_command", side_effect=helm, autospec=False):
        try:
            flyte_helm_recover.main()
        except (Exit, Fail) as end:
            return end
    raise AssertionError("the module neither exited nor failed")


PENDING_UPGRADE = [{"revision": 1, "status": "superseded"}, {"revision": 2, "status": "deployed"},
                   {"revision": 3, "status": "pending-upgrade"}]


def test_a_release_that_is_not_installed_is_left_alone():
    helm = Helm(history_rc=1, history_err="Error: release: not found")
    end = run_module({}, helm)
    assert isinstance(end, Exit) and end.args[0] == {"changed": False, "action": "none"}
    assert helm.commands == [[HELM, "history", "flyte", "--namespace", "ns", "--output", "json"]]


def test_a_completed_release_is_left_alone():
    helm = Helm([{"revision": 1, "status": "superseded"}, {"revision": 2, "status": "deployed"}])
    end = run_module({}, helm)
    assert end.args[0]["changed"] is False and len(helm.commands) == 1


def test_an_interrupted_upgrade_is_rolled_back():
    helm = Helm(PENDING_UPGRADE)
    end = run_module({"release_name": "flyte"}, helm)
    result = end.args[0]
    assert result["changed"] is True and result["action"] == "rollback" and result["revision"] == 2
    assert result["interrupted"] == {"revision": 3, "status": "pending-upgrade"}
    assert helm.commands[-1] == [HELM, "rollback", "flyte", "2", "--namespace", "ns"]
    assert result["command"] == ["helm", "rollback", "flyte", "2", "--namespace", "ns"]


def test_an_interrupted_install_is_uninstalled_waiting_up_to_the_timeout():
    helm = Helm([{"revision": 1, "status": "pending-install"}])
    end = run_module({"timeout": 90}, helm)
    assert end.args[0]["action"] == "uninstall"
    assert helm.commands[-1] == [HELM, "uninstall", "flyte", "--namespace", "ns", "--wait", "--timeout", "90s"]


def test_check_mode_runs_only_the_history_and_returns_the_command_and_the_diff():
    helm = Helm(PENDING_UPGRADE)
    end = run_module({}, helm, check=True, diff=True)
    result = end.args[0]
    assert result["changed"] is True and result["command"][:2] == ["helm", "rollback"]
    assert [command[1] for command in helm.commands] == ["history"]
    assert result["diff"]["before"] == "revision 3: pending-upgrade\n"
    assert result["diff"]["after"] == "rolled back to revision 2\n"


def test_nothing_to_return_to_fails_with_what_to_do():
    helm = Helm([{"revision": 1, "status": "failed"}, {"revision": 2, "status": "pending-upgrade"}])
    end = run_module({}, helm)
    assert isinstance(end, Fail) and "helm rollback flyte <revision> -n ns" in end.args[0]["msg"]
    assert len(helm.commands) == 1


def test_a_history_that_fails_otherwise_names_the_credentials():
    helm = Helm(history_rc=1, history_err="Error: Kubernetes cluster unreachable")
    end = run_module({}, helm)
    assert isinstance(end, Fail) and "cluster unreachable" in end.args[0]["msg"] and "K8S_AUTH_" in end.args[0]["msg"]


@pytest.mark.parametrize("timeout", [0, -5])
def test_a_timeout_that_is_not_positive_is_refused(timeout):
    end = run_module({"timeout": timeout}, Helm([]))
    assert isinstance(end, Fail) and "timeout must be a positive number" in end.args[0]["msg"]
