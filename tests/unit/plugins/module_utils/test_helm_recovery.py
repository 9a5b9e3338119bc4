"""What undoes a helm operation a killed run left: from helm history's revisions and statuses."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils.helm_recovery import recovery_plan


def history(*statuses: str) -> list[dict]:
    """helm history -o json, revision 1 first (helm prints them oldest first; the plan must not rely on it)."""
    return list(reversed([{"revision": number, "status": status, "chart": "flyte-core-1.16.8"}
                          for number, status in enumerate(statuses, start=1)]))


@pytest.mark.parametrize("statuses", [(), ("deployed",), ("superseded", "deployed"), ("deployed", "failed"),
                                      ("superseded", "superseded", "deployed"), ("uninstalled",)])
def test_nothing_interrupted_is_left_alone(statuses):
    assert recovery_plan(history(*statuses), "flyte", "ns") == {"action": "none"}


def test_an_interrupted_upgrade_rolls_back_to_the_revision_it_started_from():
    plan = recovery_plan(history("superseded", "deployed", "pending-upgrade"), "flyte", "ns")
    assert plan == {"action": "rollback", "interrupted": {"revision": 3, "status": "pending-upgrade"}, "revision": 2,
                    "argv": ["rollback", "flyte", "2", "--namespace", "ns"]}


def test_an_interrupted_rollback_of_a_failed_upgrade_returns_to_the_deployed_revision():
    # An atomic upgrade that failed: 2 failed, its rollback (3) killed; 1 is still the deployed one.
    plan = recovery_plan(history("deployed", "failed", "pending-rollback"), "flyte", "ns")
    assert plan["action"] == "rollback" and plan["revision"] == 1
    assert plan["interrupted"] == {"revision": 3, "status": "pending-rollback"}


def test_without_a_deployed_revision_the_last_superseded_one_is_the_target():
    plan = recovery_plan(history("superseded", "superseded", "failed", "pending-upgrade"), "flyte", "ns")
    assert plan["action"] == "rollback" and plan["revision"] == 2


def test_revisions_are_compared_as_numbers():
    entries = [{"revision": 9, "status": "deployed"}, {"revision": 10, "status": "pending-upgrade"}]
    assert recovery_plan(entries, "flyte", "ns")["revision"] == 9


@pytest.mark.parametrize("statuses", [("pending-install",), ("uninstalled", "pending-install"),
                                      ("superseded", "deployed", "uninstalling")])
def test_an_interrupted_install_or_uninstall_is_uninstalled(statuses):
    plan = recovery_plan(history(*statuses), "flyte", "ns")
    assert plan["action"] == "uninstall"
    assert plan["argv"] == ["uninstall", "flyte", "--namespace", "ns", "--wait"]
    assert plan["interrupted"] == {"revision": len(statuses), "status": statuses[-1]}


def test_an_interrupted_upgrade_with_nothing_deployed_before_is_refused_with_what_to_do():
    plan = recovery_plan(history("failed", "pending-upgrade"), "flyte", "flyte-system")
    assert plan["action"] == "refuse" and "argv" not in plan
    assert "revision 2 pending-upgrade" in plan["msg"]
    assert "helm history flyte -n flyte-system" in plan["msg"] and "helm rollback flyte <revision>" in plan["msg"]
