"""A test double of the 1Password Connect server, for offline tests of the secrets role.

It is a small stdlib HTTP server that answers the part of the Connect REST API that the
`onepasswordconnectsdk` client uses to read items, with response shapes close enough to the real
server's that the SDK's model deserialisation works:

    GET /v1/vaults?filter=name eq "<name>"                  vaults (the filter is optional)
    GET /v1/vaults/{vaultId}/items?filter=title eq "<t>"   item summaries (the filter is optional)
    GET /v1/vaults/{vaultId}/items/{itemId}                one full item with its fields
    GET /heartbeat, GET /health                             liveness and health, without a token

Every /v1 request needs `Authorization: Bearer <token>`; anything else gets the Connect error body
`{"status": ..., "message": ...}`. A filter that matches nothing gives `[]`, an unknown vault or item
ID gives 404. Nothing is ever written: other methods get 405.

The data is a dict given at construction: vault name -> item title -> {field label: value}; a test
changes an item with set_item(), as an edit in 1Password would (its version goes up). IDs are
derived from the names, 26 lowercase base32 characters like real ones, because the SDK decides by
that shape whether a string is an ID or a name.

It is never shipped: tests/ is in galaxy.yml's build_ignore, so it is not in the built collection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Data = Mapping[str, Mapping[str, Mapping[str, str]]]

TIMESTAMP = "2024-01-01T00:00:00Z"
# Fields the real server gives fixed IDs and a purpose; any other label becomes a custom field.
BUILT_IN = {
    "username": ("STRING", "USERNAME"),
    "password": ("CONCEALED", "PASSWORD"),
    "notesPlain": ("STRING", "NOTES"),
}
FILTER = re.compile(r'^(\w+) eq "(.*)"$', re.DOTALL)


def connect_id(*names: str) -> str:
    """A stable 26-character ID in the alphabet of real Connect IDs (lowercase a-z and 2-7)."""
    digest = hashlib.sha256("\0".join(names).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:26]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded path, without the query
    query: dict[str, str]  # decoded query parameters, as the server parsed them
    authorised: bool  # carried `Bearer <token>` with the right token (even where none is needed)


class FakeConnectServer:
    """Serves `data` on 127.0.0.1 at an ephemeral port; use as a context manager or start()/stop()."""

    def __init__(self, data: Data, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._vaults = [_vault(name, items) for name, items in data.items()]
        self._items = {
            vault["id"]: [_item(vault, title, fields) for title, fields in data[vault["name"]].items()]
            for vault in self._vaults
        }
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def vault_id(self, name: str) -> str:
        return connect_id(name)

    def set_item(self, vault: str, title: str, fields: Mapping[str, str]) -> None:
        """Replace an item's fields, as an edit in 1Password does (the item's version goes up)."""
        vault_object = next(v for v in self._vaults if v["name"] == vault)
        with self._lock:
            items = self._items[vault_object["id"]]
            old = next(item for item in items if item["title"] == title)
            new = _item(vault_object, title, fields)
            new["version"] = old.get("version", 1) + 1
            items[items.index(old)] = new

    def item_id(self, vault: str, title: str) -> str:
        return connect_id(vault, title)

    def start(self) -> FakeConnectServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> FakeConnectServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def respond(self, method: str, path: str, query: dict[str, str], authorised: bool) -> tuple[int, Any]:
        """The status and JSON body (or text, for the heartbeat) for one request."""
        if method != "GET":
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, "this fake only reads")
        if path == "/heartbeat":
            return HTTPStatus.OK, "."
        if path == "/health":
            return HTTPStatus.OK, {"name": "1Password Connect API (fake)", "version": "1.0.0", "dependencies": []}
        if not path.startswith("/v1/"):
            return _error(HTTPStatus.NOT_FOUND, "Not found")
        if not authorised:
            return _error(HTTPStatus.UNAUTHORIZED, "Invalid token signature")

        parts = path.removeprefix("/v1/").split("/")
        if parts == ["vaults"]:
            return _filtered(self._vaults, query, "name")
        if len(parts) >= 3 and parts[0] == "vaults" and parts[2] == "items":
            items = self._items.get(parts[1])
            if items is None:
                return _error(HTTPStatus.NOT_FOUND, "vault not found")
            if len(parts) == 3:
                return _filtered([_summary(item) for item in items], query, "title")
            if len(parts) == 4:
                found = [item for item in items if item["id"] == parts[3]]
                return (HTTPStatus.OK, found[0]) if found else _error(HTTPStatus.NOT_FOUND, "item not found")
        return _error(HTTPStatus.NOT_FOUND, "Not found")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeConnectServer  # set on the subclass made by start()

    def _handle(self) -> None:
        target = urlsplit(self.path)
        # parse_qs decodes '+' as a space, as Go's url.ParseQuery does; the SDK sends '+' unescaped.
        query = {key: values[-1] for key, values in parse_qs(target.query, keep_blank_values=True).items()}
        header = self.headers.get("Authorization", "")
        authorised = hmac.compare_digest(header.encode(), f"Bearer {self.fake.token}".encode())
        path = unquote(target.path)
        self.fake.record(RecordedRequest(self.command, path, query, authorised))

        status, body = self.fake.respond(self.command, path, query, authorised)
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # http.server dispatches on these names; all of them go through _handle so writes get a 405.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """Keep pytest output clean; tests read `requests` instead."""


def _error(status: HTTPStatus, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"status": int(status), "message": message}


def _filtered(objects: list[dict[str, Any]], query: dict[str, str], attribute: str) -> tuple[int, Any]:
    """Apply the optional `filter=<attribute> eq "<value>"`, the only filter form the SDK sends."""
    if "filter" not in query:
        return HTTPStatus.OK, objects
    match = FILTER.match(query["filter"])
    if match is None or match.group(1) != attribute:
        return _error(HTTPStatus.BAD_REQUEST, f"Invalid filter: {query['filter']}")
    return HTTPStatus.OK, [obj for obj in objects if obj[attribute] == match.group(2)]


def _vault(name: str, items: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": connect_id(name),
        "name": name,
        "description": "",
        "attributeVersion": 1,
        "contentVersion": len(items) + 1,
        "items": len(items),
        "type": "USER_CREATED",
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
    }


def _item(vault: dict[str, Any], title: str, values: Mapping[str, str]) -> dict[str, Any]:
    section = {"id": connect_id(vault["name"], title, "section"), "label": "details"}
    fields = []
    for label, value in values.items():
        if label in BUILT_IN:
            kind, purpose = BUILT_IN[label]
            fields.append({"id": label, "type": kind, "purpose": purpose, "label": label, "value": value})
        else:
            fields.append({
                "id": connect_id(vault["name"], title, label),
                "section": {"id": section["id"]},
                "type": "CONCEALED",
                "label": label,
                "value": value,
            })
    return {
        "id": connect_id(vault["name"], title),
        "title": title,
        "vault": {"id": vault["id"]},
        "category": "LOGIN",
        "version": 1,
        "favorite": False,
        "tags": [],
        "lastEditedBy": connect_id("fake-op-connect"),
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
        "sections": [section] if any("section" in field for field in fields) else [],
        "fields": fields,
    }


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    """A list entry: the item without its sections and fields, as the real list endpoint returns it."""
    return {key: value for key, value in item.items() if key not in ("sections", "fields")}
