"""Shared by the module tests: exit_json and fail_json raise instead of exiting the test process."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic

from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit, ModuleFail


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    def exit_json(self, **result):
        raise ModuleExit(result)

    def fail_json(self, msg, **result):
        raise ModuleFail(dict(result, msg=msg, failed=True))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
