"""module_utils/onepassword: read_item through the real onepasswordconnectsdk client against the Connect test
double (tests/fakes/onepassword_connect.py), and the messages a user gets for each way a read fails."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import onepassword
from ansible_collections.homelab.flyte.plugins.module_utils.onepassword import ConnectError, missing_fields, read_item
from ansible_collections.homelab.flyte.tests.fakes.onepassword_connect import FakeConnectServer

DATA = {"Secrets": {"flyte-secrets": {"username": "flyte", "password": "pw-1", "oidc-client-id": "flyte", "empty": ""}}}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # httpx honours proxy variables even for 127.0.0.1.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def connect():
    with FakeConnectServer(DATA) as server:
        yield server


def test_read_item_returns_ids_version_and_every_labelled_field(connect):
    found = read_item(connect.url, connect.token, "Secrets", "flyte-secrets")
    assert found == {"vault_id": connect.vault_id("Secrets"), "item_id": connect.item_id("Secrets", "flyte-secrets"),
                     "version": 1, "fields": {"username": "flyte", "password": "pw-1", "oidc-client-id": "flyte", "empty": ""}}


def test_the_version_follows_an_edit_in_1password(connect):
    connect.set_item("Secrets", "flyte-secrets", {"username": "flyte", "password": "pw-2"})
    found = read_item(connect.url + "/", connect.token, "Secrets", "flyte-secrets")
    assert found["version"] == 2 and found["fields"] == {"username": "flyte", "password": "pw-2"}


def test_a_refused_token_names_the_token_variable_and_not_the_token(connect):
    with pytest.raises(ConnectError) as error:
        read_item(connect.url, "not-the-token", "Secrets", "flyte-secrets")
    message = str(error.value)
    assert message.startswith(f"1Password Connect at {connect.url} refused the token while reading vaults/Secrets/items/flyte-secrets")
    assert "OP_CONNECT_TOKEN" in message and "not-the-token" not in message


def test_an_unknown_vault_is_named(connect):
    with pytest.raises(ConnectError, match="^1Password Connect has no vault named 'Private' that the token can read.$"):
        read_item(connect.url, connect.token, "Private", "flyte-secrets")


def test_an_unknown_item_is_named_with_its_vault(connect):
    with pytest.raises(ConnectError, match="^The 1Password vault 'Secrets' has no item titled 'flyte-other'.$"):
        read_item(connect.url, connect.token, "Secrets", "flyte-other")


def test_an_unreachable_server_names_the_url_and_the_host_variable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ConnectError) as error:
        read_item(url, "token", "Secrets", "flyte-secrets", timeout=2)
    assert str(error.value).startswith(f"Cannot reach the 1Password Connect server at {url}: ")
    assert "OP_CONNECT_HOST" in str(error.value)


class _ProxyErrorPage(BaseHTTPRequestHandler):
    """What a reverse proxy in front of a stopped Connect server answers: 200 and HTML."""

    def do_GET(self):  # noqa: N802 - the name BaseHTTPRequestHandler calls
        body = b"<html><body>Bad gateway</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


def test_a_server_that_is_not_connect_is_said_so():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyErrorPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ConnectError) as error:
            read_item(url, "token", "Secrets", "flyte-secrets")
    finally:
        server.shutdown()
        server.server_close()
    assert str(error.value).startswith(f"{url} did not answer like a 1Password Connect server while reading "
                                       "vaults/Secrets/items/flyte-secrets: ")


@pytest.mark.parametrize("sdk_message, expected", [
    ("Found 2 items in vault x with title 'flyte-secrets'",
     "vaults/Secrets/items/flyte-secrets is ambiguous: Found 2 items in vault x with title 'flyte-secrets'. "
     "Give the vault and the item unique names."),
    ("Unable to retrieve vault. Received 500 for /v1/vaults with message: internal",
     "1Password Connect failed to read vaults/Secrets/items/flyte-secrets: "
     "Unable to retrieve vault. Received 500 for /v1/vaults with message: internal"),
    ("Unable to retrieve items. Received 403 for /v1/vaults/x/items with message: forbidden",
     "1Password Connect at https://connect.lan refused the token while reading vaults/Secrets/items/flyte-secrets: "
     "check the Connect access token (OP_CONNECT_TOKEN) and that it may read the vault."),
])
def test_the_sdks_other_errors_are_explained(sdk_message, expected):
    # pylint: disable-next=protected-access
    assert onepassword._explain(sdk_message, "https://connect.lan", "Secrets", "flyte-secrets",
                                "vaults/Secrets/items/flyte-secrets") == expected


def test_missing_fields_are_the_absent_and_empty_labels_in_the_order_asked():
    fields = {"username": "flyte", "password": "", "oidc-client-id": "flyte"}
    assert missing_fields(fields, ["oidc-client-secret", "username", "password"]) == ["oidc-client-secret", "password"]
    assert missing_fields(fields, []) == []


def test_tls_settings_follow_validate_certs_and_the_ca_bundle(tmp_path):
    # pylint: disable=protected-access
    assert onepassword._tls(False, None) is False
    assert onepassword._tls(True, None) is True
    with pytest.raises(FileNotFoundError):
        onepassword._tls(True, str(tmp_path / "no-such-ca.pem"))
