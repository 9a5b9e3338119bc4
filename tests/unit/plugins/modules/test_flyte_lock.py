"""The flyte_lock module: inputs, what it reports (never changed), failures a user can act on, check mode. The
Lease store is the in-memory one of module_utils/test_lock.py; the real API server is in tests/integration/test_lock.py."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.flyte.plugins.modules import flyte_lock
from ansible_collections.homelab.flyte.tests.unit.plugins.module_utils.test_lock import ME, NAME, NS, OTHER, T0, Store
from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit as Exit, ModuleFail as Fail


def run_module(args, store, check=False):
    with patch_module_args(dict(args, _ansible_check_mode=check)), \
            mock.patch.object(flyte_lock, "api_client", return_value="api"), \
            mock.patch.object(flyte_lock, "KubeLeaseStore", return_value=store):
        try:
            flyte_lock.main()
        except (Exit, Fail) as end:
            return end
    raise AssertionError("the module neither exited nor failed")


def test_acquire_and_release_report_no_change():
    store = Store()
    end = run_module({"holder": ME}, store)
    assert isinstance(end, Exit)
    result = end.args[0]
    assert result["changed"] is False and result["action"] == "acquired" and result["holder"] == ME
    assert result["lease"]["namespace"] == NS and result["lease"]["name"] == NAME and result["lease"]["duration"] == 1800
    assert "note" not in result
    end = run_module({"holder": ME, "state": "released"}, store)
    assert end.args[0]["changed"] is False and end.args[0]["action"] == "released" and store.lease is None


def test_the_default_holder_carries_the_awx_job(monkeypatch):
    monkeypatch.setattr(flyte_lock, "default_holder", lambda job_id: f"host h, pid 1, AWX job {job_id}")
    store = Store()
    end = run_module({"job_id": "42"}, store)
    assert store.lease["spec"]["holderIdentity"] == "host h, pid 1, AWX job 42" == end.args[0]["holder"]


def test_a_held_lock_fails_naming_the_holder():
    store = Store()
    store.put(OTHER, duration=3600)
    with mock.patch("time.sleep"):
        end = run_module({"holder": ME, "timeout": 0}, store)
    assert isinstance(end, Fail)
    assert f"{OTHER!r} has held the Lease {NS}/{NAME} since" in end.args[0]["msg"] and end.args[0]["holder"] == ME


def test_taking_over_an_expired_lock_warns(monkeypatch):
    store = Store()
    store.put(OTHER, acquired=T0 - timedelta(hours=1), duration=60)
    warnings = []
    monkeypatch.setattr(flyte_lock.AnsibleK8SModule, "warn", lambda self, text: warnings.append(text))
    end = run_module({"holder": ME}, store)
    assert end.args[0]["action"] == "taken_over" and end.args[0]["changed"] is False
    assert warnings and OTHER in warnings[0] and "without releasing it" in warnings[0]


def test_check_mode_writes_nothing():
    store = Store(namespaces=())
    end = run_module({"holder": ME}, store, check=True)
    assert end.args[0]["action"] == "would_acquire" and end.args[0]["changed"] is False and "does not exist yet" in end.args[0]["note"]
    assert store.writes == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [({"namespace": "Flyte"}, "namespace 'Flyte' must be a DNS-1123 label"), ({"name": "a_b"}, "name 'a_b' must be a DNS-1123 subdomain"),
     ({"duration": 0}, "duration must be a positive"), ({"duration": 2**31}, "int32"), ({"timeout": -1}, "timeout must be 0"),
     ({"poll_interval": 0}, "poll_interval must be"), ({"holder": " "}, "holder must not be empty")],
)
def test_invalid_inputs_are_refused_before_any_request(args, problem):
    store = Store()
    end = run_module(args, store)
    assert isinstance(end, Fail) and problem in end.args[0]["msg"] and store.writes == []
