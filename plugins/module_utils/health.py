# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner and the plan of the health checks of a Flyte deployment: what the flyte_health module calls.

The checks are split by concern over three module_utils:

* health_checks holds the check functions (``check_*``): they take what was read and return one
  result ``{name, status, message, hint, details}``, with no I/O, so the unit tests feed them
  recorded or constructed data;
* health_reader holds ``Reader``, which does the I/O: Kubernetes GETs, exec in a pod, HTTP GETs
  and a direct PostgreSQL query;
* this module ties the two together: ``plan`` turns the module's parameters into the list of checks
  to run, each a closure that reads through a ``Reader`` and hands the data to its check function;
  ``run_checks`` runs one round concurrently, each check time-bounded; ``evaluate`` repeats rounds
  until healthy or out of time (``wait``), and ``summarize`` words the outcome. The module's
  argument spec is here too, shared by the module, the tests and the benchmark.

No result ever holds a secret value: Secrets are reduced to their key names as soon as they are read.
"""

from __future__ import annotations

import threading
import time
import traceback
from urllib.parse import quote

from ansible_collections.homelab.flyte.plugins.module_utils import cnpg
# One place decides whether psycopg is usable, finds the primary and runs psql in it: the database module_utils.
from ansible_collections.homelab.flyte.plugins.module_utils.database import (
    HAS_PSYCOPG,
    LOCAL_SUPERUSER,
    DatabaseError,
    PrimaryError,
    PsqlBackend,
    PsqlError,
    choose_primary,
    login_check,
    password_matches,
    pod_summary,
)
from ansible_collections.homelab.flyte.plugins.module_utils.health_checks import (
    COMPONENTS,
    COMPONENT_LABEL,
    FAIL,
    OK,
    SECRET_KEYS,
    SKIPPED,
    STATUSES,
    WARN,
    check_admin_auth_config,
    check_admin_healthcheck,
    check_blueprint_configmap,
    check_blueprint_instance,
    check_component_pods,
    check_database_cluster,
    check_database_query,
    check_names,
    check_oidc_discovery,
    check_onepassword_item,
    check_route,
    check_secret_keys,
    check_volume_claims,
    dig,
    discovery_url,
    load_yaml,
    pods_check_name,
    result,
)
from ansible_collections.homelab.flyte.plugins.module_utils.health_reader import ReadError, reader_factory


# --- running the checks --------------------------------------------------------------------------

class Check:
    """One check of a round: its name, and either a function of a Reader or the reason it is skipped."""

    def __init__(self, name: str, run=None, skip: str | None = None) -> None:
        self.name, self.run, self.skip = name, run, skip

    def __repr__(self) -> str:
        return f"Check({self.name!r}{', skipped' if self.skip else ''})"


def _crashed(name: str, error: BaseException) -> dict:
    if isinstance(error, ReadError):
        return result(name, FAIL, str(error), error.hint)
    return result(name, FAIL, f"the check itself failed: {type(error).__name__}: {error}",
                  "this is a bug of homelab.flyte.flyte_health when the message is not about the cluster; run with -vvv",
                  {"traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))[-2000:]})


def run_checks(checks: list, reader, check_timeout: float, clock=time.monotonic) -> list[dict]:
    """One round: every check in its own daemon thread, all at once, each bounded by check_timeout.

    Daemon threads, not a ThreadPoolExecutor: a check stuck in I/O past its bound is reported as
    timed out and abandoned, and cannot hold the module's process open at exit.
    """
    results: dict[str, dict] = {}
    threads = []
    lock = threading.Lock()

    def work(check):
        started = clock()
        try:
            outcome = check.run(reader)
        except Exception as error:  # noqa: BLE001 - any failure of one check is that check's result
            outcome = _crashed(check.name, error)
        outcome["duration"] = round(clock() - started, 3)
        with lock:
            results.setdefault(check.name, outcome)

    for check in checks:
        if check.skip:
            results[check.name] = dict(result(check.name, SKIPPED, check.skip), duration=0.0)
            continue
        thread = threading.Thread(target=work, args=(check,), name=f"flyte_health:{check.name}", daemon=True)
        threads.append((check, thread))
        thread.start()
    deadline = clock() + check_timeout
    for check, thread in threads:
        thread.join(max(0.0, deadline - clock()))
    with lock:
        for check, thread in threads:
            if check.name not in results:
                results[check.name] = dict(result(check.name, FAIL, f"no answer within check_timeout ({check_timeout:g}s)",
                                                  "raise check_timeout, or find out why the API server or the endpoint is slow"),
                                           duration=float(check_timeout))
        return [results[c.name] for c in checks]


def counts(results: list[dict]) -> dict:
    return {status: sum(1 for r in results if r["status"] == status) for status in STATUSES}


def is_healthy(results: list[dict]) -> bool:
    return not any(r["status"] == FAIL for r in results)


def summarize(results: list[dict]) -> str:
    """One line: 'healthy: 12 of 12 checks ok, 2 skipped' or 'unhealthy: 2 of 14 checks failed (a, b)'."""
    tally = counts(results)
    ran = len(results) - tally[SKIPPED]
    names = {status: [r["name"] for r in results if r["status"] == status] for status in STATUSES}
    tail = []
    if tally[WARN]:
        tail.append(f"{tally[WARN]} warning{'s' if tally[WARN] != 1 else ''} ({', '.join(names[WARN])})")
    if tally[SKIPPED]:
        tail.append(f"{tally[SKIPPED]} skipped")
    if tally[FAIL]:
        head = f"unhealthy: {tally[FAIL]} of {ran} checks failed ({', '.join(names[FAIL])})"
    elif ran == 0:
        head = "no check ran"
    else:
        head = f"healthy{' with warnings' if tally[WARN] else ''}: {tally[OK]} of {ran} checks ok"
    return ", ".join([head] + tail)


def failure_message(results: list[dict], summary: str) -> str:
    """The module's msg when unhealthy: the summary, then each failed check with its remedy."""
    lines = [summary + "."]
    for r in results:
        if r["status"] == FAIL:
            lines.append(f"{r['name']}: {r['message']}." + (f" Hint: {r['hint']}" if r["hint"] else ""))
    return "\n".join(lines)


def evaluate(checks_for_round, reader_for_round, *, wait: bool, timeout: float, sleep_seconds: float, check_timeout: float,
             clock=time.monotonic, sleep=time.sleep) -> dict:
    """Run rounds until none fails, or once when wait is false; report the last round.

    checks_for_round() and reader_for_round() give each round fresh checks and a fresh Reader (whose
    cache then holds that round's reads only).
    """
    started = clock()
    deadline = started + timeout
    attempts = 0
    while True:
        attempts += 1
        results = run_checks(checks_for_round(), reader_for_round(), check_timeout, clock=clock)
        healthy = is_healthy(results)
        if healthy or not wait or clock() + sleep_seconds >= deadline:
            break
        sleep(sleep_seconds)
    summary = summarize(results)
    if wait and not healthy:
        summary += f" after {attempts} attempts in {clock() - started:.0f}s"
    return {"checks": results, "healthy": healthy, "summary": summary, "counts": counts(results),
            "failed_checks": [r["name"] for r in results if r["status"] == FAIL], "attempts": attempts,
            "elapsed": round(clock() - started, 3)}


# --- the plan: parameters → checks ---------------------------------------------------------------

def issuer_of(params: dict) -> str | None:
    authentik = params.get("authentik") or {}
    if authentik.get("issuer_url"):
        return authentik["issuer_url"]
    if authentik.get("url"):
        return f"{authentik['url'].rstrip('/')}/application/o/{authentik.get('application_slug') or 'flyte'}/"
    return None


def select(params: dict) -> tuple[list[str], dict[str, str]]:
    """The names to run, and the reason each other one is skipped. Raises ValueError on an unknown name."""
    names = check_names(params["components"])
    chosen, skipped = params.get("checks") or [], params.get("skip_checks") or []
    unknown = [n for n in chosen + skipped if n not in names]
    if unknown:
        raise ValueError(f"unknown check name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; the checks are: {', '.join(names)}")
    reasons = {}
    for name in names:
        if chosen and name not in chosen:
            reasons[name] = "not selected (checks)"
        elif name in skipped:
            reasons[name] = "skipped on request (skip_checks)"
    return names, reasons


def plan(params: dict) -> list[Check]:
    """The checks of one round, in report order, from the module's (validated) parameters."""
    names, reasons = select(params)
    namespace = params["namespace"]
    database = dict(params.get("database") or {})
    secrets = dict(params.get("secrets") or {})
    authentik = dict(params.get("authentik") or {})
    routes = dict(params.get("routes") or {})
    admin = dict(params.get("admin") or {})
    db_namespace = database.get("namespace") or namespace
    secret_namespace = secrets.get("namespace") or namespace
    route_namespace = routes.get("namespace") or namespace
    issuer = issuer_of(params)
    check_timeout = params["check_timeout"]
    api_url = (authentik.get("url") or "").rstrip("/") + "/api/v3"

    def pods(component):
        return lambda r: check_component_pods(component, namespace, r.list("v1", "pods", namespace, f"{COMPONENT_LABEL}={component}"))

    def database_query(r):
        cluster = database["cluster_name"]
        attempt = {"user": database["user"], "database": database["name"], "namespace": db_namespace, "cluster": cluster}
        if database.get("host"):
            attempt.update(via="direct", target=f"{database['host']}:{database['port']}")
            try:
                r.sql_select_1(database["host"], database["port"], database["user"], database.get("password"), database["name"],
                               database["sslmode"])
                attempt["rc"] = 0
            except ReadError:
                raise
            except Exception as error:  # noqa: BLE001 - psycopg's OperationalError and the like
                attempt["error"] = " ".join(str(error).split())
            return check_database_query(attempt)
        pods = r.list("v1", "pods", db_namespace, cnpg.PRIMARY_SELECTOR.format(cluster=cluster))
        try:
            pod = choose_primary([pod_summary(p) for p in pods], cluster, db_namespace, database["container"])
        except PrimaryError as error:
            attempt.update(via="exec", target=f"{cluster} primary", no_pod=True, problem=error.problem, hint=error.hint)
            return check_database_query(attempt)
        password = database.get("password")

        def run(namespace, pod_name, container, argv):
            attempt["command"] = argv
            try:
                return r.exec(namespace, pod_name, container, argv, timeout=check_timeout)
            except Exception as error:  # noqa: BLE001 - the API server refusing the exec
                raise DatabaseError(" ".join(str(getattr(error, "body", None) or error).split())) from None

        attempt.update(via="exec", target=pod)
        backend = PsqlBackend(run, db_namespace, pod, database["container"], LOCAL_SUPERUSER, database["name"],
                              connect_timeout=max(1, int(check_timeout)))
        try:
            document = backend.query_json(None, login_check(database["user"], with_password=password is not None))
        except PsqlError as error:
            attempt.update(rc=error.rc, stdout=error.stdout, stderr=error.stderr)
            return check_database_query(attempt)
        except DatabaseError as error:
            attempt["error"] = str(error)
            return check_database_query(attempt)
        role = document.get("role") if isinstance(document, dict) else None
        attempt.update(rc=0, login=document, password_compared=password is not None)
        if password is not None:
            attempt["password_ok"] = bool(role) and password_matches(role.get("verifier"), database["user"], password)
        if role:
            role.pop("verifier", None)  # never in a result
        return check_database_query(attempt)

    def oidc(r):
        found, source = issuer, "parameters"
        if not found:
            configmap = r.get("v1", "configmaps", namespace, admin["configmap"])
            try:
                server = load_yaml(((configmap or {}).get("data") or {}).get("server.yaml") or "") or {}
            except ValueError:
                server = {}
            found, source = dig(server, "auth", "userAuth", "openId", "baseUrl"), f"{admin['configmap']} (auth.userAuth.openId.baseUrl)"
        if not found:
            return check_oidc_discovery(None, None)
        return check_oidc_discovery(found, r.http_get(discovery_url(found), validate_certs=authentik["validate_certs"]), source)

    def blueprint_instance(r):
        if not (authentik.get("api_token") and authentik.get("url")):
            return check_blueprint_instance(authentik["blueprint_name"], api_url, None)
        answer = r.http_get(f"{api_url}/managed/blueprints/?name={quote(authentik['blueprint_name'])}",
                            headers={"Authorization": f"Bearer {authentik['api_token']}", "Accept": "application/json"},
                            validate_certs=authentik["validate_certs"])
        return check_blueprint_instance(authentik["blueprint_name"], api_url, answer, authentik["blueprint_configmap"],
                                        authentik["namespace"])

    def healthcheck(r):
        if admin.get("healthcheck_url"):
            where = admin["healthcheck_url"]
            answer = r.http_get(where, validate_certs=admin["validate_certs"])
        else:
            where = f"/api/v1/namespaces/{namespace}/services/{admin['service']}:{admin['port']}/proxy/healthcheck"
            answer = r.proxy_get(namespace, admin["service"], admin["port"], "healthcheck")
        return check_admin_healthcheck(where, answer, namespace, admin["service"])

    runs = {pods_check_name(c): pods(c) for c in params["components"]}
    runs.update({
        "volume_claims": lambda r: check_volume_claims(namespace, r.list("v1", "persistentvolumeclaims", namespace)),
        "database_cluster": lambda r: check_database_cluster(
            db_namespace, database["cluster_name"], r.get(cnpg.API_VERSION, "clusters", db_namespace, database["cluster_name"])),
        "database_reachable": database_query,
        "onepassword_item": lambda r: check_onepassword_item(
            secret_namespace, secrets["secret_name"], r.get("onepassword.com/v1", "onepassworditems", secret_namespace, secrets["secret_name"])),
        "secret_keys": lambda r: check_secret_keys(secret_namespace, secrets["secret_name"],
                                                   r.secret_keys(secret_namespace, secrets["secret_name"]), secrets["keys"]),
        "blueprint_configmap": lambda r: check_blueprint_configmap(
            authentik["namespace"], authentik["blueprint_configmap"], r.get("v1", "configmaps", authentik["namespace"], authentik["blueprint_configmap"])),
        "blueprint_instance": blueprint_instance,
        "admin_auth_config": lambda r: check_admin_auth_config(
            namespace, admin["configmap"], r.get("v1", "configmaps", namespace, admin["configmap"]), issuer, admin["auth_server_type"]),
        "oidc_discovery": oidc,
        "http_route": lambda r: check_route("HTTPRoute", route_namespace, routes["name"],
                                            r.get("gateway.networking.k8s.io/v1", "httproutes", route_namespace, routes["name"])),
        "grpc_route": lambda r: check_route("GRPCRoute", route_namespace, routes["name"],
                                            r.get("gateway.networking.k8s.io/v1", "grpcroutes", route_namespace, routes["name"])),
        "admin_healthcheck": healthcheck,
    })
    if secrets["backend"] != "onepassword_operator" and "onepassword_item" not in reasons:
        reasons["onepassword_item"] = f"the secrets backend is {secrets['backend']}, not onepassword_operator"
    if database.get("host") and not HAS_PSYCOPG and "database_reachable" not in reasons:
        runs["database_reachable"] = lambda r: result("database_reachable", FAIL, "psycopg is not installed, so database.host cannot be used",
                                                      "pip install 'psycopg[binary]' where the module runs, or leave database.host empty")
    return [Check(n, None, reasons[n]) if n in reasons else Check(n, runs[n]) for n in names]


# --- the argument spec, shared by the module, the tests and the benchmark ------------------------

def argument_spec() -> dict:
    """The module's own options (without kubernetes.core's authentication options)."""
    return dict(
        namespace=dict(type="str", default="flyte-system"),
        components=dict(type="list", elements="str", default=list(COMPONENTS)),
        database=dict(type="dict", default={}, options=dict(
            cluster_name=dict(type="str", default="flyte-postgres"),
            namespace=dict(type="str"),
            user=dict(type="str", default="flyte"),
            name=dict(type="str", default="flyteadmin"),
            container=dict(type="str", default="postgres"),
            host=dict(type="str"),
            port=dict(type="int", default=5432),
            password=dict(type="str", no_log=True),
            sslmode=dict(type="str", default="prefer", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        )),
        # Names where the Secret is, holds no secret itself.
        secrets=dict(type="dict", default={}, no_log=False, options=dict(
            backend=dict(type="str", default="onepassword_operator", choices=["onepassword_operator", "onepassword_connect", "inline"]),
            namespace=dict(type="str"),
            secret_name=dict(type="str", default="flyte-secrets"),
            keys=dict(type="list", elements="str", default=list(SECRET_KEYS), no_log=False),
        )),
        authentik=dict(type="dict", default={}, options=dict(
            namespace=dict(type="str", default="authentik"),
            blueprint_configmap=dict(type="str", default="authentik-blueprint-flyte"),
            blueprint_name=dict(type="str", default="homelab-flyte-oidc"),
            url=dict(type="str"),
            application_slug=dict(type="str", default="flyte"),
            issuer_url=dict(type="str"),
            api_token=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
        )),
        routes=dict(type="dict", default={}, options=dict(
            name=dict(type="str", default="flyte"),
            namespace=dict(type="str"),
        )),
        admin=dict(type="dict", default={}, options=dict(
            configmap=dict(type="str", default="flyte-admin-base-config"),
            service=dict(type="str", default="flyteadmin"),
            port=dict(type="str", default="http"),
            healthcheck_url=dict(type="str"),
            auth_server_type=dict(type="str", default="External"),
            validate_certs=dict(type="bool", default=True),
        )),
        checks=dict(type="list", elements="str", default=[]),
        skip_checks=dict(type="list", elements="str", default=[]),
        check_timeout=dict(type="float", default=10),
        wait=dict(type="bool", default=False),
        timeout=dict(type="float", default=300, aliases=["wait_timeout"]),
        wait_sleep=dict(type="float", default=5),
        fail_on_unhealthy=dict(type="bool", default=True),
    )


def validate_params(params: dict) -> list[str]:
    """Rules the argument spec cannot express; the problems, worded for the user."""
    problems = []
    if params["check_timeout"] <= 0:
        problems.append(f"check_timeout must be a positive number of seconds, got {params['check_timeout']:g}")
    if params["timeout"] < 0:
        problems.append(f"timeout must be zero or more seconds, got {params['timeout']:g}")
    if params["wait_sleep"] <= 0:
        problems.append(f"wait_sleep must be a positive number of seconds, got {params['wait_sleep']:g}")
    if not params["components"]:
        problems.append("components must name at least one component (e.g. [flyteadmin])")
    if len(set(params["components"])) != len(params["components"]):
        problems.append("components names a component twice")
    if not 0 < (params.get("database") or {}).get("port", 5432) < 65536:
        problems.append("database.port must be a TCP port (1-65535)")
    for key in ("issuer_url", "url"):
        value = (params.get("authentik") or {}).get(key)
        if value and not value.startswith(("http://", "https://")):
            problems.append(f"authentik.{key} must be an http:// or https:// URL, got {value!r}")
    url = (params.get("admin") or {}).get("healthcheck_url")
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"admin.healthcheck_url must be an http:// or https:// URL, got {url!r}")
    try:
        select(params)
    except ValueError as error:
        problems.append(str(error))
    return problems


def run(params: dict, api, clock=time.monotonic, sleep=time.sleep) -> dict:
    """Everything the module does after argument parsing: the checks, waited for when asked."""
    new_reader = reader_factory(api, params["check_timeout"])
    return evaluate(lambda: plan(params), new_reader, wait=params["wait"], timeout=params["timeout"],
                    sleep_seconds=params["wait_sleep"], check_timeout=params["check_timeout"], clock=clock, sleep=sleep)
