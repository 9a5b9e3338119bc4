"""The flyte_project module end to end, over replies constructed in the test.

No FlyteAdmin runs here: module_utils/flyteadmin's transport function is replaced by a recorder that
answers each request with a reply built in the test, so the tests see every request the module sends.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.flyte.tests.unit.plugins.modules.module_exits import ModuleExit as ExitJson, ModuleFail as FailJson

from ansible_collections.homelab.flyte.plugins.module_utils import flyteadmin
from ansible_collections.homelab.flyte.plugins.module_utils.flyteadmin import Response
from ansible_collections.homelab.flyte.plugins.modules import flyte_project

BASE = "http://flyteadmin.test"
TOKEN_URL = "https://idp.test/token"


def reply(status, payload=None, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps({} if payload is None else payload).encode()
    return Response(status, body, headers)


def api_project(pid, name=None, description="", labels=None, state="ACTIVE"):
    return {"id": pid, "name": name or pid, "description": description, "org": "", "state": state,
            "labels": None if labels is None else {"values": labels}, "domains": [{"id": "development", "name": "development"}]}


class Recorder:
    """The transport seam: (method, path or full URL) -> a reply, a list of replies, or a callable."""

    def __init__(self, routes):
        self.routes = {key: list(value) if isinstance(value, list) else value for key, value in routes.items()}
        self.sent = []

    def __call__(self, method, url, headers, body, timeout, validate_certs, ca_path):
        parts = urlsplit(url)
        request = {"method": method, "url": url, "path": parts.path, "query": parse_qs(parts.query), "headers": headers,
                   "body": None if body is None else (json.loads(body) if headers.get("Content-Type") == "application/json" else body)}
        self.sent.append(request)
        key = (method, parts.path if url.startswith(BASE) else url)
        answer = self.routes.get(key)
        if answer is None:
            raise AssertionError(f"unexpected request {method} {url}")
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    def writes(self):
        return [(r["method"], r["path"], r["body"]) for r in self.sent if r["method"] in ("POST", "PUT") and r["url"].startswith(BASE)]


def run(monkeypatch, args, routes, check_mode=False, diff=False):
    recorder = Recorder(routes)
    monkeypatch.setattr(flyteadmin, "urls_transport", recorder)
    args = dict(args)
    args.setdefault("url", BASE)
    args.setdefault("auth", "none")
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as outcome:
            flyte_project.main()
    return outcome.value.args[0], recorder


def run_result(monkeypatch, args, routes, **options):
    return run(monkeypatch, args, routes, **options)[0]


def listing(*projects):
    return reply(200, {"projects": list(projects), "token": ""})


# -- one project ---------------------------------------------------------------------------------

def test_missing_project_is_registered(monkeypatch):
    result, recorder = run(monkeypatch, {"id": "ml", "name": "ML", "labels": {"team": "research"}}, {
        ("GET", "/api/v1/projects"): listing(),
        ("POST", "/api/v1/projects"): reply(200, {}),
    })

    assert not result.get("failed") and result["changed"]
    assert result["created"] == ["ml"] and result["projects"][0]["action"] == "created"
    assert recorder.writes() == [("POST", "/api/v1/projects", {"project": {
        "id": "ml", "name": "ML", "labels": {"values": {"team": "research"}}, "state": "ACTIVE"}})]
    assert result["requests"] == 2 and result["auth"] == "none"


def test_project_as_asked_sends_no_write(monkeypatch):
    result, recorder = run(monkeypatch, {"id": "ml", "name": "ML", "description": "d"}, {
        ("GET", "/api/v1/projects"): listing(api_project("ml", "ML", "d", {"team": "x"})),
    })

    assert not result.get("failed") and not result["changed"]
    assert result["unchanged"] == ["ml"] and recorder.writes() == [] and result["requests"] == 1
    assert result["diff"] == {}


def test_archiving_puts_the_whole_project_with_its_state(monkeypatch):
    result, recorder = run(monkeypatch, {"id": "ml", "state": "archived"}, {
        ("GET", "/api/v1/projects"): listing(api_project("ml", "ML", "d", {"team": "x"})),
        ("PUT", "/api/v1/projects/ml"): reply(200, {}),
    })

    assert result["changed"] and result["updated"] == ["ml"]
    assert result["projects"][0]["changes"] == ["state"]
    # Labels are left out: FlyteAdmin keeps labels an update does not carry.
    assert recorder.writes() == [("PUT", "/api/v1/projects/ml", {"id": "ml", "name": "ML", "description": "d", "state": "ARCHIVED"})]


def test_archived_project_is_found_and_reactivated(monkeypatch):
    result, recorder = run(monkeypatch, {"id": "ml"}, {
        ("GET", "/api/v1/projects"): listing(api_project("ml", state="ARCHIVED")),
        ("PUT", "/api/v1/projects/ml"): reply(200, {}),
    })

    assert recorder.sent[0]["query"]["filters"] == ["value_in(identifier,ml)"]
    assert result["updated"] == ["ml"] and recorder.writes()[0][2]["state"] == "ACTIVE"


def test_new_archived_project_takes_one_request(monkeypatch):
    result, recorder = run(monkeypatch, {"id": "old", "state": "archived"}, {
        ("GET", "/api/v1/projects"): listing(),
        ("POST", "/api/v1/projects"): reply(200, {}),
    })

    assert recorder.writes() == [("POST", "/api/v1/projects", {"project": {"id": "old", "name": "old", "state": "ARCHIVED"}})]
    assert result["requests"] == 2


# -- check and diff ------------------------------------------------------------------------------

def test_check_mode_reports_changes_without_writing(monkeypatch):
    result, recorder = run(monkeypatch, {"projects": [{"id": "new"}, {"id": "ml", "description": "new"}, {"id": "same"}]}, {
        ("GET", "/api/v1/projects"): listing(api_project("ml", description="old"), api_project("same")),
    }, check_mode=True)

    assert not result.get("failed") and result["changed"]
    assert (result["created"], result["updated"], result["unchanged"]) == (["new"], ["ml"], ["same"])
    assert recorder.writes() == [] and [r["method"] for r in recorder.sent] == ["GET"]


def test_diff_shows_before_and_after_of_each_changed_project(monkeypatch):
    result = run_result(monkeypatch, {"projects": [{"id": "new", "name": "New"}, {"id": "ml", "labels": {"a": "b"}}, {"id": "same"}]}, {
        ("GET", "/api/v1/projects"): listing(api_project("ml", "ML"), api_project("same")),
    }, check_mode=True, diff=True)

    assert result["diff"] == [
        {"before": {}, "after": {"id": "new", "name": "New", "description": "", "labels": {}, "state": "ACTIVE"},
         "before_header": "project new", "after_header": "project new"},
        {"before": {"id": "ml", "name": "ML", "description": "", "labels": {}, "state": "ACTIVE"},
         "after": {"id": "ml", "name": "ML", "description": "", "labels": {"a": "b"}, "state": "ACTIVE"},
         "before_header": "project ml", "after_header": "project ml"},
    ]


def test_single_project_diff_is_one_entry(monkeypatch):
    result = run_result(monkeypatch, {"id": "ml", "name": "Renamed"}, {
        ("GET", "/api/v1/projects"): listing(api_project("ml", "ML")),
    }, check_mode=True, diff=True)

    assert result["diff"]["before"]["name"] == "ML" and result["diff"]["after"]["name"] == "Renamed"


# -- many projects -------------------------------------------------------------------------------

def test_many_projects_cost_the_list_requests_and_only_the_needed_writes(monkeypatch):
    wanted = [{"id": f"p{i:03d}", "name": f"Project {i}"} for i in range(250)]
    existing = {f"p{i:03d}": api_project(f"p{i:03d}", f"Project {i}") for i in range(200)}  # 200 exist, 50 are new
    existing["p007"] = api_project("p007", "Old name")  # one differs

    def list_projects(request):
        ids = request["query"]["filters"][0][len("value_in(identifier,"):-1].split(";")
        return listing(*[existing[pid] for pid in ids if pid in existing])

    result, recorder = run(monkeypatch, {"projects": wanted}, {
        ("GET", "/api/v1/projects"): list_projects,
        ("POST", "/api/v1/projects"): lambda request: reply(200, {}),
        ("PUT", "/api/v1/projects/p007"): reply(200, {}),
    })

    assert not result.get("failed")
    assert len(result["created"]) == 50 and result["updated"] == ["p007"] and len(result["unchanged"]) == 199
    lists = [r for r in recorder.sent if r["method"] == "GET"]
    assert len(lists) == 3  # 100 + 100 + 50 ids
    assert result["requests"] == 3 + 50 + 1 == len(recorder.sent)


def test_second_run_over_the_first_runs_result_changes_nothing(monkeypatch):
    wanted = [{"id": "a", "name": "A", "labels": {"t": "1"}}, {"id": "b", "state": "archived", "description": "x"}]
    first, recorder = run(monkeypatch, {"projects": wanted}, {
        ("GET", "/api/v1/projects"): listing(api_project("b")),
        ("POST", "/api/v1/projects"): reply(200, {}),
        ("PUT", "/api/v1/projects/b"): reply(200, {}),
    })
    assert first["created"] == ["a"] and first["updated"] == ["b"]

    # The listing a second run would get: the projects as the first run left them, in the gateway's JSON.
    after = [api_project(p["after"]["id"], p["after"]["name"], p["after"]["description"], p["after"]["labels"] or None,
                         p["after"]["state"]) for p in first["projects"]]
    second, recorder = run(monkeypatch, {"projects": wanted}, {("GET", "/api/v1/projects"): listing(*after)})

    assert not second["changed"] and recorder.writes() == [] and second["unchanged"] == ["a", "b"]


def test_item_without_state_takes_the_module_state(monkeypatch):
    result, recorder = run(monkeypatch, {"state": "archived", "projects": [{"id": "a"}, {"id": "b", "state": "present"}]}, {
        ("GET", "/api/v1/projects"): listing(),
        ("POST", "/api/v1/projects"): lambda request: reply(200, {}),
    })

    assert [write[2]["project"]["state"] for write in recorder.writes()] == ["ARCHIVED", "ACTIVE"]


def test_failed_write_names_what_was_already_done(monkeypatch):
    result = run_result(monkeypatch, {"projects": [{"id": "a"}, {"id": "b", "labels": {"k": "v"}}, {"id": "c"}]}, {
        ("GET", "/api/v1/projects"): listing(),
        ("POST", "/api/v1/projects"): [reply(200, {}), reply(400, {"code": 3, "message": "invalid label value [v]: [...]"})],
    })

    assert result.get("failed")
    assert result["created"] == ["a"] and result["changed"] is True and result["project"] == "b"
    assert result["field"] == "labels" and result["status"] == 400
    assert "RegisterProject of project 'b'" in result["msg"] and "Already done in this run: a." in result["msg"]


# -- authentication through the module -----------------------------------------------------------

def test_auto_discovers_auth_and_uses_one_token(monkeypatch):
    result, recorder = run(monkeypatch, {
        "auth": "auto", "client_id": "flyte", "client_secret": "secret", "projects": [{"id": "a"}, {"id": "b"}],
    }, {
        ("GET", "/.well-known/oauth-authorization-server"): reply(200, {"issuer": "https://idp.test", "token_endpoint": TOKEN_URL}),
        ("GET", "/config/v1/flyte_client"): reply(200, {"scopes": ["all"], "audience": ""}),
        ("POST", TOKEN_URL): reply(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 300}),
        ("GET", "/api/v1/projects"): listing(),
        ("POST", "/api/v1/projects"): lambda request: reply(200, {}),
    })

    assert not result.get("failed") and result["auth"] == "client_credentials"
    assert result["requests"] == 3 + 1 + 2
    assert all(r["headers"].get("Authorization") == "Bearer t" for r in recorder.sent if r["url"].startswith(BASE + "/api"))
    assert "secret" not in json.dumps(result)


def test_auth_on_without_credentials_fails_with_what_to_give(monkeypatch):
    result = run_result(monkeypatch, {"auth": "auto", "id": "a"}, {
        ("GET", "/.well-known/oauth-authorization-server"): reply(200, {"token_endpoint": TOKEN_URL}),
    })

    assert result.get("failed") and "give client_id and client_secret" in result["msg"] and result["requests"] == 1


def test_connection_refused_names_the_url(monkeypatch):
    result = run_result(monkeypatch, {"id": "a"}, {
        ("GET", "/api/v1/projects"): flyteadmin.TransportError("[Errno 111] Connection refused"),
    })

    assert result.get("failed") and "Cannot connect to http://flyteadmin.test/api/v1/projects" in result["msg"] and "Check url" in result["msg"]


def test_unauthenticated_without_auth_says_to_turn_it_on(monkeypatch):
    result = run_result(monkeypatch, {"id": "a"}, {
        ("GET", "/api/v1/projects"): reply(401, {"code": 16, "message": "token parse error"}),
    })

    assert result.get("failed") and result["status"] == 401 and "requires authentication" in result["msg"]


def test_client_config_warning_reaches_the_playbook(monkeypatch):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    run(monkeypatch, {"auth": "auto", "client_id": "c", "client_secret": "s", "id": "a"}, {
        ("GET", "/.well-known/oauth-authorization-server"): reply(200, {"token_endpoint": TOKEN_URL}),
        ("GET", "/config/v1/flyte_client"): reply(404, b"404 page not found"),
        ("POST", TOKEN_URL): reply(200, {"access_token": "t", "token_type": "Bearer"}),
        ("GET", "/api/v1/projects"): listing(api_project("a")),
    })

    assert any("flyte_client" in text for text in warnings)


def test_description_that_cannot_be_cleared_warns(monkeypatch):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    result, recorder = run(monkeypatch, {"id": "a", "description": ""}, {
        ("GET", "/api/v1/projects"): listing(api_project("a", description="set")),
    })

    assert not result["changed"] and recorder.writes() == []
    assert any("cannot clear a description" in text for text in warnings)


# -- input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    ({"projects": [{"id": "a"}, {"id": "a"}]}, "listed more than once"),
    ({"id": "Not_A_Label"}, "DNS-1123 label"),
    ({"id": "a", "labels": {"team": 5}}, "quote it"),
    ({"id": "a", "url": "flyteadmin:81"}, "url 'flyteadmin:81'"),
    ({"id": "a", "timeout": 0}, "timeout"),
])
def test_invalid_input_fails_before_any_request(monkeypatch, args, fragment):
    result, recorder = run(monkeypatch, args, {})

    assert result.get("failed") and fragment in result["msg"] and recorder.sent == []


@pytest.mark.parametrize("args", [
    {"projects": [{"id": "a"}], "id": "b"},
    {"projects": [{"id": "a"}], "name": "x"},
    {},
])
def test_projects_and_a_single_project_exclude_each_other(monkeypatch, args):
    result, recorder = run(monkeypatch, args, {})

    assert result.get("failed") and recorder.sent == []
    assert "mutually exclusive" in result["msg"] or "one of the following is required" in result["msg"]


def test_empty_project_list_makes_no_request(monkeypatch):
    result, recorder = run(monkeypatch, {"projects": []}, {})

    assert not result.get("failed") and not result["changed"] and recorder.sent == [] and result["requests"] == 0
