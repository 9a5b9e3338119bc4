# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health checks of a Flyte deployment as pure functions: the result statuses, the check names, and one function per check.

Each check function (``check_*``) takes what was read from the cluster or an HTTP endpoint and
returns one result ``{name, status, message, hint, details}``. Nothing here does I/O, so the unit
tests feed the checks recorded or constructed data; the reads are health_reader's, and health
plans and runs the checks.

No result ever holds a secret value: the Secret check is given the names of the Secret's keys, never their values.
"""

from __future__ import annotations

import json

try:
    import yaml
except ImportError:  # AnsibleK8SModule reports a missing PyYAML itself
    yaml = None

# The database check words its hints with the names the database module_utils logs in as and finds the primary by.
from ansible_collections.homelab.flyte.plugins.module_utils.cnpg import HEALTHY_PHASE, PRIMARY_SELECTOR
from ansible_collections.homelab.flyte.plugins.module_utils.database import LOCAL_SUPERUSER

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
STATUSES = (OK, WARN, FAIL, SKIPPED)
_SEVERITY = {SKIPPED: 0, OK: 1, WARN: 2, FAIL: 3}

COMPONENTS = ["flyteadmin", "flytepropeller", "datacatalog", "flyteconsole", "flytescheduler"]
SECRET_KEYS = ["username", "password", "oidc-client-id", "oidc-client-secret"]
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
    if phase == HEALTHY_PHASE and ready >= wanted:
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

def dig(data, *path):
    """The value at the keys of path in nested mappings, or None where one is missing."""
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
        server = load_yaml(text)
    except ValueError as error:
        return result(name, FAIL, f"server.yaml of {configmap_name} is not YAML: {error}", look)
    use_auth = dig(server, "server", "security", "useAuth")
    server_type = dig(server, "auth", "appAuth", "authServerType")
    base_url = dig(server, "auth", "userAuth", "openId", "baseUrl")
    external = dig(server, "auth", "appAuth", "externalAuthServer", "baseUrl")
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


def load_yaml(text: str):
    """A YAML document (a ConfigMap's file) parsed, or ValueError with the parser's message on one line."""
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
