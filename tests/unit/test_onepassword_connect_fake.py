"""The real onepasswordconnectsdk client reads items from the fake Connect server as from a real one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from onepasswordconnectsdk import load_dict
from onepasswordconnectsdk.client import Client, new_client
from onepasswordconnectsdk.errors import FailedToRetrieveItemException, FailedToRetrieveVaultException
from onepasswordconnectsdk.models import Item

# Imported through the collection path that pytest.ini puts on sys.path (see scripts/bootstrap).
from ansible_collections.homelab.flyte.tests.fakes.onepassword_connect import (
    FakeConnectServer,
    RecordedRequest,
    connect_id,
)

DATA = {
    "Homelab": {
        "Flyte DB": {"username": "flyte", "password": "s3cret pass", "host": "db.lan"},
        "Flyte S3": {"access_key": "AKIA-TEST", "secret_key": "shh"},
    },
    "Other": {"Flyte DB": {"password": "not this one"}},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx honours proxy variables even for 127.0.0.1, and the SDK reads its timeout from the env.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OP_CONNECT_CLIENT_REQ_TIMEOUT", raising=False)


@pytest.fixture
def connect() -> Iterator[FakeConnectServer]:
    with FakeConnectServer(DATA) as server:
        yield server


@pytest.fixture
def client(connect: FakeConnectServer) -> Client:
    sdk = new_client(connect.url, connect.token)
    assert isinstance(sdk, Client)
    return sdk


def fields(item: Item) -> dict[str, str]:
    return {field.label: field.value for field in item.fields}


def test_get_item_by_names_takes_three_requests(connect: FakeConnectServer, client: Client) -> None:
    item = client.get_item("Flyte DB", "Homelab")

    assert item.title == "Flyte DB"
    assert item.id == connect.item_id("Homelab", "Flyte DB")
    assert item.vault.id == connect.vault_id("Homelab")
    assert item.category == "LOGIN" and item.version == 1 and item.created_at.year == 2024
    assert fields(item) == {"username": "flyte", "password": "s3cret pass", "host": "db.lan"}
    vault_id, item_id = connect.vault_id("Homelab"), item.id
    assert connect.requests == [
        RecordedRequest("GET", "/v1/vaults", {"filter": 'name eq "Homelab"'}, True),
        RecordedRequest("GET", f"/v1/vaults/{vault_id}/items", {"filter": 'title eq "Flyte DB"'}, True),
        RecordedRequest("GET", f"/v1/vaults/{vault_id}/items/{item_id}", {}, True),
    ]


def test_vault_and_item_models_deserialise(connect: FakeConnectServer, client: Client) -> None:
    vault = client.get_vault_by_title("Other")
    assert (vault.id, vault.name, vault.type, vault.items) == (connect.vault_id("Other"), "Other", "USER_CREATED", 1)

    item = client.get_item_by_title("Flyte S3", vault_id=connect.vault_id("Homelab"))
    assert fields(item) == {"access_key": "AKIA-TEST", "secret_key": "shh"}
    assert [section.label for section in item.sections] == ["details"]
    assert {field.section.id for field in item.fields} == {item.sections[0].id}

    item = client.get_item_by_id(connect.item_id("Homelab", "Flyte DB"), connect.vault_id("Homelab"))
    password = next(field for field in item.fields if field.label == "password")
    assert (password.id, password.purpose, password.type) == ("password", "PASSWORD", "CONCEALED")
    assert password.section is None


def test_load_dict_reads_fields_by_vault_name(client: Client) -> None:
    values = load_dict(client, {
        "user": {"opitem": "Flyte DB", "opfield": ".username", "opvault": "Homelab"},
        "host": {"opitem": "Flyte DB", "opfield": "details.host", "opvault": "Homelab"},
        "other": {"opitem": "Flyte DB", "opfield": ".password", "opvault": "Other"},
    })
    assert values == {"user": "flyte", "host": "db.lan", "other": "not this one"}


def test_wrong_token_gets_401_from_every_data_endpoint(connect: FakeConnectServer) -> None:
    client = new_client(connect.url, "wrong-token")

    with pytest.raises(FailedToRetrieveVaultException, match="Received 401"):
        client.get_item("Flyte DB", "Homelab")
    with pytest.raises(FailedToRetrieveItemException) as by_id:
        client.get_item_by_id(connect.item_id("Homelab", "Flyte DB"), connect.vault_id("Homelab"))
    assert by_id.value.status_code == 401
    assert [request.authorised for request in connect.requests] == [False, False]


def test_missing_or_malformed_authorization_gets_401_error_body(connect: FakeConnectServer) -> None:
    for headers in ({}, {"Authorization": connect.token}, {"Authorization": f"Bearer {connect.token}x"}):
        response = httpx.get(f"{connect.url}/v1/vaults", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"status": 401, "message": "Invalid token signature"}


def test_unknown_vault_name_or_item_title_is_not_found(client: Client) -> None:
    # The SDK raises its *item* exception for a vault name that matches nothing.
    with pytest.raises(FailedToRetrieveItemException, match="Found 0 vaults"):
        client.get_item("Flyte DB", "Nope")
    with pytest.raises(FailedToRetrieveItemException, match="Found 0 items") as missing:
        client.get_item("Nope", "Homelab")
    assert missing.value.status_code is None


def test_unknown_ids_are_404(connect: FakeConnectServer, client: Client) -> None:
    vault_id, unknown = connect.vault_id("Homelab"), connect_id("no such thing")
    for item_id, in_vault in ((unknown, vault_id), (connect.item_id("Homelab", "Flyte DB"), unknown)):
        with pytest.raises(FailedToRetrieveItemException) as missing:
            client.get_item_by_id(item_id, in_vault)
        assert missing.value.status_code == 404

    auth = {"Authorization": f"Bearer {connect.token}"}
    response = httpx.get(f"{connect.url}/v1/vaults/{unknown}/items", headers=auth)
    assert (response.status_code, response.json()["status"]) == (404, 404)


def test_heartbeat_and_health_need_no_token(connect: FakeConnectServer) -> None:
    heartbeat = httpx.get(f"{connect.url}/heartbeat")
    assert (heartbeat.status_code, heartbeat.text) == (200, ".")
    health = httpx.get(f"{connect.url}/health")
    assert health.status_code == 200 and health.json()["name"].startswith("1Password Connect API")
    seen = [(request.path, request.authorised) for request in connect.requests]
    assert seen == [("/heartbeat", False), ("/health", False)]


def test_writes_are_refused(connect: FakeConnectServer) -> None:
    response = httpx.delete(f"{connect.url}/v1/vaults", headers={"Authorization": f"Bearer {connect.token}"})
    assert response.status_code == 405 and response.json()["status"] == 405


def test_stop_closes_the_port() -> None:
    server = FakeConnectServer(DATA, token="fixed").start()
    url = server.url
    assert server.token == "fixed"
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/heartbeat")
