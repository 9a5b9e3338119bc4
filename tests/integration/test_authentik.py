"""The authentik role on the platform: the blueprint ConfigMap and the client-secret Secret, idempotence,
check mode, secrecy at -vvv, bad input stopped before anything is written, the worker check, the version
check and the verification through the Authentik API, and the wait for the issuer before flyte-core is
installed, against a test double of Authentik's endpoints.

No Authentik runs on the platform. The double below answers the blueprint-instance list, the version and
the OIDC discovery document the way Authentik does, and plays the worker: what it reports as applied is the
blueprint in the role's ConfigMap, read back from the platform on every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
import subprocess
import threading
import time
import uuid
from datetime import datetime
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from ansible_collections.homelab.flyte.tests.blueprint_schema import Tag, load, load_schema, problems
from conftest import REPO, run_playbook

PLAYBOOK = "tests/integration/playbooks/authentik_converge.yml"
ROLES = "tests/integration/playbooks/roles.yml"
CONFIGMAP, BLUEPRINT_KEY, SECRET = "authentik-blueprint-flyte", "flyte.yaml", "authentik-flyte-oidc"
BLUEPRINT_NAME = "homelab-flyte-oidc"
NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


class FakeAuthentik:
    """A test double of three Authentik endpoints, on 127.0.0.1 at an ephemeral port:

        GET /api/v3/managed/blueprints/?name=<name>        the blueprint instances (needs the Bearer token)
        GET /api/v3/admin/version/                         the running version (needs the Bearer token)
        GET /application/o/<slug>/.well-known/openid-configuration

    It plays the worker applying the ConfigMap `authentik-blueprint-flyte` of `namespace`: the
    instance reports `status` with last_applied_hash = sha512 of that content (an instance in error
    keeps the hash of nothing), after `unknown_polls` answers of status "unknown" as before the first
    apply; with `stale=True` it reports an earlier content as applied, with `mounted=False` the worker
    never sees the file. With `apply_after` seconds the worker applies only that long after the double
    first sees the ConfigMap (math.inf: never), as after the kubelet's refresh of the mounted file; until
    then the instance is "unknown" and the issuer unknown. Once applied, it serves a discovery document for
    each application of the blueprint (404 for an application that does not exist, as Authentik's
    ProviderInfoView does), its scopes taken from the provider's scope mappings (Authentik's managed ones
    by their identifier, the blueprint's own by the scope_name of the entry a !KeyOf names), signed RS256
    when the provider has a signing key and HS256 (as Authentik falls back to) when not. The version
    endpoint answers `version` the way authentik/admin/api/version.py does.
    """

    def __init__(self, core: client.CoreV1Api, namespace: str, *, status: str = "successful", unknown_polls: int = 0,
                 stale: bool = False, mounted: bool = True, signing_key: bool = True, issuer: str | None = None,
                 apply_after: float = 0.0, version: str = "2025.10.1") -> None:
        self.core, self.namespace = core, namespace
        self.status, self.unknown_polls, self.stale, self.mounted = status, unknown_polls, stale, mounted
        self.signing_key, self.issuer, self.apply_after, self.version = signing_key, issuer, apply_after, version
        self.token = secrets.token_urlsafe(24)
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.discovery_answers: list[tuple[float, int]] = []  # (time.time(), HTTP status) of each discovery request
        self._polls = 0
        self._seen: float | None = None  # when the worker first saw the ConfigMap (time.monotonic())
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                double.requests.append((urlsplit(self.path).path, self.headers.get("Authorization")))
                code, body = double.answer(self.path, self.headers.get("Authorization"))
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAuthentik:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _blueprint(self) -> str | None:
        try:
            return (self.core.read_namespaced_config_map(CONFIGMAP, self.namespace).data or {}).get(BLUEPRINT_KEY)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def _applied(self, content: str | None) -> bool:
        """Whether the worker has applied the file yet (apply_after seconds after it first saw it)."""
        if not (self.mounted and content):
            return False
        if self._seen is None:
            self._seen = time.monotonic()
        return time.monotonic() - self._seen >= self.apply_after

    def _instance(self) -> dict | None:
        content = self._blueprint() if self.mounted else None
        if content is None:
            return None
        self._polls += 1
        status = "unknown" if self._polls <= self.unknown_polls or not self._applied(content) else self.status
        applied = status == "successful"
        if self.stale:
            content = content.replace("Flyte", "Flyte (earlier)")
        return {"pk": str(uuid.uuid5(uuid.NAMESPACE_URL, self.namespace)), "name": load(content)["metadata"]["name"],
                "path": f"mounted/cm-{CONFIGMAP}/{BLUEPRINT_KEY}", "context": {}, "enabled": True, "status": status,
                "last_applied": "2025-01-01T00:00:00Z" if applied else None,
                "last_applied_hash": hashlib.sha512(content.encode()).hexdigest() if applied else "",
                "managed_models": [], "metadata": {}, "content": ""}

    def _discovery(self, slug: str) -> dict | None:
        content = self._blueprint()
        if not (self._applied(content) and self.status == "successful"):
            return None
        entries = load(content)["entries"]
        apps = {e["identifiers"]["slug"]: e["attrs"]["provider"].args for e in entries if e["model"] == "authentik_core.application"}
        providers = {e["id"]: e["attrs"] for e in entries if e["model"] == "authentik_providers_oauth2.oauth2provider"}
        own_scopes = {e["id"]: e["attrs"]["scope_name"] for e in entries
                      if e["model"] == "authentik_providers_oauth2.scopemapping"}
        if slug not in apps:
            return None
        provider = providers[apps[slug]]
        scopes = [own_scopes[m.args] if m.name == "!KeyOf" else m.args[1][1].rsplit("scope-", 1)[1]
                  for m in provider["property_mappings"]]
        signed = self.signing_key and isinstance(provider.get("signing_key"), Tag)
        issuer = self.issuer or f"{self.url}/application/o/{slug}/"
        return {"issuer": issuer, "authorization_endpoint": f"{self.url}/application/o/authorize/",
                "token_endpoint": f"{self.url}/application/o/token/", "jwks_uri": f"{self.url}/application/o/{slug}/jwks/",
                "id_token_signing_alg_values_supported": ["RS256" if signed else "HS256"], "scopes_supported": scopes}

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict]:
        url = urlsplit(path)
        if url.path == "/api/v3/managed/blueprints/":
            if authorization != f"Bearer {self.token}":
                return 403, {"detail": "Token invalid/expired"}
            name = parse_qs(url.query).get("name", [None])[0]
            results = [i for i in [self._instance()] if i and (name is None or i["name"] == name)]
            return 200, {"pagination": {"count": len(results), "current": 1, "total_pages": 1}, "results": results}
        if url.path == "/api/v3/admin/version/":
            if authorization != f"Bearer {self.token}":
                return 403, {"detail": "Token invalid/expired"}
            return 200, {"version_current": self.version, "version_latest": self.version, "version_latest_valid": True,
                         "build_hash": "", "outdated": False, "outpost_outdated": False}
        parts = url.path.strip("/").split("/")
        if len(parts) == 5 and parts[:2] == ["application", "o"] and parts[3:] == [".well-known", "openid-configuration"]:
            document = self._discovery(parts[2])
            self.discovery_answers.append((time.time(), 200 if document else 404))
            return (200, document) if document else (404, {"detail": "Not found."})
        return 404, {"detail": "Not found."}


# --- helpers and fixtures ------------------------------------------------------------------------

@pytest.fixture
def flyte_namespace(api) -> Iterator[str]:
    """A namespace name for the secrets role, which creates it; deleted afterwards."""
    name = f"it-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except client.ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def item() -> dict[str, str]:
    return {"username": "flyte", "password": secrets.token_urlsafe(18), "oidc-client-id": "flyte-it",
            "oidc-client-secret": secrets.token_urlsafe(30)}


@pytest.fixture
def core(api) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def variables(namespace: str, flyte_namespace: str, item: dict, **extra) -> dict:
    # Nothing answers at auth.example.com: the tests that serve a FakeAuthentik turn the wait for the issuer on.
    return {"secrets_backend": "inline", "secrets_namespace": flyte_namespace, "secrets_inline": item,
            "authentik_namespace": namespace, "authentik_url": "https://auth.example.com",
            "homelab_flyte_hostname": "flyte.example.com", "authentik_issuer_wait": False, **extra}


def with_fake(authentik: FakeAuthentik, **extra) -> dict:
    """The variables that point the role at the double and wait for its issuer."""
    return {"authentik_url": authentik.url, "authentik_issuer_wait": True, **extra}


def leaks(value: str, **texts: str) -> list[str]:
    """The names of the texts (playbook outputs, objects) that show the value, plain or base64-encoded."""
    forms = [value, base64.b64encode(value.encode()).decode()]
    return [name for name, text in texts.items() if any(form in text for form in forms)]


def ours(core: client.CoreV1Api, namespace: str) -> list[str]:
    """The ConfigMaps and Secrets of the namespace that the role would write."""
    selector = "app.kubernetes.io/managed-by=homelab.flyte"
    return ([f"ConfigMap/{c.metadata.name}" for c in core.list_namespaced_config_map(namespace, label_selector=selector).items]
            + [f"Secret/{s.metadata.name}" for s in core.list_namespaced_secret(namespace, label_selector=selector).items])


def namespace_exists(core: client.CoreV1Api, name: str) -> bool:
    return any(ns.metadata.name == name for ns in core.list_namespace().items)


# --- converge, idempotence, check mode, secrecy ----------------------------------------------------

def test_converge_writes_the_blueprint_and_the_secret_then_changes_nothing(core, namespace, flyte_namespace, item, tmp_path):
    fact_file = tmp_path / "authentik_flyte.json"
    extra = variables(namespace, flyte_namespace, item, fact_file=str(fact_file))
    client_secret = item["oidc-client-secret"]

    first = run_playbook(PLAYBOOK, extra_vars=extra, verbosity=3)
    assert first.rc == 0 and first.changed > 0, first

    configmap = core.read_namespaced_config_map(CONFIGMAP, namespace)
    assert configmap.metadata.labels["app.kubernetes.io/managed-by"] == "homelab.flyte"
    assert list(configmap.data) == [BLUEPRINT_KEY]
    blueprint = configmap.data[BLUEPRINT_KEY]
    schema = load_schema()
    if schema is not None:  # the unit tests say so when it is missing
        assert problems(blueprint, schema) == []
    entries = load(blueprint)["entries"]
    flyte = next(e["attrs"] for e in entries if e["identifiers"] == {"name": "flyte-oidc-provider"})
    assert flyte["client_id"] == "flyte-it"  # from the secrets role's item
    assert flyte["client_secret"] == Tag("!Env", "FLYTE_OIDC_CLIENT_SECRET")
    assert flyte["redirect_uris"] == [{"matching_mode": "strict", "url": "https://flyte.example.com/callback"}]
    assert [e["identifiers"] for e in entries if e["model"] == "authentik_core.application"] == [{"slug": "flyte"}, {"slug": "flytectl"}]
    # The secret is in no part of the ConfigMap, in no form.
    assert not leaks(client_secret, configmap=json.dumps(configmap.to_dict(), default=str))

    secret = core.read_namespaced_secret(SECRET, namespace)
    assert secret.type == "Opaque" and secret.metadata.labels["app.kubernetes.io/part-of"] == "flyte"
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {"client_secret": client_secret}

    assert json.loads(fact_file.read_text()) | {"helm_values": None} == {
        "issuer_url": "https://auth.example.com/application/o/flyte/",
        "discovery_url": "https://auth.example.com/application/o/flyte/.well-known/openid-configuration",
        "client_id": "flyte-it", "flytectl_client_id": "flytectl", "flytectl_redirect_uri": "http://localhost:53593/callback",
        "application_slug": "flyte",
        "audience": ["flyte-it", "flytectl"], "scopes": ["openid", "profile", "email", "offline_access", "all"],
        "client_secret_secret": {"name": SECRET, "key": "client_secret", "namespace": namespace},
        "helm_values": None,
    }
    # No Authentik runs here: the role says what its Helm values need, without failing.
    assert f"No Authentik worker Deployment (labels app.kubernetes.io/name=authentik,app.kubernetes.io/component=worker) " \
           f"in the namespace {namespace}" in first.output, first
    assert "- name: FLYTE_OIDC_CLIENT_SECRET" in first.output and f"- {CONFIGMAP}" in first.output, first

    second = run_playbook(PLAYBOOK, extra_vars=extra)
    assert second.rc == 0 and second.changed == 0, second
    check = run_playbook(PLAYBOOK, extra_vars=extra, check=True, diff=True, verbosity=3)
    assert check.rc == 0 and check.changed == 0, check
    assert not leaks(client_secret, first=first.output, second=second.output, check=check.output)
    assert not leaks(item["password"], first=first.output, second=second.output, check=check.output)


def test_check_mode_on_an_empty_cluster_reports_and_creates_nothing(core, flyte_namespace, item):
    authentik_namespace = f"it-{uuid.uuid4().hex[:8]}"
    run = run_playbook(PLAYBOOK, extra_vars=variables(authentik_namespace, flyte_namespace, item), check=True, diff=True)
    # Per role: the namespace it would create, and the objects it reports it would create in it.
    assert run.rc == 0 and run.changed == 4, run
    assert (f"Check mode: namespace {authentik_namespace} does not exist yet; this role would create the blueprint ConfigMap "
            f"{CONFIGMAP} and the client-secret Secret {SECRET} in it.") in " ".join(run.output.split()), run
    assert not namespace_exists(core, authentik_namespace) and not namespace_exists(core, flyte_namespace)


def test_check_mode_before_the_secrets_exist_says_what_it_cannot_compare(core, namespace, flyte_namespace, item):
    """Authentik's namespace exists, Flyte's does not: the client id and secret are not readable yet."""
    run = run_playbook(PLAYBOOK, extra_vars=variables(namespace, flyte_namespace, item), check=True, diff=True)
    # The secrets role's namespace and objects; the ConfigMap and the Secret, which cannot be compared.
    assert run.rc == 0 and run.changed == 4, run
    flat = " ".join(run.output.split())
    assert f"so the ConfigMap {namespace}/{CONFIGMAP} is not compared: a real run writes it." in flat, run
    assert f"so the Secret {namespace}/{SECRET} is not compared" in flat, run
    assert ours(core, namespace) == [] and not namespace_exists(core, flyte_namespace)


# --- preflight -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value"), [
    ("homelab_flyte_hostname", None),
    ("homelab_flyte_hostname", "https://flyte.example.com"),
    ("homelab_flyte_hostname", "flyte"),
    # The role's own host name variable before 0.2.0: refused, so that a stale inventory says what to rename.
    ("authentik_flyte_hostname", "flyte.example.com"),
    ("authentik_url", None),
    ("authentik_url", "auth.example.com"),
], ids=["hostname-missing", "hostname-url", "hostname-single-label", "hostname-old-name", "url-missing", "url-without-scheme"])
def test_preflight_names_the_bad_variable_and_writes_nothing(core, namespace, flyte_namespace, item, variable, value):
    extra = variables(namespace, flyte_namespace, item)
    if value is None:
        del extra[variable]
    else:
        extra[variable] = value
    run = run_playbook(PLAYBOOK, extra_vars=extra)
    assert run.rc != 0 and run.failed == 1, run
    assert f"{variable} must be" in run.output, run
    assert ours(core, namespace) == [] and not namespace_exists(core, flyte_namespace)


# --- the worker check ----------------------------------------------------------------------------

def worker(env: list[client.V1EnvVar], volumes: list[client.V1Volume]) -> client.V1Deployment:
    labels = {"app.kubernetes.io/name": "authentik", "app.kubernetes.io/component": "worker", "app.kubernetes.io/instance": "authentik"}
    container = client.V1Container(name="worker", image="ghcr.io/goauthentik/server:2025.10", args=["worker"], env=env)
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="authentik-worker", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                              spec=client.V1PodSpec(containers=[container], volumes=volumes))))


def test_worker_check_warns_until_the_helm_values_are_in_place(api, core, namespace, flyte_namespace, item):
    apps = client.AppsV1Api(api)
    plain_secret = secrets.token_urlsafe(20)  # a worker may carry other secrets as plain values
    bare = [client.V1EnvVar(name="AUTHENTIK_SECRET_KEY", value=plain_secret)]
    apps.create_namespaced_deployment(namespace, worker(bare, []))
    extra = variables(namespace, flyte_namespace, item)

    warned = run_playbook(PLAYBOOK, extra_vars=extra, verbosity=3)
    assert warned.rc == 0, warned
    flat = " ".join(warned.output.split())
    assert (f"WARNING: the Authentik worker Deployment {namespace}/authentik-worker has no environment variable "
            f"FLYTE_OIDC_CLIENT_SECRET from the Secret {SECRET} (key client_secret) and does not mount the ConfigMap "
            f"{CONFIGMAP}.") in flat, warned
    assert "secretKeyRef: name: authentik-flyte-oidc key: client_secret" in flat, warned
    assert not leaks(plain_secret, warned=warned.output)

    # What the goauthentik chart renders from the values the warning shows.
    env = bare + [client.V1EnvVar(name="FLYTE_OIDC_CLIENT_SECRET", value_from=client.V1EnvVarSource(
        secret_key_ref=client.V1SecretKeySelector(name=SECRET, key="client_secret")))]
    volume = client.V1Volume(name=f"blueprints-cm-{CONFIGMAP}", config_map=client.V1ConfigMapVolumeSource(name=CONFIGMAP))
    apps.replace_namespaced_deployment("authentik-worker", namespace, worker(env, [volume]))

    quiet = run_playbook(PLAYBOOK, extra_vars=extra)
    assert quiet.rc == 0 and quiet.changed == 0, quiet
    assert "WARNING" not in quiet.output and "No Authentik worker Deployment" not in quiet.output, quiet


# --- verification through the Authentik API ------------------------------------------------------

def test_api_verification_waits_for_the_blueprint_and_checks_the_issuer(core, namespace, flyte_namespace, item):
    # The oldest Authentik the blueprint works with.
    with FakeAuthentik(core, namespace, unknown_polls=2, version="2024.10.3") as authentik:
        extra = variables(namespace, flyte_namespace, item, **with_fake(authentik, authentik_api_token=authentik.token,
                                                                        authentik_verify_timeout=30))
        run = run_playbook(PLAYBOOK, extra_vars=extra, verbosity=3, env=NO_PROXY)
        assert run.rc == 0, run
        blueprint_polls = [auth for path, auth in authentik.requests if path == "/api/v3/managed/blueprints/"]
        # One from the preflight, two answered "unknown", then the applied one.
        assert len(blueprint_polls) == 4 and set(blueprint_polls) == {f"Bearer {authentik.token}"}
        assert ("/application/o/flyte/.well-known/openid-configuration", None) in authentik.requests
        assert not leaks(authentik.token, run=run.output)
        assert not leaks(item["oidc-client-secret"], run=run.output)


@pytest.mark.parametrize(("behaviour", "message"), [
    ({"status": "error"}, 'The blueprint instance homelab-flyte-oidc reports status "error" after 3s and has not applied the current content'),
    ({"stale": True}, "The blueprint instance homelab-flyte-oidc is successful, but with older content"),
    ({"mounted": False}, "Authentik has no blueprint instance named homelab-flyte-oidc after 3s"),
    ({"issuer": "https://auth.example.com/application/o/flyte/"},
     'The discovery document names the issuer "https://auth.example.com/application/o/flyte/", but Flyte expects "http://127.0.0.1:'),
    ({"signing_key": False}, "Authentik signs the tokens of flyte with HS256"),
], ids=["status-error", "stale", "not-mounted", "issuer-mismatch", "no-signing-key"])
def test_api_verification_fails_naming_what_is_wrong(core, namespace, flyte_namespace, item, behaviour, message):
    with FakeAuthentik(core, namespace, **behaviour) as authentik:
        extra = variables(namespace, flyte_namespace, item, **with_fake(authentik, authentik_api_token=authentik.token,
                                                                        authentik_verify_timeout=3))
        run = run_playbook(PLAYBOOK, extra_vars=extra, env=NO_PROXY)
    assert run.rc != 0 and run.failed == 1, run
    assert message in " ".join(run.output.split()), run


def test_a_refused_api_token_stops_the_preflight(core, namespace, flyte_namespace, item):
    with FakeAuthentik(core, namespace) as authentik:
        extra = variables(namespace, flyte_namespace, item,
                          **with_fake(authentik, authentik_api_token="not-" + authentik.token))
        run = run_playbook(PLAYBOOK, extra_vars=extra, env=NO_PROXY)
    assert run.rc != 0 and run.failed == 1, run
    assert "authentik_api_token was refused or the Authentik API is unreachable" in run.output, run
    assert "answered HTTP 403" in " ".join(run.output.split()), run
    assert ours(core, namespace) == [] and not namespace_exists(core, flyte_namespace)


@pytest.mark.parametrize("version", ["2024.10.2", "2024.8.5"])
def test_an_authentik_older_than_the_blueprint_needs_stops_the_preflight(core, namespace, flyte_namespace, item,
                                                                         version):
    """invalidation_flow came with 2024.10.0, redirect_uris as a list with matching_mode with 2024.10.3 (and
    2024.8.5): an older Authentik would reject the blueprint; the preflight says so before anything is written."""
    with FakeAuthentik(core, namespace, version=version) as authentik:
        extra = variables(namespace, flyte_namespace, item, **with_fake(authentik, authentik_api_token=authentik.token))
        run = run_playbook(PLAYBOOK, extra_vars=extra, env=NO_PROXY)
    assert run.rc != 0 and run.failed == 1, run
    flat = " ".join(run.output.split())
    assert (f"Authentik at {authentik.url} runs {version}, older than 2024.10.3, the oldest release the blueprint "
            "works with") in flat, run
    assert ("/api/v3/admin/version/", f"Bearer {authentik.token}") in authentik.requests
    assert ours(core, namespace) == [] and not namespace_exists(core, flyte_namespace)


# --- the issuer before flyte-core ------------------------------------------------------------------

# secrets, storage, database, authentik and flyte, in site order: the flyte role installs flyte-core only after
# the authentik role has seen the issuer's discovery document, which FlyteAdmin needs to start.
SITE_ROLES = ["secrets", "storage", "database", "authentik", "flyte"]


def site_vars(authentik: FakeAuthentik, authentik_namespace: str, flyte_namespace: str, item: dict, **extra) -> dict:
    return {**variables(authentik_namespace, flyte_namespace, item, **with_fake(authentik)),
            "test_roles": SITE_ROLES, "flyte_namespace": flyte_namespace, "homelab_flyte_hostname": "flyte.example.com",
            "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests/charts/flyte-core"),
            "flyte_helm_timeout": 180, "secrets_wait_timeout": 60, "database_wait_timeout": 120,
            # The FlyteWorkflow CRD is cluster-scoped and owned by one release (see test_flyte_site.py).
            "flyte_values_overrides": {"flytepropeller": {"createCRDs": False}}, **extra}


def helm_release(namespace: str) -> dict | None:
    status = subprocess.run(["helm", "status", "flyte", "-n", namespace, "-o", "json"], capture_output=True, text=True,
                            check=False)
    return json.loads(status.stdout) if status.returncode == 0 else None


@pytest.fixture
def release_namespace(flyte_namespace) -> Iterator[str]:
    """flyte_namespace, with the flyte release a test may have installed there uninstalled afterwards."""
    yield flyte_namespace
    subprocess.run(["helm", "uninstall", "flyte", "-n", flyte_namespace, "--wait", "--timeout", "60s"],
                   capture_output=True, check=False)


def test_flyte_core_waits_until_the_issuer_answers(api, core, namespace, release_namespace, item):
    """Authentik applies the blueprint 15s after the ConfigMap appears: the issuer answers 404 until then."""
    with FakeAuthentik(core, namespace, apply_after=15) as authentik:
        run = run_playbook(ROLES, extra_vars=site_vars(authentik, namespace, release_namespace, item,
                                                       authentik_issuer_timeout=120), env=NO_PROXY)
        assert run.rc == 0, run
    statuses = [status for _at, status in authentik.discovery_answers]
    assert statuses[0] == 404 and statuses[-1] == 200 and statuses.count(200) == 1, statuses
    served = next(at for at, status in authentik.discovery_answers if status == 200)
    release = helm_release(release_namespace)
    assert release is not None and release["info"]["status"] == "deployed", release
    # Installed only after the issuer answered.
    assert datetime.fromisoformat(release["info"]["first_deployed"]).timestamp() > served


def test_flyte_core_is_not_installed_while_the_issuer_never_answers(api, core, namespace, release_namespace, item):
    with FakeAuthentik(core, namespace, apply_after=math.inf) as authentik:
        run = run_playbook(ROLES, extra_vars=site_vars(authentik, namespace, release_namespace, item,
                                                       authentik_issuer_timeout=6), env=NO_PROXY)
    assert run.rc != 0 and run.failed == 1, run
    flat = " ".join(run.output.split())
    issuer = f"{authentik.url}/application/o/flyte/"
    assert (f"Authentik does not serve the discovery document of the issuer {issuer} (GET {issuer}.well-known/"
            f"openid-configuration answered HTTP 404 for 6s)") in flat, run
    assert f"the ConfigMap {namespace}/{CONFIGMAP} under blueprints.configMaps" in flat, run
    assert "authentik_issuer_wait" in flat, run
    assert len(authentik.discovery_answers) >= 2 and {status for _at, status in authentik.discovery_answers} == {404}
    assert helm_release(release_namespace) is None
    # The storage role's S3 server runs there; nothing of flyte-core does.
    charted = client.AppsV1Api(api).list_namespaced_deployment(release_namespace, label_selector="helm.sh/chart")
    assert [d.metadata.name for d in charted.items] == []


def test_without_the_wait_the_role_does_not_ask_for_the_issuer(core, namespace, flyte_namespace, item):
    """authentik_issuer_wait: false, for a controller that cannot reach Authentik."""
    with FakeAuthentik(core, namespace, apply_after=math.inf) as authentik:
        extra = variables(namespace, flyte_namespace, item, **with_fake(authentik, authentik_issuer_wait=False))
        run = run_playbook(PLAYBOOK, extra_vars=extra, env=NO_PROXY)
    assert run.rc == 0, run
    assert authentik.discovery_answers == []
