"""The onepassword_item_info module: its result, the fields it requires, its environment fallbacks, and that it
never reports a change; the Connect server is the test double of tests/fakes/onepassword_connect.py."""

from __future__ import annotations

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.flyte.plugins.modules import onepassword_item_info
from ansible_collections.homelab.flyte.tests.fakes.onepassword_connect import FakeConnectServer
from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit as Exit, ModuleFail as Fail

DATA = {"Secrets": {"flyte-secrets": {"username": "flyte", "password": "pw-1", "oidc-client-id": "flyte"}}}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "OP_CONNECT_HOST", "OP_CONNECT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def connect():
    with FakeConnectServer(DATA) as server:
        yield server


def run_module(args, check=False):
    with patch_module_args(dict(args, _ansible_check_mode=check)):
        try:
            onepassword_item_info.main()
        except (Exit, Fail) as end:
            return end
    raise AssertionError("the module neither exited nor failed")


@pytest.mark.parametrize("check", [False, True])
def test_the_item_is_read_and_nothing_is_changed(connect, check):
    end = run_module({"connect_host": connect.url, "connect_token": connect.token, "vault": "Secrets",
                      "item": "flyte-secrets", "fields": ["username", "password"]}, check=check)
    assert isinstance(end, Exit), end.args
    result = end.args[0]
    assert result["changed"] is False and result["version"] == 1
    assert result["fields"] == {"username": "flyte", "password": "pw-1", "oidc-client-id": "flyte"}
    assert result["item_id"] == connect.item_id("Secrets", "flyte-secrets")


def test_host_and_token_fall_back_to_the_connect_environment(connect, monkeypatch):
    monkeypatch.setenv("OP_CONNECT_HOST", connect.url)
    monkeypatch.setenv("OP_CONNECT_TOKEN", connect.token)
    end = run_module({"vault": "Secrets", "item": "flyte-secrets"})
    assert isinstance(end, Exit) and end.args[0]["fields"]["username"] == "flyte"


def test_missing_fields_fail_naming_each_and_what_to_do(connect):
    end = run_module({"connect_host": connect.url, "connect_token": connect.token, "vault": "Secrets",
                      "item": "flyte-secrets", "fields": ["password", "oidc-client-secret", "s3-secret"]})
    assert isinstance(end, Fail)
    assert end.args[0]["msg"] == ("The 1Password item vaults/Secrets/items/flyte-secrets lacks a value for "
                                  "oidc-client-secret, s3-secret: add those fields in 1Password.")
    assert end.args[0]["missing"] == ["oidc-client-secret", "s3-secret"]
    assert "pw-1" not in repr(end.args)


def test_a_read_failure_is_the_modules_message(connect):
    end = run_module({"connect_host": connect.url, "connect_token": "wrong", "vault": "Secrets", "item": "flyte-secrets"})
    assert isinstance(end, Fail) and "refused the token" in end.args[0]["msg"] and "wrong" not in end.args[0]["msg"]


def test_without_the_sdk_the_module_names_the_library(monkeypatch):
    monkeypatch.setattr(onepassword_item_info, "HAS_ONEPASSWORD", False)
    end = run_module({"connect_host": "http://127.0.0.1:1", "connect_token": "t", "vault": "Secrets", "item": "x"})
    assert isinstance(end, Fail) and "onepasswordconnectsdk" in end.args[0]["msg"]
