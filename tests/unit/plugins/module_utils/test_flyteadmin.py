"""module_utils/flyteadmin: planning, request construction, discovery, tokens and errors.

No FlyteAdmin runs here: every reply is constructed in the test and handed to the client through its
transport seam, which also records each request the client sends.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import flyteadmin
from ansible_collections.homelab.flyte.plugins.module_utils.flyteadmin import (
    FlyteAdmin,
    FlyteAdminError,
    Response,
    TransportError,
    desired_project,
    id_chunks,
    ids_filter,
    plan_project,
    project_from_api,
    project_problems,
    register_body,
    rejected_field,
    update_body,
)

BASE = "http://flyteadmin.test"
TOKEN_URL = "https://idp.test/application/o/token/"
METADATA = {"issuer": "https://idp.test/application/o/flyte/", "token_endpoint": TOKEN_URL,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]}
CLIENT_CONFIG = {"client_id": "flytectl", "redirect_uri": "http://localhost:53593/callback", "scopes": ["all", "offline"],
                 "authorization_metadata_key": "flyte-authorization", "service_http_endpoint": "", "audience": "flyte-admin"}


def reply(status: int, payload=None, headers=None) -> Response:
    body = payload if isinstance(payload, bytes) else (b"" if payload is None else json.dumps(payload).encode())
    return Response(status, body, headers)


def status(code: int, grpc_code: int, message: str) -> Response:
    """A grpc-gateway error reply: a google.rpc.Status in JSON."""
    return reply(code, {"code": grpc_code, "message": message, "details": []})


def api_project(pid, name=None, description="", labels=None, state="ACTIVE") -> dict:
    """A Project as FlyteAdmin's gateway writes it: proto names, every field, enum names, the system domains."""
    return {"id": pid, "name": name or pid, "description": description,
            "labels": None if labels is None else {"values": labels}, "state": state, "org": "",
            "domains": [{"id": "development", "name": "development"}, {"id": "production", "name": "production"}]}


class Recorder:
    """The transport seam: answers each request with the first matching route and records it.

    A route is (method, path) -> a Response, a list of Responses (one per call, in order), an exception,
    or a callable taking the recorded request.
    """

    def __init__(self, routes: dict):
        self.routes = {key: list(value) if isinstance(value, list) else value for key, value in routes.items()}
        self.sent = []

    def __call__(self, method, url, headers, body, timeout, validate_certs, ca_path):
        parts = urlsplit(url)
        request = {"method": method, "url": url, "path": parts.path, "query": parse_qs(parts.query), "headers": dict(headers),
                   "body": body, "timeout": timeout, "validate_certs": validate_certs, "ca_path": ca_path}
        self.sent.append(request)
        key = (method, parts.path if parts.netloc == urlsplit(BASE).netloc else url)
        if key not in self.routes:
            raise AssertionError(f"unexpected request {method} {url}")
        answer = self.routes[key]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    def calls(self, method=None, path=None):
        return [r for r in self.sent if (method is None or r["method"] == method) and (path is None or r["path"] == path)]


def listing(projects, token=""):
    return reply(200, {"projects": projects, "token": token})


def token_reply(token="tok-1", expires_in=3600):
    return reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in})


def auth_routes(extra=None):
    routes = {("GET", "/.well-known/oauth-authorization-server"): reply(200, METADATA),
              ("GET", "/config/v1/flyte_client"): reply(200, CLIENT_CONFIG),
              ("POST", TOKEN_URL): token_reply()}
    routes.update(extra or {})
    return routes


def client(recorder, **options) -> FlyteAdmin:
    options.setdefault("auth", "none")
    return FlyteAdmin(BASE, transport=recorder, **options)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


# -- planning ------------------------------------------------------------------------------------

def test_missing_project_is_created_with_its_id_as_default_name():
    plan = plan_project(desired_project({"id": "ml"}), None)

    assert plan["action"] == "create"
    assert plan["before"] is None
    assert plan["after"] == {"id": "ml", "name": "ml", "description": "", "labels": {}, "state": "ACTIVE"}


def test_project_as_asked_is_left_alone():
    current = project_from_api(api_project("ml", "ML", "d", {"team": "a"}))
    plan = plan_project(desired_project({"id": "ml", "name": "ML", "description": "d", "labels": {"team": "a"}}), current)

    assert plan["action"] == "none" and plan["changes"] == []


def test_fields_left_out_are_not_compared():
    current = project_from_api(api_project("ml", "ML", "d", {"team": "a"}))
    plan = plan_project(desired_project({"id": "ml"}), current)

    assert plan["action"] == "none"
    assert plan["after"] == current


def test_each_differing_field_is_a_change():
    current = project_from_api(api_project("ml", "ML", "old", {"team": "a"}, state="ARCHIVED"))
    plan = plan_project(desired_project({"id": "ml", "name": "ML2", "description": "new", "labels": {"team": "b"}}), current)

    assert plan["action"] == "update"
    assert plan["changes"] == ["name", "description", "labels", "state"]
    assert plan["after"] == {"id": "ml", "name": "ML2", "description": "new", "labels": {"team": "b"}, "state": "ACTIVE"}
    assert plan["before"]["state"] == "ARCHIVED"


def test_archiving_changes_only_the_state():
    current = project_from_api(api_project("ml", "ML"))
    plan = plan_project(desired_project({"id": "ml"}, default_state="archived"), current)

    assert plan["changes"] == ["state"] and plan["after"]["state"] == "ARCHIVED"


def test_item_state_wins_over_the_default_state():
    assert desired_project({"id": "a", "state": "present"}, default_state="archived")["state"] == "ACTIVE"
    assert desired_project({"id": "a", "state": None}, default_state="archived")["state"] == "ARCHIVED"


def test_empty_labels_remove_all_labels():
    current = project_from_api(api_project("ml", labels={"team": "a"}))
    plan = plan_project(desired_project({"id": "ml", "labels": {}}), current)

    assert plan["changes"] == ["labels"] and plan["after"]["labels"] == {}
    assert update_body(plan["after"], plan["labels_managed"])["labels"] == {"values": {}}


def test_empty_description_cannot_clear_one_and_warns_instead_of_changing():
    current = project_from_api(api_project("ml", description="keep me"))
    plan = plan_project(desired_project({"id": "ml", "description": ""}), current)

    assert plan["action"] == "none"
    assert plan["after"]["description"] == "keep me"
    assert "cannot clear a description" in plan["warnings"][0]


@pytest.mark.parametrize("state", ["SYSTEM_GENERATED", "SYSTEM_ARCHIVED"])
def test_system_states_are_changed_to_the_state_asked_for(state):
    current = project_from_api(api_project("ml", state=state))

    assert plan_project(desired_project({"id": "ml"}), current)["changes"] == ["state"]


# -- the API's JSON ------------------------------------------------------------------------------

def test_project_reply_with_null_labels_and_proto_names():
    assert project_from_api(api_project("ml", "ML")) == {"id": "ml", "name": "ML", "description": "", "labels": {},
                                                         "state": "ACTIVE"}


@pytest.mark.parametrize("raw, expected", [(None, "ACTIVE"), ("", "ACTIVE"), (0, "ACTIVE"), (1, "ARCHIVED"), (2, "SYSTEM_GENERATED"),
                                           (3, "SYSTEM_ARCHIVED"), ("ARCHIVED", "ARCHIVED"), (9, "9")])
def test_state_in_name_number_or_left_out(raw, expected):
    project = {"id": "ml", "name": "ML"}
    if raw is not None:
        project["state"] = raw
    assert project_from_api(project)["state"] == expected


def test_register_body_is_a_project_register_request_without_domains():
    body = register_body({"id": "ml", "name": "ML", "description": "d", "labels": {"team": "a"}, "state": "ARCHIVED"})

    assert body == {"project": {"id": "ml", "name": "ML", "description": "d", "labels": {"values": {"team": "a"}}, "state": "ARCHIVED"}}


def test_register_body_leaves_out_empty_description_and_labels():
    assert register_body({"id": "ml", "name": "ml", "description": "", "labels": {}, "state": "ACTIVE"}) == {
        "project": {"id": "ml", "name": "ml", "state": "ACTIVE"}}


def test_update_body_always_carries_the_state_and_labels_only_when_managed():
    after = {"id": "ml", "name": "ML", "description": "d", "labels": {"team": "a"}, "state": "ACTIVE"}

    assert update_body(after, labels_managed=False) == {"id": "ml", "name": "ML", "description": "d", "state": "ACTIVE"}
    assert update_body(after, labels_managed=True)["labels"] == {"values": {"team": "a"}}


# -- input checks --------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, fragment", [
    ({"id": "ML"}, "DNS-1123 label"),
    ({"id": "a" * 64}, "DNS-1123 label"),
    ({"id": "-a"}, "DNS-1123 label"),
    ({"id": "ml", "name": ""}, "non-empty"),
    ({"id": "ml", "name": "é" * 33}, "64 bytes"),
    ({"id": "ml", "description": "x" * 301}, "300 bytes"),
    ({"id": "ml", "labels": {f"k{i}": "v" for i in range(17)}}, "at most 16"),
    ({"id": "ml", "labels": {"bad key": "v"}}, "label name"),
    ({"id": "ml", "labels": {"Example.com/team": "v"}}, "prefix"),
    ({"id": "ml", "labels": {"team": "#bar"}}, "label value"),
    ({"id": "ml", "labels": {"team": 5}}, "quote it"),
    ({"id": "ml", "labels": {"team": "x" * 64}}, "label value"),
])
def test_what_flyteadmin_would_reject_is_found_before_any_request(spec, fragment):
    problems = project_problems(spec)

    assert problems and fragment in " ".join(problems)


def test_valid_project_has_no_problems():
    assert project_problems({"id": "ml-2", "name": "ML", "description": "", "labels": {
        "example.com/team": "a_b.c", "empty": "", "x": "1"}}) == []


# -- ListProjects --------------------------------------------------------------------------------

def test_projects_are_listed_by_id_filter_in_one_request():
    recorder = Recorder({("GET", "/api/v1/projects"): listing([api_project("a"), api_project("b", state="ARCHIVED")])})

    found = client(recorder).list_projects(["a", "b", "c"])

    assert set(found) == {"a", "b"} and found["b"]["state"] == "ARCHIVED"
    [request] = recorder.sent
    assert request["query"] == {"limit": ["4"], "filters": ["value_in(identifier,a;b;c)"]}
    assert "%3B" in request["url"]  # a raw ';' in a query is refused by Go's URL parser
    assert request["headers"] == {"Accept": "application/json"}
    assert request["body"] is None


def test_ids_are_split_by_count_and_length():
    assert [len(chunk) for chunk in id_chunks([f"p{i}" for i in range(250)])] == [100, 100, 50]
    long_ids = [f"{i:02d}" + "x" * 61 for i in range(40)]
    chunks = id_chunks(long_ids)
    assert all(len(ids_filter(chunk)) < 2100 for chunk in chunks) and sum(chunks, []) == long_ids


def test_each_chunk_is_one_request():
    recorder = Recorder({("GET", "/api/v1/projects"): lambda request: listing([])})

    client(recorder).list_projects([f"p{i}" for i in range(250)])

    assert [r["query"]["limit"] for r in recorder.sent] == [["101"], ["101"], ["51"]]


def test_next_page_token_is_followed():
    recorder = Recorder({("GET", "/api/v1/projects"): [listing([api_project("a")], token="1"), listing([api_project("b")])]})

    found = client(recorder).list_projects(["a", "b"])

    assert set(found) == {"a", "b"}
    assert "token" not in recorder.sent[0]["query"] and recorder.sent[1]["query"]["token"] == ["1"]


def test_repeated_token_or_empty_page_ends_the_listing():
    recorder = Recorder({("GET", "/api/v1/projects"): [listing([api_project("a")], token="1"), listing([api_project("a")], token="1")]})
    client(recorder).list_projects(["a"])
    assert len(recorder.sent) == 2

    recorder = Recorder({("GET", "/api/v1/projects"): [listing([], token="0")]})
    client(recorder).list_projects(["a"])
    assert len(recorder.sent) == 1


def test_projects_not_asked_for_are_ignored():
    recorder = Recorder({("GET", "/api/v1/projects"): listing([api_project("a"), api_project("zzz")])})

    assert set(client(recorder).list_projects(["a"])) == {"a"}


# -- writes --------------------------------------------------------------------------------------

def test_register_is_a_post_of_json():
    recorder = Recorder({("POST", "/api/v1/projects"): reply(200, {})})
    after = {"id": "ml", "name": "ML", "description": "", "labels": {"team": "a"}, "state": "ACTIVE"}

    client(recorder).register_project(after)

    [request] = recorder.sent
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == register_body(after)


def test_update_is_a_put_to_the_project_path():
    recorder = Recorder({("PUT", "/api/v1/projects/ml"): reply(200, {})})
    after = {"id": "ml", "name": "ML", "description": "d", "labels": {}, "state": "ARCHIVED"}

    client(recorder).update_project(after, labels_managed=False)

    assert json.loads(recorder.sent[0]["body"]) == {"id": "ml", "name": "ML", "description": "d", "state": "ARCHIVED"}


# -- discovery and tokens ------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [status(501, 12, "unknown service flyteidl.service.AuthMetadataService"), reply(404, b"404 page not found\n")])
def test_auto_without_auth_metadata_sends_no_token(answer):
    recorder = Recorder({("GET", "/.well-known/oauth-authorization-server"): answer, ("GET", "/api/v1/projects"): listing([])})
    admin = client(recorder, auth="auto")

    admin.list_projects(["a"])

    assert admin.auth_mode == "none"
    assert [r["path"] for r in recorder.sent] == ["/.well-known/oauth-authorization-server", "/api/v1/projects"]
    assert "Authorization" not in recorder.sent[1]["headers"]


def test_auto_with_auth_metadata_takes_a_client_credentials_token():
    recorder = Recorder(auth_routes({("GET", "/api/v1/projects"): listing([])}))
    admin = client(recorder, auth="auto", client_id="flyte admin", client_secret="s3:cr+t")

    admin.list_projects(["a"])

    assert admin.auth_mode == "client_credentials"
    token_request = recorder.calls("POST")[0]
    assert token_request["url"] == TOKEN_URL
    assert parse_qs(token_request["body"].decode()) == {"grant_type": ["client_credentials"], "scope": ["all offline"],
                                                        "audience": ["flyte-admin"]}
    scheme, encoded = token_request["headers"]["Authorization"].split(" ", 1)
    assert scheme == "Basic"
    user, password = base64.b64decode(encoded).decode().split(":", 1)
    assert (unquote(user.replace("+", " ")), unquote(password.replace("+", " "))) == ("flyte admin", "s3:cr+t")
    api = recorder.calls("GET", "/api/v1/projects")[0]
    assert api["headers"]["Authorization"] == "Bearer tok-1"
    assert api["headers"]["flyte-authorization"] == "Bearer tok-1"
    assert admin.requests == 4


def test_metadata_in_camel_case_is_understood_too():
    metadata = {"issuer": "x", "tokenEndpoint": TOKEN_URL}
    recorder = Recorder(auth_routes({("GET", "/.well-known/oauth-authorization-server"): reply(200, metadata),
                                     ("GET", "/api/v1/projects"): listing([])}))

    client(recorder, auth="auto", client_id="c", client_secret="s").list_projects(["a"])

    assert recorder.calls("POST")[0]["url"] == TOKEN_URL


def test_client_secret_post_when_the_idp_takes_only_that():
    metadata = dict(METADATA, token_endpoint_auth_methods_supported=["client_secret_post"])
    recorder = Recorder(auth_routes({("GET", "/.well-known/oauth-authorization-server"): reply(200, metadata),
                                     ("GET", "/api/v1/projects"): listing([])}))

    client(recorder, auth="auto", client_id="c", client_secret="s").list_projects(["a"])

    token_request = recorder.calls("POST")[0]
    assert "Authorization" not in token_request["headers"]
    assert parse_qs(token_request["body"].decode())["client_secret"] == ["s"]


def test_given_scopes_and_audience_spare_the_client_config_request():
    recorder = Recorder(auth_routes({("GET", "/api/v1/projects"): listing([])}))

    client(recorder, auth="auto", client_id="c", client_secret="s", scopes=["all"], audience="").list_projects(["a"])

    assert not recorder.calls("GET", "/config/v1/flyte_client")
    assert parse_qs(recorder.calls("POST")[0]["body"].decode()) == {"grant_type": ["client_credentials"], "scope": ["all"]}


def test_client_credentials_with_token_url_makes_no_discovery_request():
    recorder = Recorder({("POST", TOKEN_URL): token_reply(), ("GET", "/api/v1/projects"): listing([])})
    admin = client(recorder, auth="client_credentials", token_url=TOKEN_URL, client_id="c", client_secret="s",
                   scopes=["all"], audience="")

    admin.list_projects(["a"])

    assert [r["method"] for r in recorder.sent] == ["POST", "GET"] and admin.requests == 2


def test_client_config_that_fails_is_a_warning_and_no_scope():
    recorder = Recorder(auth_routes({("GET", "/config/v1/flyte_client"): reply(404, b"not found"),
                                     ("GET", "/api/v1/projects"): listing([])}))
    admin = client(recorder, auth="auto", client_id="c", client_secret="s")

    admin.list_projects(["a"])

    assert "scope" not in parse_qs(recorder.calls("POST")[0]["body"].decode())
    assert "flyte_client" in admin.warnings[0]


def test_auth_on_without_credentials_says_what_to_give():
    recorder = Recorder(auth_routes())

    with pytest.raises(FlyteAdminError, match="give client_id and client_secret"):
        client(recorder, auth="auto").list_projects(["a"])
    assert len(recorder.sent) == 1


def test_client_credentials_against_flyteadmin_without_auth():
    recorder = Recorder({("GET", "/.well-known/oauth-authorization-server"): status(501, 12, "unknown service")})

    with pytest.raises(FlyteAdminError, match="authentication looks off"):
        client(recorder, auth="client_credentials", client_id="c", client_secret="s").list_projects(["a"])


def test_metadata_refused_by_something_in_front_of_flyteadmin():
    recorder = Recorder({("GET", "/.well-known/oauth-authorization-server"): reply(401, b"Unauthorized")})

    with pytest.raises(FlyteAdminError, match="something in front of it refuses the request"):
        client(recorder, auth="auto").list_projects(["a"])


def test_metadata_that_is_not_json_says_check_url():
    recorder = Recorder({("GET", "/.well-known/oauth-authorization-server"): reply(200, b"<html>console</html>")})

    with pytest.raises(FlyteAdminError, match="did not answer with OAuth2 metadata"):
        client(recorder, auth="auto").list_projects(["a"])


def test_token_is_cached_across_calls_and_renewed_when_it_expires():
    clock = Clock()
    recorder = Recorder(auth_routes({("POST", TOKEN_URL): [token_reply("tok-1", 600), token_reply("tok-2", 600)],
                                     ("GET", "/api/v1/projects"): lambda request: listing([]),
                                     ("POST", "/api/v1/projects"): lambda request: reply(200, {})}))
    admin = FlyteAdmin(BASE, auth="auto", client_id="c", client_secret="s", transport=recorder, clock=clock)

    admin.list_projects(["a"])
    for attempt in range(3):
        admin.register_project({"id": "a", "name": "a", "description": "", "labels": {}, "state": "ACTIVE"})
    assert len([r for r in recorder.sent if r["url"] == TOKEN_URL]) == 1

    clock.now += 600 - 30  # the margin before the announced expiry
    admin.register_project({"id": "a", "name": "a", "description": "", "labels": {}, "state": "ACTIVE"})

    assert len([r for r in recorder.sent if r["url"] == TOKEN_URL]) == 2
    assert recorder.sent[-1]["headers"]["Authorization"] == "Bearer tok-2"


def test_refused_cached_token_is_renewed_once():
    recorder = Recorder(auth_routes({("POST", TOKEN_URL): [token_reply("tok-1"), token_reply("tok-2")],
                                     ("GET", "/api/v1/projects"): [listing([]), status(401, 16, "token expired"), listing([])]}))
    admin = client(recorder, auth="auto", client_id="c", client_secret="s")

    admin.list_projects(["a"])
    admin.list_projects(["b"])

    api = recorder.calls("GET", "/api/v1/projects")
    assert [r["headers"]["Authorization"] for r in api] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_refused_fresh_token_names_credentials_scope_and_audience():
    recorder = Recorder(auth_routes({("GET", "/api/v1/projects"): status(401, 16, "authenticated user doesn't have required scope")}))

    with pytest.raises(FlyteAdminError) as raised:
        client(recorder, auth="auto", client_id="c", client_secret="s").list_projects(["a"])

    message = str(raised.value)
    assert raised.value.status == 401
    assert "required scope" in message and "'all'" in message and "audience" in message
    assert len(recorder.calls("GET", "/api/v1/projects")) == 1


@pytest.mark.parametrize("error, fragment", [
    ("invalid_client", "check client_id (c) and client_secret"),
    ("invalid_scope", "check scopes (all offline)"),
    ("unauthorized_client", "client_credentials grant"),
])
def test_token_endpoint_errors_say_what_to_fix(error, fragment):
    code = 401 if error == "invalid_client" else 400
    recorder = Recorder(auth_routes({("POST", TOKEN_URL): reply(code, {"error": error, "error_description": "nope"})}))

    with pytest.raises(FlyteAdminError) as raised:
        client(recorder, auth="auto", client_id="c", client_secret="s").list_projects(["a"])

    assert fragment in str(raised.value) and "nope" in str(raised.value)


def test_token_without_expiry_is_kept_for_the_run():
    recorder = Recorder(auth_routes({("POST", TOKEN_URL): reply(200, {"access_token": "t", "token_type": "bearer"}),
                                     ("GET", "/api/v1/projects"): lambda request: listing([])}))
    admin = client(recorder, auth="auto", client_id="c", client_secret="s")

    admin.list_projects(["a"])
    admin.list_projects(["b"])

    assert len([r for r in recorder.sent if r["url"] == TOKEN_URL]) == 1


def test_auth_none_makes_no_discovery_request():
    recorder = Recorder({("GET", "/api/v1/projects"): listing([])})
    admin = client(recorder, auth="none")

    admin.list_projects(["a"])

    assert admin.requests == 1 and admin.auth_mode == "none"


# -- error translation ---------------------------------------------------------------------------

@pytest.mark.parametrize("message, field", [
    ("invalid label value [#bar]: [a valid label must be an empty string ...]", "labels"),
    ("invalid label key [bad key]: [...]", "labels"),
    ("labels map cannot exceed 16 entries", "labels"),
    ("project_description cannot exceed 300 characters", "description"),
    ("project_name cannot exceed 64 characters", "name"),
    ("missing project_name", "name"),
    ("invalid project id [ML]: [a lowercase RFC 1123 label must consist of ...]", "id"),
    ("Domains are currently only set system wide. Please retry without domains included in your request.", "domains"),
    ("invalid pagination token x for ListProjects", "token"),
    ("something else", None),
])
def test_rejected_field_is_named(message, field):
    assert rejected_field(message) == field


def test_bad_request_names_the_field_and_the_project():
    recorder = Recorder({("POST", "/api/v1/projects"): status(400, 3, "invalid label value [#bar]: [a valid label ...]")})

    with pytest.raises(FlyteAdminError) as raised:
        client(recorder).register_project({"id": "ml", "name": "ml", "description": "", "labels": {"a": "#bar"}, "state": "ACTIVE"})

    assert raised.value.field == "labels" and raised.value.status == 400
    assert "RegisterProject of project 'ml'" in str(raised.value) and "(field: labels)" in str(raised.value)


def test_401_without_auth_says_to_turn_auth_on():
    recorder = Recorder({("GET", "/api/v1/projects"): status(401, 16, "token parse error")})

    with pytest.raises(FlyteAdminError, match="requires authentication.*client_id and client_secret"):
        client(recorder, auth="none").list_projects(["a"])


def test_403_names_permissions():
    recorder = Recorder({("GET", "/api/v1/projects"): status(403, 7, "denied")})

    with pytest.raises(FlyteAdminError, match="lack permission"):
        client(recorder).list_projects(["a"])


def test_404_from_something_else_than_flyteadmin_names_the_url():
    recorder = Recorder({("GET", "/api/v1/projects"): reply(404, b"<html>nginx</html>")})

    with pytest.raises(FlyteAdminError, match="does not look like FlyteAdmin's HTTP endpoint"):
        client(recorder).list_projects(["a"])


def test_conflict_on_register_says_to_run_again():
    recorder = Recorder({("POST", "/api/v1/projects"): status(409, 6, "value with matching already exists (duplicate key)")})

    with pytest.raises(FlyteAdminError, match="already exists"):
        client(recorder).register_project({"id": "ml", "name": "ml", "description": "", "labels": {}, "state": "ACTIVE"})


def test_redirect_names_its_target():
    recorder = Recorder({("GET", "/api/v1/projects"): reply(308, b"", {"Location": "https://flyte.test/api/v1/projects"})})

    with pytest.raises(FlyteAdminError, match="redirected ListProjects to https://flyte.test/api/v1/projects"):
        client(recorder).list_projects(["a"])


def test_reply_that_is_not_json_says_check_url():
    recorder = Recorder({("GET", "/api/v1/projects"): reply(200, b"<html>login</html>")})

    with pytest.raises(FlyteAdminError, match="did not answer like FlyteAdmin"):
        client(recorder).list_projects(["a"])


@pytest.mark.parametrize("error, fragment", [
    (TransportError("[Errno 111] Connection refused"), "Cannot connect to http://flyteadmin.test/api/v1/projects"),
    (TransportError("certificate verify failed", "tls"), "ca_path"),
    (TransportError("timed out", "timeout"), "raise timeout"),
])
def test_no_answer_names_the_url_option(error, fragment):
    recorder = Recorder({("GET", "/api/v1/projects"): error})

    with pytest.raises(FlyteAdminError) as raised:
        client(recorder).list_projects(["a"])

    assert fragment in str(raised.value)
    if error.kind == "connect":
        assert "Check url" in str(raised.value)


def test_unreachable_token_endpoint_names_token_url():
    recorder = Recorder(auth_routes({("POST", TOKEN_URL): TransportError("Name or service not known")}))

    with pytest.raises(FlyteAdminError, match=f"Cannot connect to {TOKEN_URL}.*Check token_url"):
        client(recorder, auth="auto", client_id="c", client_secret="s").list_projects(["a"])


# -- the real transport, with open_url replaced --------------------------------------------------

def test_urls_transport_sends_no_redirects_nor_netrc(monkeypatch):
    seen = {}

    class Reply:
        status = 200
        headers = {"Content-Type": "application/json"}

        def read(self):
            return b"{}"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_open_url(url, **kwargs):
        seen.update(kwargs, url=url)
        return Reply()

    monkeypatch.setattr(flyteadmin, "open_url", fake_open_url)
    response = flyteadmin.urls_transport("GET", BASE + "/x", {"Accept": "application/json"}, None, 7, False, "/ca.pem")

    assert response.status == 200 and response.json() == {}
    assert seen["follow_redirects"] == "none" and seen["use_netrc"] is False
    assert (seen["timeout"], seen["validate_certs"], seen["ca_path"], seen["method"]) == (7, False, "/ca.pem", "GET")


def test_urls_transport_returns_error_statuses(monkeypatch):
    def fake_open_url(url, **kwargs):
        import io
        raise HTTPError(url, 400, "Bad Request", {"Content-Type": "application/json"}, io.BytesIO(b'{"code": 3, "message": "m"}'))

    monkeypatch.setattr(flyteadmin, "open_url", fake_open_url)
    response = flyteadmin.urls_transport("POST", BASE, {}, b"{}", 7, True, None)

    assert response.status == 400 and response.json()["message"] == "m"


@pytest.mark.parametrize("raised, kind", [
    (URLError(ConnectionRefusedError(111, "Connection refused")), "connect"),
    (URLError(socket.gaierror(-2, "Name or service not known")), "connect"),
    (URLError(ssl.SSLCertVerificationError("certificate verify failed")), "tls"),
    (URLError(socket.timeout("timed out")), "timeout"),
    (socket.timeout("timed out"), "timeout"),
    (ConnectionResetError(104, "Connection reset by peer"), "connect"),
])
def test_urls_transport_classifies_failures(monkeypatch, raised, kind):
    def fake_open_url(url, **kwargs):
        raise raised

    monkeypatch.setattr(flyteadmin, "open_url", fake_open_url)

    with pytest.raises(TransportError) as error:
        flyteadmin.urls_transport("GET", BASE, {}, None, 7, True, None)
    assert error.value.kind == kind
