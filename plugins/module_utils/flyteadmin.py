# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""FlyteAdmin's HTTP API for Flyte projects, with OAuth2 client credentials and errors a user can act on.

FlyteAdmin serves its gRPC AdminService over HTTP through grpc-gateway. The facts this file relies on
(read in flyteidl 1.16.8 and in flyteadmin at the v1.16.8 tag, see the module's notes):

- ListProjects is GET /api/v1/projects with the query parameters limit, token and filters. Without a
  filter FlyteAdmin hides archived projects; with one it returns every project that matches, so the
  projects are looked up with value_in(identifier,a;b;...). It sets a next-page token only when a page
  is full (len == limit), so asking for one more than the ids of a chunk reads each chunk in one request.
- RegisterProject is POST /api/v1/projects with {"project": Project}; it stores the project's state too,
  so an archived project is registered archived in one request.
- UpdateProject is PUT /api/v1/projects/{id} with the Project as the body. FlyteAdmin writes it with a
  GORM Updates(struct): an empty name or description is not written (it cannot be cleared), labels are
  written only when the request has them, and the state is always written (omitted = ACTIVE).
- Replies asked for with Accept: application/json use the proto field names (snake_case) and carry
  every field, the state as its enum name; errors are google.rpc.Status {"code", "message"}, with
  InvalidArgument -> 400, Unauthenticated (bad token, or a token without the scope "all") -> 401.
- With authentication on, /.well-known/oauth-authorization-server gives the token endpoint and
  /config/v1/flyte_client the scopes and audience FlyteAdmin's own clients use; with it off FlyteAdmin
  does not register that service and the gateway answers 501 (gRPC Unimplemented).

Every request goes through one transport function, so tests can replace it and see each request.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import time
from urllib.error import HTTPError, URLError
from urllib.parse import quote, quote_plus, urlencode

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError, SSLValidationError, open_url

from ansible_collections.homelab.flyte.plugins.module_utils.validation import (
    is_dns_label,
    is_dns_subdomain,
    is_label_name,
    is_label_value,
)

API_PROJECTS = "/api/v1/projects"
OAUTH2_METADATA = "/.well-known/oauth-authorization-server"
CLIENT_CONFIG = "/config/v1/flyte_client"

# ProjectState in flyteidl/admin/project.proto, by number; the JSON form is the name.
PROJECT_STATES = ("ACTIVE", "ARCHIVED", "SYSTEM_GENERATED", "SYSTEM_ARCHIVED")
STATE_BY_OPTION = {"present": "ACTIVE", "archived": "ARCHIVED"}

# Limits FlyteAdmin's project validator enforces (lengths in bytes, as Go's len counts them).
MAX_NAME_BYTES = 64
MAX_DESCRIPTION_BYTES = 300
MAX_LABELS = 16

# A ListProjects request carries at most this many ids, and at most this many characters of them, which
# keeps its URL far below the 8 KiB that common proxies accept.
LIST_CHUNK_IDS = 100
LIST_CHUNK_CHARS = 2000

# A token is renewed this many seconds before the expiry its endpoint announced.
TOKEN_EXPIRY_MARGIN = 30

GRPC_CODES = {
    1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded", 5: "NotFound", 6: "AlreadyExists",
    7: "PermissionDenied", 8: "ResourceExhausted", 9: "FailedPrecondition", 10: "Aborted", 11: "OutOfRange",
    12: "Unimplemented", 13: "Internal", 14: "Unavailable", 15: "DataLoss", 16: "Unauthenticated",
}

CONNECTION_OPTIONS = dict(
    url=dict(type="str", required=True),
    auth=dict(type="str", default="auto", choices=["auto", "none", "client_credentials"]),
    client_id=dict(type="str"),
    client_secret=dict(type="str", no_log=True),
    token_url=dict(type="str", no_log=False),
    scopes=dict(type="list", elements="str"),
    audience=dict(type="str"),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
)


def connection_argument_spec() -> dict:
    """The options of plugins/doc_fragments/flyteadmin.py, for a module's argument_spec."""
    return {name: dict(spec) for name, spec in CONNECTION_OPTIONS.items()}


class FlyteAdminError(Exception):
    """A failure worded for the person running the playbook; status and field say more when known."""

    def __init__(self, message: str, status: int | None = None, field: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.detail = detail


class TransportError(Exception):
    """No HTTP answer at all. kind: connect, tls or timeout."""

    def __init__(self, reason: str, kind: str = "connect"):
        super().__init__(reason)
        self.kind = kind


class Response:
    def __init__(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.status = status
        self.body = body or b""
        self.headers = {key.lower(): value for key, value in (headers or {}).items()}

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def urls_transport(method: str, url: str, headers: dict, body: bytes | None, timeout: float,
                   validate_certs: bool, ca_path: str | None) -> Response:
    """Send one request with Ansible's open_url; an HTTP error status is a Response, not an exception."""
    try:
        # No redirects (a redirect is reported with its target, see explain_status) and no ~/.netrc,
        # whose Basic credentials would replace the bearer token.
        reply = open_url(url, data=body, headers=headers, method=method, timeout=timeout, validate_certs=validate_certs,
                         ca_path=ca_path, follow_redirects="none", use_netrc=False, http_agent="homelab.flyte")
        with reply:
            return Response(reply.status, reply.read(), dict(reply.headers.items()))
    except HTTPError as error:
        try:
            payload = error.read()
        except Exception:  # pylint: disable=broad-except
            payload = b""  # a reply without a readable body
        return Response(error.code, payload, dict(error.headers.items()) if error.headers else {})
    except SSLValidationError as error:
        raise TransportError(str(error), "tls") from error
    except URLError as error:
        reason = error.reason
        if isinstance(reason, ssl.SSLError):
            raise TransportError(str(reason), "tls") from error
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise TransportError(str(reason) or "timed out", "timeout") from error
        raise TransportError(str(reason), "connect") from error
    except (socket.timeout, TimeoutError) as error:
        raise TransportError(str(error) or "timed out", "timeout") from error
    except ssl.SSLError as error:
        raise TransportError(str(error), "tls") from error
    except (UrlsConnectionError, OSError) as error:
        raise TransportError(str(error), "connect") from error


# ---------------------------------------------------------------------------------------------------
# Projects: validation, the API's JSON form, and the plan from desired and current state.


def _label_key_problem(key) -> str | None:
    if not isinstance(key, str) or not key:
        return "is empty"
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return "has a prefix that is not a DNS-1123 subdomain (lowercase, at most 253 characters, e.g. example.com)"
    if not is_label_name(name):
        return ("is not a Kubernetes label name: at most 63 characters, alphanumerics, '-', '_' or '.', "
                "starting and ending with an alphanumeric (optionally prefixed by a DNS subdomain and '/')")
    return None


def project_problems(spec: dict) -> list[str]:
    """What FlyteAdmin would reject in a project spec (id, name, description, labels), checked before any request."""
    problems = []
    pid = spec.get("id")
    if not is_dns_label(pid):
        problems.append(f"id {pid!r} must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
                        "with a letter or digit, at most 63 characters")
    name = spec.get("name")
    if name is not None:
        if not isinstance(name, str) or not name:
            problems.append("name must be a non-empty string (FlyteAdmin requires one and cannot clear it)")
        elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
            problems.append(f"name is longer than FlyteAdmin's {MAX_NAME_BYTES} bytes")
    description = spec.get("description")
    if description is not None:
        if not isinstance(description, str):
            problems.append("description must be a string")
        elif len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
            problems.append(f"description is longer than FlyteAdmin's {MAX_DESCRIPTION_BYTES} bytes")
    labels = spec.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            problems.append("labels must be a mapping of label name to value")
        else:
            if len(labels) > MAX_LABELS:
                problems.append(f"labels has {len(labels)} entries, FlyteAdmin accepts at most {MAX_LABELS}")
            for key, value in labels.items():
                problem = _label_key_problem(key)
                if problem:
                    problems.append(f"label key {key!r} {problem}")
                if not isinstance(value, str):
                    problems.append(f"label {key!r} has a {type(value).__name__} value: label values are strings, quote it")
                elif value and not is_label_value(value):
                    problems.append(f"label {key!r} has the value {value!r}, not a Kubernetes label value: at most 63 "
                                    "characters, alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric")
    return problems


def state_name(value) -> str:
    """The ProjectState of a reply as its name; replies may carry the name or, from other marshalers, the number."""
    if value is None or value == "":
        return "ACTIVE"  # proto3's default, left out by marshalers that omit unpopulated fields
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return PROJECT_STATES[value] if 0 <= value < len(PROJECT_STATES) else str(value)
    return str(value)


def project_from_api(raw: dict) -> dict:
    """A Project of a ListProjects reply, as {id, name, description, labels, state}."""
    labels = raw.get("labels") or {}
    return {
        "id": raw.get("id", ""),
        "name": raw.get("name") or "",
        "description": raw.get("description") or "",
        "labels": dict(labels.get("values") or {}),
        "state": state_name(raw.get("state")),
    }


def desired_project(spec: dict, default_state: str = "present") -> dict:
    """A project option as wanted: name, description and labels are None where the playbook leaves them alone."""
    return {
        "id": spec["id"],
        "name": spec.get("name"),
        "description": spec.get("description"),
        "labels": None if spec.get("labels") is None else dict(spec["labels"]),
        "state": STATE_BY_OPTION[spec.get("state") or default_state],
    }


def plan_project(desired: dict, current: dict | None) -> dict:
    """What to do for one project: {id, action (create, update or none), changes, before, after, warnings, managed}."""
    warnings = []
    if current is None:
        after = {
            "id": desired["id"],
            "name": desired["name"] or desired["id"],
            "description": desired["description"] or "",
            "labels": desired["labels"] or {},
            "state": desired["state"],
        }
        return {"id": desired["id"], "action": "create", "changes": [key for key in ("name", "description", "labels", "state") if after[key]],
                "before": None, "after": after, "warnings": warnings, "labels_managed": desired["labels"] is not None}
    after = dict(current, labels=dict(current["labels"]))
    if desired["name"] is not None:
        after["name"] = desired["name"]
    if desired["description"] is not None:
        if desired["description"] == "" and current["description"]:
            warnings.append(f"project {desired['id']}: FlyteAdmin cannot clear a description (UpdateProject skips empty "
                            f"strings), so it stays {current['description']!r}; set another description instead.")
        else:
            after["description"] = desired["description"]
    if desired["labels"] is not None:
        after["labels"] = dict(desired["labels"])
    after["state"] = desired["state"]
    changes = [key for key in ("name", "description", "labels", "state") if after[key] != current[key]]
    return {"id": desired["id"], "action": "update" if changes else "none", "changes": changes,
            "before": current, "after": after, "warnings": warnings, "labels_managed": desired["labels"] is not None}


def register_body(after: dict) -> dict:
    """The body of RegisterProject: a ProjectRegisterRequest in JSON. No domains: FlyteAdmin rejects them."""
    project = {"id": after["id"], "name": after["name"], "state": after["state"]}
    if after["description"]:
        project["description"] = after["description"]
    if after["labels"]:
        project["labels"] = {"values": dict(after["labels"])}
    return {"project": project}


def update_body(after: dict, labels_managed: bool) -> dict:
    """The body of UpdateProject: the whole Project, the state always (an omitted one would mean ACTIVE)."""
    project = {"id": after["id"], "name": after["name"], "description": after["description"], "state": after["state"]}
    if labels_managed:
        project["labels"] = {"values": dict(after["labels"])}
    return project


def id_chunks(ids: list[str], max_ids: int = LIST_CHUNK_IDS, max_chars: int = LIST_CHUNK_CHARS) -> list[list[str]]:
    """The ids split into groups small enough for one ListProjects URL each, in the given order."""
    chunks, chunk, size = [], [], 0
    for pid in ids:
        if chunk and (len(chunk) >= max_ids or size + len(pid) + 1 > max_chars):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(pid)
        size += len(pid) + 1
    if chunk:
        chunks.append(chunk)
    return chunks


def ids_filter(ids: list[str]) -> str:
    """A ListProjects filter matching these project ids in any state (a filter also lifts the archived default)."""
    return "value_in(identifier,%s)" % ";".join(ids)


# ---------------------------------------------------------------------------------------------------
# Errors

_FIELD_PATTERNS = (
    ("description", re.compile(r"project_description")),
    ("name", re.compile(r"project_name")),
    ("id", re.compile(r"project_id|invalid project id")),
    ("labels", re.compile(r"label")),
    ("domains", re.compile(r"domains")),
    ("filters", re.compile(r"filter")),
    ("token", re.compile(r"pagination token")),
)


def rejected_field(message: str) -> str | None:
    """The project field a FlyteAdmin InvalidArgument message names, if any."""
    lowered = (message or "").lower()
    for field, pattern in _FIELD_PATTERNS:
        if pattern.search(lowered):
            return field
    return None


def _status_message(response: Response) -> tuple[str, str]:
    """(gRPC code name, message) of a grpc-gateway error reply, or ('', text) for another reply."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "message" in payload:
        code = payload.get("code")
        return GRPC_CODES.get(code, str(code) if code is not None else ""), str(payload.get("message") or "")
    if isinstance(payload, dict) and "error" in payload:  # an OAuth2 error (RFC 6749 section 5.2)
        return "", " ".join(str(payload.get(key)) for key in ("error", "error_description") if payload.get(key))
    text = response.body.decode("utf-8", "replace").strip()
    return "", text[:300]


def explain_status(response: Response, what: str, url: str, base: str, auth_mode: str) -> FlyteAdminError:
    """An HTTP error reply of FlyteAdmin as a message saying what to fix."""
    code_name, message = _status_message(response)
    status = response.status
    said = f"{status}{' ' + code_name if code_name else ''}{': ' + message if message else ''}"
    if 300 <= status < 400:
        target = response.headers.get("location", "another URL")
        return FlyteAdminError(f"FlyteAdmin at {base} redirected {what} to {target} ({status}): set url to the address "
                               "FlyteAdmin answers on (scheme, host and port, no path).", status)
    if status == 401:
        if auth_mode == "none":
            return FlyteAdminError(f"FlyteAdmin at {base} requires authentication for {what} ({said}). Set auth to auto or "
                                   "client_credentials and give client_id and client_secret.", status, detail=message)
        return FlyteAdminError(f"FlyteAdmin at {base} refused the access token for {what} ({said}). Check that client_id and "
                               "client_secret belong to a client FlyteAdmin trusts, that the token carries the scope 'all' "
                               "(scopes) and an audience FlyteAdmin allows (audience, FlyteAdmin's allowedAudience).",
                               status, detail=message)
    if status == 403:
        return FlyteAdminError(f"FlyteAdmin at {base} denied {what} ({said}): the client's credentials are valid but lack "
                               "permission; check its scopes and FlyteAdmin's authorization settings.", status, detail=message)
    if status == 400:
        field = rejected_field(message)
        where = f" (field: {field})" if field else ""
        return FlyteAdminError(f"FlyteAdmin rejected {what}{where}: {message or said}", status, field=field, detail=message)
    if status == 404 and not code_name:
        return FlyteAdminError(f"{url} is not found ({said}): {base} does not look like FlyteAdmin's HTTP endpoint. Set url to "
                               "FlyteAdmin's address, e.g. http://flyteadmin.flyte-system.svc.cluster.local or a port-forward.", status)
    if status == 409:
        return FlyteAdminError(f"FlyteAdmin refused {what} because it already exists ({said}); another client may have "
                               "created it meanwhile: run the task again.", status, detail=message)
    if status in (502, 503, 504):
        return FlyteAdminError(f"FlyteAdmin at {base} is unavailable for {what} ({said}): check that its pods are ready and "
                               "that it reaches its database.", status, detail=message)
    return FlyteAdminError(f"FlyteAdmin failed {what} ({said}).", status, detail=message)


def explain_transport(error: TransportError, url: str, option: str, validate_certs: bool) -> FlyteAdminError:
    reason = str(error)
    if error.kind == "tls":
        hint = ("give the CA that signed its certificate as ca_path" if validate_certs else "check the scheme (http or https)")
        return FlyteAdminError(f"TLS failed with {url}: {reason}. {hint[0].upper() + hint[1:]}.")
    if error.kind == "timeout":
        return FlyteAdminError(f"{url} did not answer in time ({reason}): check {option}, that the server is up, or raise timeout.")
    return FlyteAdminError(f"Cannot connect to {url}: {reason}. Check {option} (scheme, host and port) and that the server "
                           "is up and reachable from where the task runs.")


# ---------------------------------------------------------------------------------------------------
# The client

class FlyteAdmin:
    """FlyteAdmin's project API over HTTP, authenticated as configured or as discovered.

    requests counts every HTTP request sent (discovery, token and API), for the module's result.
    """

    def __init__(self, url: str, auth: str = "auto", client_id: str | None = None, client_secret: str | None = None,
                 token_url: str | None = None, scopes: list[str] | None = None, audience: str | None = None,
                 validate_certs: bool = True, ca_path: str | None = None, timeout: float = 30,
                 transport=None, clock=time.monotonic):
        self.base = url.rstrip("/")
        self.auth = auth
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_url = token_url
        self.scopes = scopes
        self.audience = audience
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.transport = transport or urls_transport
        self.clock = clock
        self.requests = 0
        self.warnings: list[str] = []
        self.auth_mode: str | None = None  # none or client_credentials, once discover() ran
        self.token_auth_methods: list[str] = []
        self._token: str | None = None
        self._token_expiry: float | None = None

    # -- transport --------------------------------------------------------------------------------
    def _send(self, method: str, url: str, headers: dict, body: bytes | None, option: str) -> Response:
        self.requests += 1
        try:
            return self.transport(method, url, headers, body, self.timeout, self.validate_certs, self.ca_path)
        except TransportError as error:
            raise explain_transport(error, url, option, self.validate_certs) from error

    def _get_json(self, path: str) -> tuple[Response, object]:
        url = self.base + path
        response = self._send("GET", url, {"Accept": "application/json"}, None, "url")
        try:
            return response, response.json() if response.status == 200 else None
        except ValueError:
            return response, None

    # -- authentication ---------------------------------------------------------------------------
    def discover(self) -> str:
        """Decide how to authenticate: none, or client_credentials with a token endpoint, scopes and audience."""
        if self.auth_mode:
            return self.auth_mode
        if self.auth == "none":
            self.auth_mode = "none"
            return self.auth_mode
        if not self.token_url or self.auth == "auto":
            response, metadata = self._get_json(OAUTH2_METADATA)
            if self.auth == "auto" and response.status in (404, 501):
                # 501: the gateway's answer for a gRPC service FlyteAdmin did not register (auth is off).
                self.auth_mode = "none"
                return self.auth_mode
            if response.status != 200 or not isinstance(metadata, dict):
                if response.status == 200:
                    raise FlyteAdminError(f"{self.base}{OAUTH2_METADATA} did not answer with OAuth2 metadata (JSON): check url.")
                if self.auth == "client_credentials" and response.status in (404, 501):
                    raise FlyteAdminError(f"FlyteAdmin at {self.base} serves no OAuth2 metadata ({response.status}): its "
                                          "authentication looks off. Set auth to none or auto, or give token_url.", response.status)
                if response.status in (401, 403):
                    raise FlyteAdminError(f"{self.base}{OAUTH2_METADATA} answered {response.status}, though FlyteAdmin serves "
                                          "its OAuth2 metadata to anyone: something in front of it refuses the request. Check "
                                          "url, or set auth to client_credentials and give token_url.", response.status)
                raise explain_status(response, "the OAuth2 metadata request", self.base + OAUTH2_METADATA, self.base, "none")
            token_endpoint = metadata.get("token_endpoint") or metadata.get("tokenEndpoint")
            self.token_auth_methods = list(metadata.get("token_endpoint_auth_methods_supported")
                                           or metadata.get("tokenEndpointAuthMethodsSupported") or [])
            if not self.token_url:
                if not token_endpoint:
                    raise FlyteAdminError(f"FlyteAdmin's OAuth2 metadata at {self.base}{OAUTH2_METADATA} has no token_endpoint: "
                                          "give token_url.")
                self.token_url = token_endpoint
        if not self.client_id or not self.client_secret:
            raise FlyteAdminError(f"FlyteAdmin at {self.base} has authentication on (token endpoint {self.token_url}): give "
                                  "client_id and client_secret of a confidential OAuth2 client allowed the client_credentials "
                                  "grant, or set auth to none if FlyteAdmin should be reached without a token.")
        if self.scopes is None or self.audience is None:
            self._read_client_config()
        self.auth_mode = "client_credentials"
        return self.auth_mode

    def _read_client_config(self):
        response, config = self._get_json(CLIENT_CONFIG)
        if response.status != 200 or not isinstance(config, dict):
            self.warnings.append(f"FlyteAdmin's client config {self.base}{CLIENT_CONFIG} answered {response.status}: the token "
                                 "is requested without scopes or audience; set scopes and audience if FlyteAdmin needs them.")
            self.scopes = self.scopes or []
            return
        if self.scopes is None:
            self.scopes = [str(scope) for scope in (config.get("scopes") or [])]
        if self.audience is None:
            self.audience = config.get("audience") or None

    def _fetch_token(self) -> str:
        now = self.clock()
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        if self.audience:
            form["audience"] = self.audience
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        methods = self.token_auth_methods
        if methods and "client_secret_basic" not in methods and "client_secret_post" in methods:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        else:
            # RFC 6749 section 2.3.1: both parts form-urlencoded, then HTTP Basic.
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        response = self._send("POST", self.token_url, headers, urlencode(form).encode("ascii"), "token_url")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status != 200 or not isinstance(payload, dict) or not payload.get("access_token"):
            raise self._explain_token_failure(response, payload)
        token_type = str(payload.get("token_type") or "bearer")
        if token_type.lower() != "bearer":
            raise FlyteAdminError(f"The token endpoint {self.token_url} issued a {token_type!r} token; FlyteAdmin takes bearer tokens.")
        self._token = payload["access_token"]
        expires_in = payload.get("expires_in")
        try:
            expires_in = float(expires_in)
        except (TypeError, ValueError):
            expires_in = None
        self._token_expiry = None if expires_in is None else now + max(expires_in - TOKEN_EXPIRY_MARGIN, expires_in / 2)
        return self._token

    def _explain_token_failure(self, response: Response, payload) -> FlyteAdminError:
        where = f"The token endpoint {self.token_url}"
        if isinstance(payload, dict) and payload.get("error"):
            error = str(payload["error"])
            said = error + (f" ({payload['error_description']})" if payload.get("error_description") else "")
            hints = {
                "invalid_client": f"check client_id ({self.client_id}) and client_secret",
                "unauthorized_client": "allow this client the client_credentials grant at the identity provider",
                "invalid_scope": f"check scopes ({' '.join(self.scopes or []) or 'none sent'})",
                "invalid_grant": "check the client's grant settings at the identity provider",
                "unsupported_grant_type": "enable the client_credentials grant at the identity provider",
                "invalid_target": f"check audience ({self.audience or 'none sent'})",
            }
            hint = hints.get(error, "check client_id, client_secret, scopes and audience")
            return FlyteAdminError(f"{where} refused the client credentials: {said}; {hint}.", response.status, detail=said)
        if response.status in (401, 403):
            return FlyteAdminError(f"{where} refused the client credentials ({response.status}): check client_id and client_secret.",
                                   response.status)
        if response.status == 200:
            return FlyteAdminError(f"{where} answered without an access_token: check token_url.", response.status)
        text = response.body.decode("utf-8", "replace").strip()[:300]
        return FlyteAdminError(f"{where} failed ({response.status}{': ' + text if text else ''}): check token_url.", response.status)

    def access_token(self) -> str:
        """The cached token while it is valid, else a new one."""
        if self._token and (self._token_expiry is None or self.clock() < self._token_expiry):
            return self._token
        return self._fetch_token()

    # -- API --------------------------------------------------------------------------------------
    def call(self, method: str, path: str, query: dict | None = None, body=None, what: str = "the request"):
        """One AdminService call; the reply's JSON, or FlyteAdminError. A refused cached token is renewed once."""
        self.discover()
        url = self.base + path + ("?" + urlencode(query) if query else "")
        payload = None if body is None else json.dumps(body, sort_keys=True).encode("utf-8")
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            fresh = False
            if self.auth_mode == "client_credentials":
                fresh = not self._token or (self._token_expiry is not None and self.clock() >= self._token_expiry)
                bearer = "Bearer " + self.access_token()
                # FlyteAdmin reads the standard header; flyte-authorization is its default custom one, which
                # also gets through proxies that take Authorization for themselves.
                headers["Authorization"] = bearer
                headers["flyte-authorization"] = bearer
            response = self._send(method, url, headers, payload, "url")
            if response.status == 401 and self.auth_mode == "client_credentials" and not fresh and attempt == 1:
                self._token = None
                continue
            break
        if response.status != 200:
            raise explain_status(response, what, url, self.base, self.auth_mode)
        try:
            return response.json() if response.body.strip() else {}
        except ValueError as error:
            text = response.body.decode("utf-8", "replace").strip()[:200]
            raise FlyteAdminError(f"{url} did not answer like FlyteAdmin (no JSON: {text!r}): check url.") from error

    def list_projects(self, ids: list[str]) -> dict:
        """The projects with these ids that exist, in any state, by id: one ListProjects request per chunk of ids."""
        found = {}
        for chunk in id_chunks(ids):
            token, seen = "", set()
            while True:
                # One more than the chunk: FlyteAdmin sets a next-page token only for a full page.
                query = {"limit": len(chunk) + 1, "filters": ids_filter(chunk)}
                if token:
                    query["token"] = token
                reply = self.call("GET", API_PROJECTS, query=query, what="ListProjects")
                if not isinstance(reply, dict):
                    raise FlyteAdminError(f"{self.base}{API_PROJECTS} did not answer with a project list: check url.")
                projects = reply.get("projects") or []
                for raw in projects:
                    if isinstance(raw, dict) and raw.get("id") in chunk:
                        found[raw["id"]] = project_from_api(raw)
                token = reply.get("token") or ""
                if not token or not projects or token in seen:
                    break
                seen.add(token)
        return found

    def register_project(self, after: dict):
        self.call("POST", API_PROJECTS, body=register_body(after), what=f"RegisterProject of project {after['id']!r}")

    def update_project(self, after: dict, labels_managed: bool):
        self.call("PUT", f"{API_PROJECTS}/{quote(after['id'], safe='')}", body=update_body(after, labels_managed),
                  what=f"UpdateProject of project {after['id']!r}")
