# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks of a Flyte deployment: small functions over fetched data, with the I/O at the edges.

Layout:

* the check functions (``check_*``) take what was read from the cluster or an HTTP endpoint and
  return one result ``{name, status, message, hint, details}``; they do no I/O, so the unit tests
  feed them recorded or constructed data;
* ``Reader`` does the I/O: Kubernetes GETs through the API server (raw paths, no discovery),
  ``kubectl exec``-style commands in a pod, HTTP GETs, and a direct PostgreSQL query;
* ``plan`` turns the module's parameters into the list of checks to run, each a closure that reads
  through a ``Reader`` and hands the data to its check function;
* ``run_checks`` runs one round concurrently, each check time-bounded; ``evaluate`` repeats
  rounds until healthy or out of time (``wait``), and ``summarize`` words the outcome.

No result ever holds a secret value: Secrets are reduced to their key names as soon as they are read.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import traceback
from urllib.parse import quote

try:
    import yaml
except ImportError:  # AnsibleK8SModule reports a missing PyYAML itself
    yaml = None

# One place decides whether psycopg is usable, finds the primary and runs psql in it: the database module_utils.
from ansible_collections.homelab.flyte.plugins.module_utils.database import (
    HAS_PSYCOPG,
    LOCAL_SUPERUSER,
    PRIMARY_SELECTOR,
    DatabaseError,
    PrimaryError,
    PsqlBackend,
    PsqlError,
    choose_primary,
    login_check,
    password_matches,
    pod_summary,
)

if HAS_PSYCOPG:
    import psycopg

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
STATUSES = (OK, WARN, FAIL, SKIPPED)
_SEVERITY = {SKIPPED: 0, OK: 1, WARN: 2, FAIL: 3}

COMPONENTS = ["flyteadmin", "flytepropeller", "datacatalog", "flyteconsole", "flytescheduler"]
SECRET_KEYS = ["username", "password", "oidc-client-id", "oidc-client-secret"]
CNPG_HEALTHY_PHASE = "Cluster in healthy state"
COMPONENT_LABEL = "app.kubernetes.io/name"
# The checks after the per-component pod checks, in the order they are reported.
FIXED_CHECKS = [
    "volume_claims",
    "database_cluster",
    "database_reachable",
    "onepassword_item",
    "secret_keys",
    "blueprint_configmap",
    "blueprint_instance",
    "admin_auth_config",
    "oidc_discovery",
    "http_route",
    "grpc_route",
    "admin_healthcheck",
]


def pods_check_name(component: str) -> str:
    return f"{component}_pods"


def check_names(components: list[str]) -> list[str]:
    """Every check name, in report order, for the given components."""
    return [pods_check_name(c) for c in components] + FIXED_CHECKS


def result(name: str, status: str, message: str, hint: str = "", details=None) -> dict:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {"name": name, "status": status, "message": message, "hint": hint, "details": details if details is not None else {}}


def _worst(statuses) -> str:
    return max(statuses, key=lambda s: _SEVERITY[s], default=OK)


def _quote(value) -> str:
    return json.dumps(value)


def _condition(obj: dict, kind: str) -> dict | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


# --- pods of a component -------------------------------------------------------------------------

def _container_problems(pod: dict) -> tuple[list[str], list[dict]]:
    """Why the pod's containers are not ready: words, and the details per container."""
    status = pod.get("status") or {}
    words, details = [], []
    for kind, statuses in (("init container", status.get("initContainerStatuses") or []),
                           ("container", status.get("containerStatuses") or [])):
        for container in statuses:
            state = container.get("state") or {}
            restarts = container.get("restartCount", 0)
            if kind == "init container" and "terminated" in state and state["terminated"].get("exitCode") == 0:
                continue
            if kind == "container" and container.get("ready"):
                continue
            if "waiting" in state:
                why = state["waiting"].get("reason") or "waiting"
                message = state["waiting"].get("message")
            elif "terminated" in state:
                terminated = state["terminated"]
                why = f"{terminated.get('reason') or 'terminated'} (exit code {terminated.get('exitCode')})"
                message = terminated.get("message")
            elif "running" in state:
                why = "running but not ready (readiness probe failing)" if kind == "container" else "running"
                message = None
            else:
                why, message = "no state reported", None
            last = (container.get("lastState") or {}).get("terminated") or {}
            text = f"{kind} {container.get('name')}: {why}"
            if message:
                text += f": {message}"
            if restarts:
                text += f", {restarts} restart{'s' if restarts != 1 else ''}"
                if last.get("reason"):
                    text += f" (last: {last['reason']}, exit code {last.get('exitCode')})"
            words.append(text)
            details.append({"container": container.get("name"), "init": kind == "init container", "reason": why,
                            "message": message, "restarts": restarts})
    return words, details


def _pod_problem(pod: dict) -> tuple[str, dict, str | None]:
    """One line on why a pod is not ready, its details, and the container whose logs tell more."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    phase = status.get("phase") or "Unknown"
    words, containers = _container_problems(pod)
    scheduled = _condition(pod, "PodScheduled")
    if not words:
        if scheduled and scheduled.get("status") == "False":
            words = [f"not scheduled: {scheduled.get('message') or scheduled.get('reason')}"]
        elif status.get("reason"):
            words = [f"{status['reason']}: {status.get('message', '')}".rstrip(": ")]
        else:
            ready = _condition(pod, "Ready")
            words = [f"Ready is {ready.get('status')}: {ready.get('message') or ready.get('reason')}" if ready
                     else "no Ready condition reported yet (no kubelet has picked it up)"]
    logs = next((c for c in containers if c["restarts"] or c["init"]), containers[0] if containers else None)
    line = f"{name} ({phase}): " + "; ".join(words)
    return line, {"pod": name, "phase": phase, "containers": containers}, logs and logs["container"]


def check_component_pods(component: str, namespace: str, pods: list[dict]) -> dict:
    """The pods labelled app.kubernetes.io/name=<component>: all ready is ok, some is warn, none is fail."""
    name = pods_check_name(component)
    selector = f"{COMPONENT_LABEL}={component}"
    active = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")
              and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    if not active:
        gone = f" ({len(pods)} terminating or finished)" if pods else ""
        return result(name, FAIL, f"no running pods labelled {selector} in {namespace}{gone}",
                      f"kubectl -n {namespace} get deployment {component} -o wide  # replicas 0? not installed? Scale it back "
                      f"with `kubectl -n {namespace} scale deployment {component} --replicas=1` or re-run the flyte role; "
                      f"`kubectl -n {namespace} get events --field-selector involvedObject.kind=ReplicaSet` tells why no pod was created",
                      {"selector": selector, "pods": []})
    ready = [p for p in active if (_condition(p, "Ready") or {}).get("status") == "True"]
    names = sorted(p["metadata"]["name"] for p in active)
    if len(ready) == len(active):
        return result(name, OK, f"{len(ready)}/{len(active)} pods ready ({', '.join(names)})", "",
                      {"selector": selector, "pods": names})
    problems = [_pod_problem(p) for p in active if p not in ready]
    first_pod, first_container = problems[0][1]["pod"], problems[0][2]
    restarted = any(c["restarts"] for problem in problems for c in problem[1]["containers"])
    hint = f"kubectl -n {namespace} describe pod {first_pod}"
    if first_container:
        hint += f"; kubectl -n {namespace} logs {first_pod} -c {first_container}{' --previous' if restarted else ''}"
    status = WARN if ready else FAIL
    return result(name, status, f"{len(ready)}/{len(active)} pods ready; not ready: " + " | ".join(p[0] for p in problems),
                  hint, {"selector": selector, "pods": names, "not_ready": [p[1] for p in problems]})


def check_volume_claims(namespace: str, claims: list[dict]) -> dict:
    """Every PersistentVolumeClaim of the namespace Bound (the reference's `get pods,svc,pvc`)."""
    name = "volume_claims"
    if not claims:
        return result(name, OK, f"no PersistentVolumeClaims in {namespace}")
    unbound = [c for c in claims if (c.get("status") or {}).get("phase") != "Bound"]
    if not unbound:
        return result(name, OK, f"{len(claims)} PersistentVolumeClaims bound",
                      details={"claims": sorted(c["metadata"]["name"] for c in claims)})
    words = [f"{c['metadata']['name']} is {(c.get('status') or {}).get('phase') or 'Pending'}"
             f" (class {(c.get('spec') or {}).get('storageClassName') or 'default'})" for c in unbound]
    first = unbound[0]["metadata"]["name"]
    return result(name, FAIL, "; ".join(words),
                  f"kubectl -n {namespace} describe pvc {first}  # the events say why no volume was provisioned; "
                  "`kubectl get storageclass` lists the classes (Longhorn running?)",
                  {"unbound": [c["metadata"]["name"] for c in unbound]})


# --- database ------------------------------------------------------------------------------------

def check_database_cluster(namespace: str, cluster_name: str, cluster: dict | None) -> dict:
    """The CloudNativePG Cluster's phase and readyInstances against spec.instances."""
    name = "database_cluster"
    look = f"kubectl -n {namespace} get cluster {cluster_name}"
    if cluster is None:
        return result(name, FAIL, f"no CloudNativePG Cluster {namespace}/{cluster_name}",
                      f"{look}  # run the database role (playbooks/site.yml --tags database), or set database.cluster_name")
    status = cluster.get("status") or {}
    wanted = (cluster.get("spec") or {}).get("instances", 1)
    phase, ready = status.get("phase"), status.get("readyInstances", 0)
    details = {"phase": phase, "phase_reason": status.get("phaseReason"), "ready_instances": ready,
               "instances": wanted, "current_primary": status.get("currentPrimary")}
    if not phase:
        return result(name, FAIL, f"the Cluster {cluster_name} has no status: no CloudNativePG operator has reconciled it",
                      f"{look}; kubectl get pods -A -l app.kubernetes.io/name=cloudnative-pg  # is the operator running?",
                      details)
    words = f"phase {_quote(phase)}{' (' + status['phaseReason'] + ')' if status.get('phaseReason') else ''}, " \
            f"{ready}/{wanted} instances ready"
    if phase == CNPG_HEALTHY_PHASE and ready >= wanted:
        return result(name, OK, words, "", details)
    hint = f"{look}; kubectl -n {namespace} describe cluster {cluster_name}; " \
           "kubectl logs -A -l app.kubernetes.io/name=cloudnative-pg --tail=50  # the operator says why"
    return result(name, WARN if ready > 0 else FAIL, words, hint, details)


def check_database_query(attempt: dict) -> dict:
    """The outcome of reaching the database: psql through exec into the primary, or a direct connection.

    attempt: via (exec|direct), target (pod or host:port), user, database, namespace, cluster, and
    either rc 0 and (exec) the login check's `login` document with `password_compared`/`password_ok`,
    or the failure: rc/stdout/stderr of psql, `error` (a direct connection, or an exec that could not
    start), or `no_pod` with `problem`/`hint` from the primary's lookup.
    """
    name = "database_reachable"
    user, database, target = attempt["user"], attempt["database"], attempt["target"]
    namespace, cluster = attempt.get("namespace"), attempt.get("cluster")
    via_exec = attempt["via"] == "exec"
    how = f"psql -U {LOCAL_SUPERUSER} -d {database} in {target}" if via_exec else f"{user}@{target}/{database}"
    details = {k: attempt.get(k) for k in ("via", "target", "user", "database", "command", "rc")}
    if via_exec:
        details["login_user"] = LOCAL_SUPERUSER
    if attempt.get("no_pod"):
        return result(name, FAIL, attempt["problem"], attempt["hint"], details)
    if attempt.get("error") is None and attempt.get("rc", 1) == 0:
        if not via_exec:
            return result(name, OK, f"{how} answered select 1", "", details)
        return check_database_login(attempt, details)
    text = (attempt.get("error") or "") + "\n" + (attempt.get("stderr") or "") + "\n" + (attempt.get("stdout") or "")
    text = text.strip()
    lowered = text.lower()
    pod_logs = f"kubectl -n {namespace} logs {target} -c postgres" if via_exec else \
        f"kubectl -n {namespace} logs -l {PRIMARY_SELECTOR.format(cluster=cluster)} -c postgres"
    pod = target if via_exec else cluster + "-1"
    by_hand = f"kubectl -n {namespace} exec -it {pod} -c postgres -- psql -U {LOCAL_SUPERUSER} -d {database}"
    if f'database "{database}" does not exist' in text:
        message = f"the database {database} does not exist on the Cluster {cluster}"
        hint = (f"CloudNativePG creates it at bootstrap (spec.bootstrap.initdb.database): kubectl -n {namespace} get cluster "
                f"{cluster} -o jsonpath='{{.spec.bootstrap}}'; {by_hand.replace(database, 'postgres', 1)} -c '\\l'")
    elif "peer authentication failed" in lowered:
        message = f"PostgreSQL refused {LOCAL_SUPERUSER} over the pod's local socket: {_last_line(text)}"
        hint = (f"CloudNativePG's ident map `local` admits the pod's OS user postgres as {LOCAL_SUPERUSER}: is the "
                f"Cluster's spec.postgresql.pg_ident or pg_hba changed? kubectl -n {namespace} get cluster {cluster} "
                "-o jsonpath='{.spec.postgresql}'")
    elif f'role "{user}" does not exist' in text or "authentication failed" in lowered or "no password supplied" in lowered:
        message = f"PostgreSQL refused the user {user}: {_last_line(text)}"
        hint = (f"the owner in spec.bootstrap.initdb.owner and the credentials Secret must both name {user}: kubectl -n {namespace} "
                f"get cluster {cluster} -o jsonpath='{{.spec.bootstrap.initdb}}'")
    elif "executable file not found" in lowered or attempt.get("rc") in (126, 127):
        message = f"no psql in the container of {target}: {_last_line(text)}"
        hint = f"kubectl -n {namespace} get pod {target} -o jsonpath='{{.spec.containers[*].image}}'  # a CloudNativePG PostgreSQL image?"
    elif "container not found" in lowered or "unable to upgrade connection" in lowered or "is not running" in lowered:
        message = f"cannot exec into {target}: {_last_line(text)}"
        hint = f"kubectl -n {namespace} describe pod {target}"
    elif "timed out" in lowered or "timeout" in lowered:
        message = f"{how} did not answer in time: {_last_line(text)}"
        hint = f"{by_hand}; {pod_logs}"
    else:
        message = f"{how} failed{' (exit code ' + str(attempt['rc']) + ')' if attempt.get('rc') not in (None, 0) else ''}: " \
                  f"{_last_line(text) or 'no output'}"
        hint = f"{by_hand}; {pod_logs}"
    return result(name, FAIL, message, hint, details)


def check_database_login(attempt: dict, details: dict) -> dict:
    """Whether the user may log in to the database, from the login check's document (read as postgres)."""
    name = "database_reachable"
    user, database, target = attempt["user"], attempt["database"], attempt["target"]
    namespace, cluster = attempt.get("namespace"), attempt.get("cluster")
    document = attempt.get("login")
    role = document.get("role") if isinstance(document, dict) else None
    secret_hint = (f"the owner in spec.bootstrap.initdb.owner and its credentials Secret must both name {user}, and CloudNativePG "
                   f"applies the Secret's password: kubectl -n {namespace} get cluster {cluster} -o jsonpath='{{.spec.bootstrap.initdb}}'")
    reload_hint = ("CloudNativePG applies the password of spec.bootstrap.initdb.secret when that Secret changes and is labelled "
                   f"cnpg.io/reload (the secrets role labels it): kubectl -n {namespace} get cluster {cluster} "
                   "-o jsonpath='{.status.secretsResourceVersion}'; kubectl -n " + str(namespace) + f" logs {target} -c postgres")
    if not isinstance(document, dict) or "role" not in document:
        return result(name, FAIL, f"psql -U {LOCAL_SUPERUSER} -d {database} in {target} printed no login check: "
                      f"{_excerpt(attempt.get('stdout'))}", f"kubectl -n {namespace} logs {target} -c postgres", details)
    if role is None:
        return result(name, FAIL, f"the role {user} does not exist on the Cluster {cluster}", secret_hint, details)
    if not role.get("login"):
        return result(name, FAIL, f"the role {user} exists but may not log in (NOLOGIN)", secret_hint, details)
    if not role.get("password"):
        return result(name, FAIL, f"the role {user} has no password: PostgreSQL refuses it over TCP, and CloudNativePG admits "
                      f"only {LOCAL_SUPERUSER} over the socket", reload_hint, details)
    if role.get("expired"):
        return result(name, FAIL, f"the password of {user} expired at {role.get('valid_until')}",
                      f"managed roles set it with validUntil: kubectl -n {namespace} get cluster {cluster} -o jsonpath='{{.spec.managed}}'",
                      details)
    if not document.get("connect"):
        return result(name, FAIL, f"the role {user} may not connect to {database} (no CONNECT privilege)",
                      f"GRANT CONNECT ON DATABASE {database} TO {user} (homelab.flyte.flyte_database grants it)", details)
    if attempt.get("password_compared") and not attempt.get("password_ok"):
        return result(name, FAIL, f"the password given (database.password) is not the one PostgreSQL holds for {user}",
                      reload_hint, details)
    compared = "the password matches" if attempt.get("password_compared") else "the password was not compared"
    return result(name, OK, f"{user} may log in to {database} (LOGIN, a password, CONNECT; {compared}), "
                  f"as {LOCAL_SUPERUSER} found over the socket of {target}", "", details)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- secrets -------------------------------------------------------------------------------------

def check_onepassword_item(namespace: str, item_name: str, item: dict | None) -> dict:
    """The OnePasswordItem's Ready condition, as the 1Password operator reports it."""
    name = "onepassword_item"
    look = f"kubectl -n {namespace} describe onepassworditem {item_name}"
    if item is None:
        return result(name, FAIL, f"no OnePasswordItem {namespace}/{item_name}",
                      f"{look}  # run the secrets role with secrets_backend onepassword_operator, or set secrets.backend")
    path = (item.get("spec") or {}).get("itemPath")
    ready = _condition(item, "Ready")
    details = {"item_path": path, "ready": ready and ready.get("status"), "message": ready and ready.get("message")}
    if ready is None:
        return result(name, FAIL, f"the OnePasswordItem {item_name} ({path}) has no Ready condition: the 1Password operator has not synced it",
                      f"{look}; kubectl logs -A -l name=onepassword-connect-operator --tail=50  # is the operator running?", details)
    if ready.get("status") == "True":
        return result(name, OK, f"{path} synced: {ready.get('message') or 'Ready'}", "", details)
    return result(name, FAIL, f"the 1Password operator cannot sync {path}: {ready.get('message') or ready.get('reason')}",
                  f"{look}  # check that the vault and item of {path} exist and the operator's token may read them", details)


def check_secret_keys(namespace: str, secret_name: str, present: list[str] | None, keys: list[str]) -> dict:
    """The item Secret holds every expected key with a value. `present` is the key names with values (never the values)."""
    name = "secret_keys"
    if present is None:
        return result(name, FAIL, f"no Secret {namespace}/{secret_name}",
                      f"kubectl -n {namespace} get secret {secret_name}  # run the secrets role; with the 1Password operator, "
                      f"kubectl -n {namespace} describe onepassworditem {secret_name}")
    missing = [k for k in keys if k not in present]
    if not missing:
        return result(name, OK, f"{secret_name} holds {', '.join(keys)}", "", {"keys": keys})
    return result(name, FAIL, f"the Secret {namespace}/{secret_name} lacks a value for {', '.join(missing)}",
                  f"kubectl -n {namespace} get secret {secret_name} -o jsonpath='{{.data}}' | jq keys  # add the missing "
                  "fields to the 1Password item (or secrets_inline) and re-run the secrets role",
                  {"missing": missing, "keys": keys})


# --- Authentik -----------------------------------------------------------------------------------

def check_blueprint_configmap(namespace: str, configmap_name: str, configmap: dict | None) -> dict:
    """The blueprint ConfigMap exists with a non-empty *.yaml file (Authentik only reads those)."""
    name = "blueprint_configmap"
    look = f"kubectl -n {namespace} get configmap {configmap_name}"
    if configmap is None:
        return result(name, FAIL, f"no blueprint ConfigMap {namespace}/{configmap_name}",
                      f"{look}  # run the authentik role (playbooks/site.yml --tags authentik)")
    data = configmap.get("data") or {}
    files = sorted(k for k, v in data.items() if k.endswith(".yaml") and (v or "").strip())
    if not files:
        return result(name, FAIL, f"the ConfigMap {configmap_name} holds no blueprint: no non-empty *.yaml key (keys: {', '.join(sorted(data)) or 'none'})",
                      f"{look} -o yaml  # re-run the authentik role; Authentik only discovers files ending in .yaml",
                      {"keys": sorted(data)})
    return result(name, OK, f"{configmap_name} holds {', '.join(f'{f} ({len(data[f])} bytes)' for f in files)}", "", {"files": files})


def check_blueprint_instance(blueprint_name: str, api_url: str, answer: dict | None, configmap_name: str = "authentik-blueprint-flyte",
                             authentik_namespace: str = "authentik") -> dict:
    """Authentik's blueprint instance status: GET <api>/managed/blueprints/?name=<name> → results[0].status."""
    name = "blueprint_instance"
    if answer is None:
        return result(name, SKIPPED, "no Authentik API token given (authentik.api_token): the blueprint instance is not queried")
    url = f"{api_url}/managed/blueprints/?name={blueprint_name}"
    if answer.get("error"):
        return result(name, FAIL, f"GET {url} failed: {answer['error']}",
                      "check authentik.url, and that this host reaches Authentik", {"url": url})
    code = answer.get("status")
    if code in (401, 403):
        return result(name, FAIL, f"Authentik refused the API token (HTTP {code})",
                      "give an API token of a user allowed to view blueprint instances (authentik.api_token)", {"url": url, "status": code})
    if code != 200:
        return result(name, FAIL, f"GET {url} answered HTTP {code}: {_excerpt(answer.get('body'))}",
                      "check authentik.url: it is Authentik's base URL, without /api/v3", {"url": url, "status": code})
    try:
        results = json.loads(answer.get("body") or "")["results"]
    except (ValueError, KeyError, TypeError):
        return result(name, FAIL, f"GET {url} answered something else than Authentik's blueprint list: {_excerpt(answer.get('body'))}",
                      "check authentik.url", {"url": url})
    if not results:
        return result(name, FAIL, f"Authentik has no blueprint instance named {blueprint_name}: its worker does not see the file",
                      f"list the ConfigMap {configmap_name} under blueprints.configMaps in the Authentik Helm values; "
                      f"kubectl -n {authentik_namespace} logs deployment/authentik-worker | grep -i blueprint", {"url": url})
    instance = results[0]
    status = instance.get("status")
    details = {"url": url, "status": status, "last_applied": instance.get("last_applied"), "enabled": instance.get("enabled")}
    if status == "successful":
        return result(name, OK, f"blueprint {blueprint_name} applied (last {instance.get('last_applied') or 'unknown'})", "", details)
    return result(name, FAIL, f"the blueprint instance {blueprint_name} reports status {_quote(status)}",
                  f"kubectl -n {authentik_namespace} logs deployment/authentik-worker | grep -i {blueprint_name}  # a worker "
                  "without the client-secret environment variable is the usual cause (see the authentik role's README)", details)


def _excerpt(body, limit: int = 200) -> str:
    text = " ".join(str(body or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


# --- routes --------------------------------------------------------------------------------------

def _same_parent(reference: dict, reported: dict, route_namespace: str) -> bool:
    def key(ref):
        return (ref.get("group", "gateway.networking.k8s.io"), ref.get("kind", "Gateway"), ref.get("namespace") or route_namespace,
                ref.get("name"), ref.get("sectionName"), ref.get("port"))
    return key(reference) == key(reported)


def check_route(kind: str, namespace: str, route_name: str, route: dict | None) -> dict:
    """Accepted and ResolvedRefs of each parent of an HTTPRoute or GRPCRoute; no status at all is a warning."""
    name = "http_route" if kind == "HTTPRoute" else "grpc_route"
    look = f"kubectl -n {namespace} get {kind.lower()} {route_name} -o yaml"
    if route is None:
        return result(name, FAIL, f"no {kind} {namespace}/{route_name}",
                      f"{look}  # run the networking role (playbooks/site.yml --tags networking)")
    generation = (route.get("metadata") or {}).get("generation")
    refs = (route.get("spec") or {}).get("parentRefs") or []
    reported = ((route.get("status") or {}).get("parents")) or []
    if not reported:
        return result(name, WARN, f"no gateway controller reports a status for the {kind} {route_name} "
                                  f"(parents {', '.join(_parent_label(r, namespace) for r in refs) or 'none'})",
                      f"{look}; kubectl get gateway -A  # does a controller serve the Gateway's class?",
                      {"parents": [_parent_label(r, namespace) for r in refs]})
    statuses, words, parents = [], [], []
    for ref in refs:
        label = _parent_label(ref, namespace)
        entry = next((p for p in reported if _same_parent(ref, p.get("parentRef") or {}, namespace)), None)
        if entry is None:
            statuses.append(WARN)
            words.append(f"{label}: no status reported")
            parents.append({"parent": label, "status": WARN})
            continue
        conditions = {c.get("type"): c for c in entry.get("conditions") or []}
        parent_status, parent_words = OK, []
        for wanted in ("Accepted", "ResolvedRefs"):
            condition = conditions.get(wanted)
            if condition is None:
                parent_status = _worst([parent_status, WARN])
                parent_words.append(f"no {wanted} condition")
            elif condition.get("status") != "True":
                parent_status = FAIL
                parent_words.append(f"{wanted} {condition.get('status')} ({condition.get('reason')}: {condition.get('message')})")
            elif generation is not None and condition.get("observedGeneration") not in (None, generation):
                parent_status = _worst([parent_status, WARN])
                parent_words.append(f"{wanted} is for generation {condition.get('observedGeneration')}, not {generation}")
        statuses.append(parent_status)
        words.append(f"{label}: " + ("Accepted, ResolvedRefs" if parent_status == OK else "; ".join(parent_words)))
        parents.append({"parent": label, "status": parent_status})
    status = _worst(statuses)
    hint = "" if status == OK else (f"{look}  # read status.parents; check the listener admits routes from {namespace} and "
                                    "that the backends (Services flyteadmin, flyteconsole) exist")
    return result(name, status, f"{kind} {route_name}: " + " | ".join(words), hint, {"parents": parents})


def _parent_label(ref: dict, route_namespace: str) -> str:
    label = f"{ref.get('namespace') or route_namespace}/{ref.get('name')}"
    return label + (f"#{ref['sectionName']}" if ref.get("sectionName") else "")


# --- FlyteAdmin ----------------------------------------------------------------------------------

def _dig(data, *path):
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def check_admin_auth_config(namespace: str, configmap_name: str, configmap: dict | None, expected_issuer: str | None,
                            expected_server_type: str | None = "External") -> dict:
    """server.yaml of FlyteAdmin's base config: auth on, the auth server type, and the OpenID issuer."""
    name = "admin_auth_config"
    look = f"kubectl -n {namespace} get configmap {configmap_name} -o yaml | grep -A 20 \"auth:\""
    if configmap is None:
        return result(name, FAIL, f"no ConfigMap {namespace}/{configmap_name}: flyte-core is not installed in {namespace}",
                      f"helm -n {namespace} list; run the flyte role (playbooks/site.yml --tags flyte)")
    text = (configmap.get("data") or {}).get("server.yaml")
    if not text:
        return result(name, FAIL, f"the ConfigMap {configmap_name} has no server.yaml", look)
    try:
        server = _load_yaml(text)
    except ValueError as error:
        return result(name, FAIL, f"server.yaml of {configmap_name} is not YAML: {error}", look)
    use_auth = _dig(server, "server", "security", "useAuth")
    server_type = _dig(server, "auth", "appAuth", "authServerType")
    base_url = _dig(server, "auth", "userAuth", "openId", "baseUrl")
    external = _dig(server, "auth", "appAuth", "externalAuthServer", "baseUrl")
    details = {"use_auth": use_auth, "auth_server_type": server_type, "openid_base_url": base_url,
               "external_auth_server_base_url": external, "expected_issuer": expected_issuer}
    fix = "set it in the flyte role's values (configmap.adminServer) and re-run the role"
    problems = []
    if use_auth is not True:
        problems.append(f"server.security.useAuth is {_quote(use_auth)}: FlyteAdmin serves without authentication")
    if not server_type:
        problems.append("auth.appAuth.authServerType is not set (FlyteAdmin falls back to its own authorization server)")
    elif expected_server_type and server_type != expected_server_type:
        problems.append(f"auth.appAuth.authServerType is {_quote(server_type)}, expected {_quote(expected_server_type)}")
    if not base_url:
        problems.append("auth.userAuth.openId.baseUrl is not set: FlyteAdmin has no OIDC issuer")
    elif expected_issuer and base_url != expected_issuer:
        problems.append(f"auth.userAuth.openId.baseUrl is {_quote(base_url)}, expected the issuer {_quote(expected_issuer)}")
    if server_type == "External" and expected_issuer and external and external != expected_issuer:
        problems.append(f"auth.appAuth.externalAuthServer.baseUrl is {_quote(external)}, expected {_quote(expected_issuer)}")
    if problems:
        return result(name, FAIL, "; ".join(problems), f"{look}  # {fix}", details)
    compared = f"issuer {base_url}" if expected_issuer else f"issuer {base_url} (not compared: no expected issuer given)"
    return result(name, OK, f"useAuth true, authServerType {server_type}, {compared}", "", details)


def _load_yaml(text: str):
    if yaml is None:
        raise ValueError("PyYAML is not installed")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(" ".join(str(error).split())) from error


def check_admin_healthcheck(where: str, answer: dict, namespace: str, service: str) -> dict:
    """FlyteAdmin's /healthcheck: HTTP 200 is ok; anything else says what answered instead."""
    name = "admin_healthcheck"
    hint = (f"kubectl -n {namespace} get endpointslices -l kubernetes.io/service-name={service}; "
            f"kubectl -n {namespace} logs deployment/{service} --tail=50")
    if answer.get("error"):
        return result(name, FAIL, f"GET {where} failed: {answer['error']}", hint, {"url": where})
    code = answer.get("status")
    if code == 200:
        return result(name, OK, f"GET {where} answered HTTP 200", "", {"url": where, "status": code})
    body = answer.get("body") or ""
    try:  # the API server's proxy answers with a Status object when it cannot reach a pod
        status = json.loads(body)
        reason = status.get("message") if isinstance(status, dict) and status.get("kind") == "Status" else None
    except ValueError:
        reason = None
    message = f"GET {where} answered HTTP {code}: {reason or _excerpt(body) or 'no body'}"
    if reason and "no endpoints available" in reason:
        message += f" (no ready flyteadmin pod backs the Service {service})"
    return result(name, FAIL, message, hint, {"url": where, "status": code})


def check_oidc_discovery(issuer: str | None, answer: dict | None, source: str = "") -> dict:
    """The issuer's discovery document: reachable, JSON, naming the same issuer; HS256-only signing is a warning."""
    name = "oidc_discovery"
    if not issuer:
        return result(name, SKIPPED, "no issuer known: give authentik.issuer_url (or authentik.url), or FlyteAdmin's config names none")
    url = discovery_url(issuer)
    hint = f"curl -s {url}  # is Authentik up and the application's slug right? FlyteAdmin fetches this document at start"
    details = {"url": url, "issuer": issuer, "issuer_from": source or "parameters"}
    if answer.get("error"):
        return result(name, FAIL, f"GET {url} failed: {answer['error']}", hint, details)
    if answer.get("status") != 200:
        return result(name, FAIL, f"GET {url} answered HTTP {answer.get('status')}: {_excerpt(answer.get('body'))}", hint, details)
    try:
        document = json.loads(answer.get("body") or "")
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return result(name, FAIL, f"GET {url} did not answer a JSON discovery document: {_excerpt(answer.get('body'))}", hint, details)
    found = document.get("issuer")
    details["document_issuer"] = found
    if found != issuer:
        return result(name, FAIL, f"the discovery document names the issuer {_quote(found)}, not {_quote(issuer)}",
                      "Authentik builds the issuer from the URL it is reached at: behind a proxy it needs X-Forwarded-Proto "
                      "and Host; FlyteAdmin's openId.baseUrl must be exactly that issuer", details)
    algorithms = document.get("id_token_signing_alg_values_supported") or []
    if algorithms and all(a == "HS256" for a in algorithms):
        return result(name, WARN, f"{found} signs ID tokens with HS256 only: FlyteAdmin cannot verify flytectl's tokens",
                      "give the Authentik provider a signing key (the authentik role's authentik_signing_key_name)", details)
    return result(name, OK, f"{url} names the issuer {found}", "", details)


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


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


# --- I/O -----------------------------------------------------------------------------------------

class ReadError(Exception):
    """A read that failed for a reason other than absence, worded for the person running the check."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def api_path(api_version: str, kind_plural: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{kind_plural}" + (f"/{name}" if name else "")


class Reader:
    """The I/O of the checks: Kubernetes reads through one ApiClient, exec through another (the
    client's stream() swaps the ApiClient's request method while it runs, so it must not share
    one with concurrent reads), HTTP through Ansible's open_url, SQL through psycopg.

    Reads are cached for the round, so two checks needing the same object read it once.
    """

    def __init__(self, api, exec_api=None, request_timeout: float = 10, open_url=None) -> None:
        self.api, self.exec_api, self.request_timeout = api, exec_api, request_timeout
        self._open_url = open_url
        self._cache: dict = {}
        self._lock = threading.Lock()
        self._pending: dict = {}

    # Kubernetes
    def _get_json(self, path: str, query: list | None = None):
        key = (path, tuple(query or ()))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            event = self._pending.get(key)
            owner = event is None
            if owner:
                event = self._pending[key] = threading.Event()
        if not owner:
            event.wait(self.request_timeout + 1)
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            # The first reader failed: read again for this check, which then reports its own error.
        try:
            value = self._fetch_json(path, query)
        except Exception:
            with self._lock:
                self._pending.pop(key, None)
            event.set()
            raise
        with self._lock:
            self._cache[key] = value
            self._pending.pop(key, None)
        event.set()
        return value

    def _fetch_json(self, path: str, query: list | None):
        from kubernetes.client.exceptions import ApiException
        try:
            response = self.api.call_api(path, "GET", query_params=list(query or []), header_params={"Accept": "application/json"},
                                         auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                                         _request_timeout=self.request_timeout)
        except ApiException as error:
            if error.status == 404 and _names_an_object(error):
                return None
            raise _api_error(error, path) from error
        except Exception as error:  # urllib3 errors: refused, timed out, TLS
            raise ReadError(f"cannot reach the API server for GET {path}: {error}",
                            "check the kubeconfig or K8S_AUTH_* options, and that the API server answers") from error
        return json.loads(response.data)

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict | None:
        return self._get_json(api_path(api_version, plural, namespace, name))

    def list(self, api_version: str, plural: str, namespace: str, label_selector: str | None = None) -> list[dict]:
        query = [("labelSelector", label_selector)] if label_selector else []
        answer = self._get_json(api_path(api_version, plural, namespace), query)
        return (answer or {}).get("items") or []

    def secret_keys(self, namespace: str, name: str) -> list[str] | None:
        """The names of the Secret's keys that hold a value; the values are dropped here."""
        secret = self._fetch_json(api_path("v1", "secrets", namespace, name), None)
        if secret is None:
            return None
        return sorted(k for k, v in (secret.get("data") or {}).items() if v)

    def exec(self, namespace: str, pod: str, container: str, command: list[str], timeout: float):
        from ansible_collections.homelab.flyte.plugins.module_utils.kube import exec_in_pod
        return exec_in_pod(self.exec_api or self.api, namespace, pod, container, command, timeout=timeout)

    def proxy_get(self, namespace: str, service: str, port: str, path: str) -> dict:
        """GET through the API server's service proxy, as `kubectl get --raw` would."""
        from kubernetes.client.exceptions import ApiException
        url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        try:
            response = self.api.call_api(url, "GET", auth_settings=["BearerToken"], _preload_content=False,
                                         _return_http_data_only=True, _request_timeout=self.request_timeout)
        except ApiException as error:
            return {"status": error.status, "body": error.body if isinstance(error.body, str) else (error.body or b"").decode("utf-8", "replace")}
        except Exception as error:  # noqa: BLE001
            return {"error": f"{type(error).__name__}: {error}"}
        return {"status": response.status, "body": response.data.decode("utf-8", "replace")}

    # HTTP
    def http_get(self, url: str, headers: dict | None = None, validate_certs: bool = True) -> dict:
        from urllib.error import HTTPError

        from ansible.module_utils.urls import open_url as ansible_open_url
        opener = self._open_url or ansible_open_url
        try:
            response = opener(url, headers=headers or {}, validate_certs=validate_certs, timeout=self.request_timeout,
                              follow_redirects="safe")
            return {"status": response.getcode(), "body": response.read().decode("utf-8", "replace")}
        except HTTPError as error:
            try:
                body = error.read().decode("utf-8", "replace")
            except Exception:  # noqa: BLE001
                body = ""
            return {"status": error.code, "body": body}
        except Exception as error:  # noqa: BLE001 - refused, DNS, TLS, timeout: all are the answer
            return {"error": f"{getattr(error, 'reason', None) or error}"}

    # SQL
    def sql_select_1(self, host: str, port: int, user: str, password: str | None, database: str, sslmode: str) -> None:
        if not HAS_PSYCOPG:
            raise ReadError("psycopg is not installed on the host running the module, so database.host cannot be used",
                            "pip install 'psycopg[binary]', or leave database.host empty to check through kubectl exec")
        connection = psycopg.connect(host=host, port=port, user=user, password=password, dbname=database, sslmode=sslmode,
                                     connect_timeout=max(1, int(self.request_timeout)))
        try:
            connection.execute("select 1").fetchone()
        finally:
            connection.close()


def _names_an_object(error) -> bool:
    """Whether a 404 says the object is absent (its Status names it), not that the API server lacks the resource type."""
    try:
        return bool((json.loads(error.body).get("details") or {}).get("name"))
    except Exception:  # noqa: BLE001
        return False


def _api_error(error, path: str) -> ReadError:
    try:
        message = json.loads(error.body).get("message")
    except Exception:  # noqa: BLE001
        message = None
    message = message or error.reason
    if error.status == 403:
        return ReadError(f"the API server forbids GET {path}: {message}",
                         "give the credentials the module uses get/list on pods, secrets, configmaps, clusters.postgresql.cnpg.io, "
                         "onepassworditems.onepassword.com, httproutes and grpcroutes in the namespaces checked "
                         "(kubectl auth can-i get <resource> -n <namespace>)")
    if error.status == 401:
        return ReadError(f"the API server does not accept the credentials: {message}", "check the kubeconfig or K8S_AUTH_* options")
    if error.status == 404:
        return ReadError(f"the API server does not serve {path.rsplit('/', 1)[0]}: {message}",
                         "is the CRD (or operator) installed? `kubectl api-resources` lists what the API server serves")
    return ReadError(f"GET {path} answered HTTP {error.status}: {message}", "")


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
        pods = r.list("v1", "pods", db_namespace, PRIMARY_SELECTOR.format(cluster=cluster))
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
                server = _load_yaml(((configmap or {}).get("data") or {}).get("server.yaml") or "") or {}
            except ValueError:
                server = {}
            found, source = _dig(server, "auth", "userAuth", "openId", "baseUrl"), f"{admin['configmap']} (auth.userAuth.openId.baseUrl)"
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
            db_namespace, database["cluster_name"], r.get("postgresql.cnpg.io/v1", "clusters", db_namespace, database["cluster_name"])),
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


def reader_factory(api, request_timeout: float):
    """A function giving each round a fresh Reader over copies of api (one for reads, one for exec)."""
    from kubernetes.client import ApiClient

    def client():
        configuration = copy.copy(api.configuration)
        # Every check may read at once: a pool smaller than that logs "Connection pool is full".
        configuration.connection_pool_maxsize = max(getattr(configuration, "connection_pool_maxsize", 0) or 0, 32)
        new = ApiClient(configuration)
        for header, value in getattr(api, "default_headers", {}).items():
            new.set_default_header(header, value)
        return new

    reads, execs = client(), client()
    return lambda: Reader(reads, execs, request_timeout=request_timeout)


def run(params: dict, api, clock=time.monotonic, sleep=time.sleep) -> dict:
    """Everything the module does after argument parsing: the checks, waited for when asked."""
    new_reader = reader_factory(api, params["check_timeout"])
    return evaluate(lambda: plan(params), new_reader, wait=params["wait"], timeout=params["timeout"],
                    sleep_seconds=params["wait_sleep"], check_timeout=params["check_timeout"], clock=clock, sleep=sleep)
