"""The health checks of module_utils/health_checks.py, health_reader.py and health.py over constructed and recorded data:
every check's ok, warn and fail paths with their hints (health_checks), the concurrent round with its time bound, the
wait loop on a fake clock, the summary, the parameters and the plan (health), and the Reader's I/O edge with fake
clients (health_reader). No cluster, no network.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from kubernetes.client.exceptions import ApiException

from ansible_collections.homelab.flyte.plugins.module_utils import database, health, health_checks, health_reader
from ansible_collections.homelab.flyte.plugins.module_utils.health_checks import FAIL, OK, SKIPPED, WARN

NS = "flyte-system"
ISSUER = "https://auth.example.com/application/o/flyte/"


# --- constructed Kubernetes objects --------------------------------------------------------------

def pod(name, ready=True, phase="Running", containers=None, init=None, conditions=None, deleting=False, reason=None):
    status = {"phase": phase, "conditions": conditions if conditions is not None else [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True" if ready else "False",
                                                     "reason": None if ready else "ContainersNotReady"}]}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    if reason:
        status["reason"] = reason
    metadata = {"name": name, "namespace": NS}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "status": status}


def container(name, ready=False, waiting=None, terminated=None, restarts=0, last=None, running=False):
    state = {}
    if waiting:
        state["waiting"] = waiting
    if terminated:
        state["terminated"] = terminated
    if running:
        state["running"] = {"startedAt": "2026-01-01T00:00:00Z"}
    entry = {"name": name, "ready": ready, "state": state, "restartCount": restarts}
    if last:
        entry["lastState"] = {"terminated": last}
    return entry


def cluster(phase="Cluster in healthy state", ready=1, instances=1, reason=None):
    status = {"phase": phase, "readyInstances": ready, "instances": instances, "currentPrimary": "flyte-postgres-1"}
    if reason:
        status["phaseReason"] = reason
    return {"metadata": {"name": "flyte-postgres"}, "spec": {"instances": instances}, "status": status}


PARENT = {"name": "platform-gateway", "namespace": "gateway-system", "sectionName": "https"}


def route(kind="HTTPRoute", parents=None, generation=1, refs=(PARENT,), status=True):
    obj = {"kind": kind, "metadata": {"name": "flyte", "generation": generation}, "spec": {"parentRefs": list(refs)}}
    if status:
        obj["status"] = {"parents": parents if parents is not None else [accepted(PARENT, generation)]}
    return obj


def accepted(ref, generation=1, accepted_status="True", resolved_status="True", resolved=True, message="Accepted"):
    conditions = [{"type": "Accepted", "status": accepted_status, "reason": "Accepted" if accepted_status == "True" else "NotAllowedByListeners",
                   "message": message, "observedGeneration": generation}]
    if resolved:
        conditions.append({"type": "ResolvedRefs", "status": resolved_status, "reason": "ResolvedRefs" if resolved_status == "True"
                           else "BackendNotFound", "message": "backend", "observedGeneration": generation})
    return {"parentRef": dict(ref), "controllerName": "example.com/gateway", "conditions": conditions}


def server_yaml(use_auth=True, server_type="External", base_url=ISSUER, external=ISSUER):
    doc = {"server": {"security": {"secure": False, "useAuth": use_auth}},
           "auth": {"appAuth": {"externalAuthServer": {"baseUrl": external, "metadataUrl": ".well-known/openid-configuration"}},
                    "userAuth": {"openId": {"baseUrl": base_url, "clientId": "flyte"}}}}
    if server_type is not None:
        doc["auth"]["appAuth"]["authServerType"] = server_type
    import yaml
    return {"metadata": {"name": "flyte-admin-base-config"}, "data": {"server.yaml": yaml.safe_dump(doc), "db.yaml": "x: 1"}}


def http(status=200, body=None, error=None):
    if error:
        return {"error": error}
    return {"status": status, "body": body if isinstance(body, str) or body is None else json.dumps(body)}


# --- component pods ------------------------------------------------------------------------------

def test_pods_all_ready_is_ok():
    got = health_checks.check_component_pods("flyteadmin", NS, [pod("flyteadmin-b"), pod("flyteadmin-a")])
    assert got["status"] == OK and got["name"] == "flyteadmin_pods"
    assert got["message"] == "2/2 pods ready (flyteadmin-a, flyteadmin-b)" and got["hint"] == ""


def test_no_pods_fails_with_the_scale_hint():
    got = health_checks.check_component_pods("flytepropeller", NS, [])
    assert got["status"] == FAIL
    assert got["message"] == "no running pods labelled app.kubernetes.io/name=flytepropeller in flyte-system"
    assert "kubectl -n flyte-system get deployment flytepropeller" in got["hint"]
    assert "scale deployment flytepropeller --replicas=1" in got["hint"]


def test_only_terminating_or_finished_pods_count_as_none():
    got = health_checks.check_component_pods("datacatalog", NS, [pod("d-1", deleting=True), pod("d-2", phase="Succeeded")])
    assert got["status"] == FAIL and "(2 terminating or finished)" in got["message"]


def test_crash_looping_container_is_named_with_reason_restarts_and_previous_logs():
    crashing = pod("flyteadmin-x", ready=False, containers=[container(
        "flyteadmin", waiting={"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"},
        restarts=7, last={"reason": "Error", "exitCode": 1})])
    got = health_checks.check_component_pods("flyteadmin", NS, [crashing])
    assert got["status"] == FAIL
    assert got["message"] == ("0/1 pods ready; not ready: flyteadmin-x (Running): container flyteadmin: CrashLoopBackOff: "
                              "back-off 5m0s restarting failed container, 7 restarts (last: Error, exit code 1)")
    assert got["hint"] == ("kubectl -n flyte-system describe pod flyteadmin-x; "
                           "kubectl -n flyte-system logs flyteadmin-x -c flyteadmin --previous")
    assert got["details"]["not_ready"][0]["containers"][0]["restarts"] == 7


def test_some_ready_is_a_warning():
    got = health_checks.check_component_pods("flyteconsole", NS, [pod("c-1"), pod("c-2", ready=False, containers=[
        container("flyteconsole", running=True)])])
    assert got["status"] == WARN
    assert "1/2 pods ready; not ready: c-2 (Running): container flyteconsole: running but not ready (readiness probe failing)" \
        == got["message"]
    assert got["hint"] == "kubectl -n flyte-system describe pod c-2; kubectl -n flyte-system logs c-2 -c flyteconsole"


def test_waiting_init_container_is_the_one_whose_logs_are_suggested():
    stuck = pod("flyteadmin-y", ready=False, phase="Pending",
                init=[container("run-migrations", terminated={"reason": "Error", "exitCode": 1, "message": "connection refused"},
                                restarts=2)],
                containers=[container("flyteadmin", waiting={"reason": "PodInitializing"})])
    got = health_checks.check_component_pods("flyteadmin", NS, [stuck])
    assert "init container run-migrations: Error (exit code 1): connection refused, 2 restarts" in got["message"]
    assert "container flyteadmin: PodInitializing" in got["message"]
    assert got["hint"].endswith("logs flyteadmin-y -c run-migrations --previous")


def test_unscheduled_pod_says_why():
    pending = pod("p-1", ready=False, phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}])
    got = health_checks.check_component_pods("flytepropeller", NS, [pending])
    assert got["status"] == FAIL
    assert got["message"].endswith("p-1 (Pending): not scheduled: 0/3 nodes are available: 3 Insufficient cpu.")
    assert got["hint"] == "kubectl -n flyte-system describe pod p-1"


def test_pod_without_any_status_yet():
    got = health_checks.check_component_pods("flytescheduler", NS, [pod("s-1", ready=False, phase="Pending", conditions=[])])
    assert "no Ready condition reported yet" in got["message"]


def test_volume_claims():
    assert health_checks.check_volume_claims(NS, [])["status"] == OK
    bound = {"metadata": {"name": "flyte-artifacts"}, "status": {"phase": "Bound"}}
    assert health_checks.check_volume_claims(NS, [bound])["message"] == "1 PersistentVolumeClaims bound"
    pending = {"metadata": {"name": "flyte-postgres-1"}, "spec": {"storageClassName": "longhorn"}, "status": {"phase": "Pending"}}
    got = health_checks.check_volume_claims(NS, [bound, pending])
    assert got["status"] == FAIL and got["message"] == "flyte-postgres-1 is Pending (class longhorn)"
    assert got["hint"].startswith("kubectl -n flyte-system describe pvc flyte-postgres-1")


# --- database ------------------------------------------------------------------------------------

def test_cluster_healthy():
    got = health_checks.check_database_cluster(NS, "flyte-postgres", cluster())
    assert got["status"] == OK and got["message"] == 'phase "Cluster in healthy state", 1/1 instances ready'


def test_cluster_missing():
    got = health_checks.check_database_cluster(NS, "flyte-postgres", None)
    assert got["status"] == FAIL and got["message"] == "no CloudNativePG Cluster flyte-system/flyte-postgres"
    assert got["hint"].startswith("kubectl -n flyte-system get cluster flyte-postgres")


def test_cluster_held_in_a_phase_fails_with_the_operator_hint():
    got = health_checks.check_database_cluster(NS, "flyte-postgres", cluster("Setting up primary", ready=0, reason="Creating primary instance"))
    assert got["status"] == FAIL
    assert got["message"] == 'phase "Setting up primary" (Creating primary instance), 0/1 instances ready'
    assert "kubectl -n flyte-system get cluster flyte-postgres" in got["hint"]
    assert "kubectl -n flyte-system describe cluster flyte-postgres" in got["hint"]
    assert "app.kubernetes.io/name=cloudnative-pg" in got["hint"]


def test_cluster_busy_but_serving_is_a_warning():
    assert health_checks.check_database_cluster(NS, "c", cluster("Switchover in progress", ready=2, instances=3))["status"] == WARN
    assert health_checks.check_database_cluster(NS, "c", cluster(ready=2, instances=3))["status"] == WARN


def test_cluster_without_status_means_no_operator():
    got = health_checks.check_database_cluster(NS, "c", {"spec": {"instances": 1}})
    assert got["status"] == FAIL and "no CloudNativePG operator has reconciled it" in got["message"]


def attempt(**extra):
    base = {"via": "exec", "target": "flyte-postgres-1", "user": "flyte", "database": "flyteadmin", "namespace": NS,
            "cluster": "flyte-postgres", "command": ["psql", "-X"]}
    base.update(extra)
    return base


def test_query_answered():
    got = health_checks.check_database_query(attempt(rc=0, login=json.loads(login_document()[1])))
    assert got["status"] == OK and got["message"].startswith("flyte may log in to flyteadmin")


@pytest.mark.parametrize("extra, message, hint", [
    ({"rc": 2, "stderr": 'psql: error: connection to server on socket "/controller/run/.s.PGSQL.5432" failed: FATAL:  database "flyteadmin" does not exist\n'},
     "the database flyteadmin does not exist on the Cluster flyte-postgres", "spec.bootstrap.initdb.database"),
    ({"rc": 2, "stderr": 'psql: error: connection to server on socket "/controller/run/.s.PGSQL.5432" failed: '
                         'FATAL:  Peer authentication failed for user "postgres"'},
     "PostgreSQL refused postgres over the pod's local socket", "ident map `local`"),
    ({"rc": 2, "stderr": 'psql: error: connection to server at "127.0.0.1", port 5432 failed: Connection refused'},
     "psql -U postgres -d flyteadmin in flyte-postgres-1 failed (exit code 2): psql: error: connection to server at "
     '"127.0.0.1", port 5432 failed: Connection refused', "kubectl -n flyte-system logs flyte-postgres-1 -c postgres"),
    ({"rc": 127, "stderr": 'exec: "psql": executable file not found in $PATH'}, "no psql in the container", "image"),
    ({"error": "(400) Reason: Bad Request: container not found (\"postgres\")"}, "cannot exec into flyte-postgres-1", "describe pod"),
    ({"error": "Handshake status 500: unable to upgrade connection: pod does not exist"}, "cannot exec into", "describe pod"),
    ({"no_pod": True, "target": "flyte-postgres primary", "problem": "The CloudNativePG cluster flyte-postgres has no primary pod.",
      "hint": "kubectl get cluster flyte-postgres -n flyte-system"},
     "The CloudNativePG cluster flyte-postgres has no primary pod.", "kubectl get cluster flyte-postgres"),
])
def test_query_failures_are_explained(extra, message, hint):
    got = health_checks.check_database_query(attempt(**extra))
    assert got["status"] == FAIL
    assert got["message"].startswith(message), got["message"]
    assert hint in got["hint"], got["hint"]


@pytest.mark.parametrize("extra, message, hint", [
    ({"error": 'connection failed: FATAL:  password authentication failed for user "flyte"'},
     "PostgreSQL refused the user flyte", "the credentials Secret"),
    ({"error": "fe_sendauth: no password supplied"}, "PostgreSQL refused the user flyte", "spec.bootstrap.initdb.owner"),
])
def test_direct_login_failures_are_explained(extra, message, hint):
    got = health_checks.check_database_query(attempt(via="direct", target="db.example:5432", command=None, **extra))
    assert got["status"] == FAIL and got["message"].startswith(message), got["message"]
    assert hint in got["hint"], got["hint"]


def test_direct_query_failure():
    got = health_checks.check_database_query(attempt(via="direct", target="db.example:5432", command=None,
                                                     error="connection timeout expired"))
    assert got["status"] == FAIL and got["message"].startswith("flyte@db.example:5432/flyteadmin did not answer in time")
    assert "kubectl -n flyte-system exec -it flyte-postgres-1 -c postgres -- psql -U postgres -d flyteadmin" in got["hint"]
    ok = health_checks.check_database_query(attempt(via="direct", target="db.example:5432", command=None, error=None, rc=0))
    assert ok["status"] == OK and ok["message"] == "flyte@db.example:5432/flyteadmin answered select 1"


# --- secrets -------------------------------------------------------------------------------------

def op_item(status=None, message=None):
    item = {"metadata": {"name": "flyte-secrets"}, "spec": {"itemPath": "vaults/Secrets/items/flyte-secrets"}}
    if status:
        item["status"] = {"conditions": [{"type": "Ready", "status": status, "message": message}]}
    return item


def test_onepassword_item():
    assert health_checks.check_onepassword_item(NS, "flyte-secrets", op_item("True", "synced"))["status"] == OK
    missing = health_checks.check_onepassword_item(NS, "flyte-secrets", None)
    assert missing["status"] == FAIL and missing["hint"].startswith("kubectl -n flyte-system describe onepassworditem flyte-secrets")
    failing = health_checks.check_onepassword_item(NS, "flyte-secrets", op_item("False", "item vaults/Secrets/items/flyte-secrets not found"))
    assert failing["status"] == FAIL
    assert failing["message"] == ("the 1Password operator cannot sync vaults/Secrets/items/flyte-secrets: "
                                  "item vaults/Secrets/items/flyte-secrets not found")
    unsynced = health_checks.check_onepassword_item(NS, "flyte-secrets", op_item())
    assert unsynced["status"] == FAIL and "has no Ready condition" in unsynced["message"]


def test_secret_keys():
    keys = health_checks.SECRET_KEYS
    assert health_checks.check_secret_keys(NS, "flyte-secrets", sorted(keys), keys)["status"] == OK
    got = health_checks.check_secret_keys(NS, "flyte-secrets", ["password", "username"], keys)
    assert got["status"] == FAIL and got["message"] == "the Secret flyte-system/flyte-secrets lacks a value for oidc-client-id, oidc-client-secret"
    assert got["details"]["missing"] == ["oidc-client-id", "oidc-client-secret"]
    absent = health_checks.check_secret_keys(NS, "flyte-secrets", None, keys)
    assert absent["status"] == FAIL and absent["message"] == "no Secret flyte-system/flyte-secrets"


# --- Authentik -----------------------------------------------------------------------------------

def test_blueprint_configmap():
    ok = health_checks.check_blueprint_configmap("authentik", "authentik-blueprint-flyte", {"data": {"flyte.yaml": "version: 1\n"}})
    assert ok["status"] == OK and ok["message"] == "authentik-blueprint-flyte holds flyte.yaml (11 bytes)"
    missing = health_checks.check_blueprint_configmap("authentik", "authentik-blueprint-flyte", None)
    assert missing["status"] == FAIL and missing["message"] == "no blueprint ConfigMap authentik/authentik-blueprint-flyte"
    assert missing["hint"].startswith("kubectl -n authentik get configmap authentik-blueprint-flyte")
    wrong = health_checks.check_blueprint_configmap("authentik", "authentik-blueprint-flyte", {"data": {"flyte.yml": "x", "empty.yaml": " "}})
    assert wrong["status"] == FAIL and "keys: empty.yaml, flyte.yml" in wrong["message"]


API = "https://auth.example.com/api/v3"


def test_blueprint_instance_skipped_without_a_token():
    assert health_checks.check_blueprint_instance("homelab-flyte-oidc", API, None)["status"] == SKIPPED


@pytest.mark.parametrize("answer, status, message", [
    (http(200, {"results": [{"name": "homelab-flyte-oidc", "status": "successful", "last_applied": "2026-01-01T00:00:00Z"}]}),
     OK, "blueprint homelab-flyte-oidc applied (last 2026-01-01T00:00:00Z)"),
    (http(200, {"pagination": {"count": 0}, "results": []}), FAIL, "Authentik has no blueprint instance named homelab-flyte-oidc"),
    (http(200, {"results": [{"status": "error"}]}), FAIL, 'the blueprint instance homelab-flyte-oidc reports status "error"'),
    (http(403, {"detail": "Token invalid/expired"}), FAIL, "Authentik refused the API token (HTTP 403)"),
    (http(502, "<html>Bad gateway</html>"), FAIL, "GET https://auth.example.com/api/v3/managed/blueprints/?name=homelab-flyte-oidc answered HTTP 502"),
    (http(200, "<html>login</html>"), FAIL, "GET https://auth.example.com/api/v3/managed/blueprints/?name=homelab-flyte-oidc answered something else"),
    (http(error="[Errno 111] Connection refused"), FAIL, "GET https://auth.example.com/api/v3/managed/blueprints/?name=homelab-flyte-oidc failed"),
])
def test_blueprint_instance(answer, status, message):
    got = health_checks.check_blueprint_instance("homelab-flyte-oidc", API, answer)
    assert got["status"] == status and got["message"].startswith(message), got
    assert (got["hint"] == "") == (status == OK)


def test_blueprint_instance_in_error_points_at_the_worker_log():
    got = health_checks.check_blueprint_instance("homelab-flyte-oidc", API, http(200, {"results": [{"status": "error"}]}))
    assert got["hint"].startswith("kubectl -n authentik logs deployment/authentik-worker")


# --- routes --------------------------------------------------------------------------------------

def test_route_accepted():
    got = health_checks.check_route("HTTPRoute", NS, "flyte", route())
    assert got["status"] == OK and got["message"] == "HTTPRoute flyte: gateway-system/platform-gateway#https: Accepted, ResolvedRefs"


def test_route_missing():
    got = health_checks.check_route("GRPCRoute", NS, "flyte", None)
    assert got["name"] == "grpc_route" and got["status"] == FAIL and got["message"] == "no GRPCRoute flyte-system/flyte"
    assert got["hint"].startswith("kubectl -n flyte-system get grpcroute flyte -o yaml")


def test_route_without_any_status_is_only_a_warning():
    got = health_checks.check_route("HTTPRoute", NS, "flyte", route(status=False))
    assert got["status"] == WARN and "no gateway controller reports a status" in got["message"]
    assert got["hint"].startswith("kubectl -n flyte-system get httproute flyte -o yaml")


def test_route_refused_by_a_parent_fails_naming_it():
    other = {"name": "internal", "namespace": "gateway-system"}
    got = health_checks.check_route("HTTPRoute", NS, "flyte", route(refs=(PARENT, other), parents=[
        accepted(PARENT), accepted(other, accepted_status="False", message="no listener admits the namespace")]))
    assert got["status"] == FAIL
    assert ("gateway-system/internal: Accepted False (NotAllowedByListeners: no listener admits the namespace)") in got["message"]
    assert got["details"]["parents"] == [{"parent": "gateway-system/platform-gateway#https", "status": OK},
                                         {"parent": "gateway-system/internal", "status": FAIL}]


def test_route_unresolved_backend_fails():
    got = health_checks.check_route("GRPCRoute", NS, "flyte", route(parents=[accepted(PARENT, resolved_status="False")]))
    assert got["status"] == FAIL and "ResolvedRefs False (BackendNotFound: backend)" in got["message"]


def test_route_status_of_an_older_generation_or_incomplete_is_a_warning():
    assert health_checks.check_route("HTTPRoute", NS, "flyte", route(generation=2, parents=[accepted(PARENT, 1)]))["status"] == WARN
    assert health_checks.check_route("HTTPRoute", NS, "flyte", route(parents=[accepted(PARENT, resolved=False)]))["status"] == WARN
    unrelated = accepted({"name": "elsewhere", "namespace": "x"})
    got = health_checks.check_route("HTTPRoute", NS, "flyte", route(parents=[unrelated]))
    assert got["status"] == WARN and "gateway-system/platform-gateway#https: no status reported" in got["message"]


def test_route_parent_in_the_route_namespace_matches_without_namespace():
    ref = {"name": "gw"}
    reported = accepted({"name": "gw", "namespace": NS, "group": "gateway.networking.k8s.io", "kind": "Gateway"})
    assert health_checks.check_route("HTTPRoute", NS, "flyte", route(refs=(ref,), parents=[reported]))["status"] == OK


# --- FlyteAdmin ----------------------------------------------------------------------------------

def test_admin_auth_config_ok():
    got = health_checks.check_admin_auth_config(NS, "flyte-admin-base-config", server_yaml(), ISSUER)
    assert got["status"] == OK and got["message"] == f"useAuth true, authServerType External, issuer {ISSUER}"


def test_admin_auth_config_without_expected_issuer_says_so():
    got = health_checks.check_admin_auth_config(NS, "flyte-admin-base-config", server_yaml(), None)
    assert got["status"] == OK and got["message"].endswith("(not compared: no expected issuer given)")


@pytest.mark.parametrize("configmap, message", [
    (None, "no ConfigMap flyte-system/flyte-admin-base-config: flyte-core is not installed in flyte-system"),
    ({"data": {"db.yaml": "x"}}, "the ConfigMap flyte-admin-base-config has no server.yaml"),
    ({"data": {"server.yaml": "server: [unclosed"}}, "server.yaml of flyte-admin-base-config is not YAML"),
    (server_yaml(use_auth=False), "server.security.useAuth is false: FlyteAdmin serves without authentication"),
    (server_yaml(server_type=None), "auth.appAuth.authServerType is not set"),
    (server_yaml(server_type="Self"), 'auth.appAuth.authServerType is "Self", expected "External"'),
    (server_yaml(base_url=None), "auth.userAuth.openId.baseUrl is not set"),
    (server_yaml(base_url="https://other.example.com/application/o/flyte/"),
     f'auth.userAuth.openId.baseUrl is "https://other.example.com/application/o/flyte/", expected the issuer "{ISSUER}"'),
    (server_yaml(external="https://old.example.com/"), 'auth.appAuth.externalAuthServer.baseUrl is "https://old.example.com/"'),
])
def test_admin_auth_config_failures(configmap, message):
    got = health_checks.check_admin_auth_config(NS, "flyte-admin-base-config", configmap, ISSUER)
    assert got["status"] == FAIL and got["message"].startswith(message), got["message"]
    if configmap is not None:
        assert got["hint"].startswith('kubectl -n flyte-system get configmap flyte-admin-base-config -o yaml | grep -A 20 "auth:"')


PROXY = "/api/v1/namespaces/flyte-system/services/flyteadmin:http/proxy/healthcheck"
# Recorded from a kube-apiserver 1.36 service proxy: a Service whose pods are not ready, and one
# whose endpoint refuses the connection.
NO_ENDPOINTS = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                '"message":"no endpoints available for service \\"flyteadmin:http\\"","reason":"ServiceUnavailable","code":503}')
REFUSED = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"error trying to reach service: '
           'dial tcp 10.244.1.7:8088: connect: connection refused","reason":"ServiceUnavailable","code":503}')


def test_admin_healthcheck_ok():
    got = health_checks.check_admin_healthcheck(PROXY, http(200, ""), NS, "flyteadmin")
    assert got["status"] == OK and got["message"] == f"GET {PROXY} answered HTTP 200"


@pytest.mark.parametrize("answer, message", [
    (http(503, NO_ENDPOINTS), f'GET {PROXY} answered HTTP 503: no endpoints available for service "flyteadmin:http" '
                              "(no ready flyteadmin pod backs the Service flyteadmin)"),
    (http(503, REFUSED), f"GET {PROXY} answered HTTP 503: error trying to reach service: dial tcp 10.244.1.7:8088: connect: connection refused"),
    (http(500, "internal error\n"), f"GET {PROXY} answered HTTP 500: internal error"),
    (http(404, ""), f"GET {PROXY} answered HTTP 404: no body"),
    (http(error="ReadTimeoutError: read timed out"), f"GET {PROXY} failed: ReadTimeoutError: read timed out"),
])
def test_admin_healthcheck_failures(answer, message):
    got = health_checks.check_admin_healthcheck(PROXY, answer, NS, "flyteadmin")
    assert got["status"] == FAIL and got["message"] == message
    assert got["hint"] == ("kubectl -n flyte-system get endpointslices -l kubernetes.io/service-name=flyteadmin; "
                           "kubectl -n flyte-system logs deployment/flyteadmin --tail=50")


DISCOVERY = {"issuer": ISSUER, "authorization_endpoint": "https://auth.example.com/application/o/authorize/",
             "jwks_uri": f"{ISSUER}jwks/", "id_token_signing_alg_values_supported": ["RS256"]}


def test_discovery_url():
    assert health_checks.discovery_url(ISSUER) == "https://auth.example.com/application/o/flyte/.well-known/openid-configuration"
    assert health_checks.discovery_url("https://idp.example.com") == "https://idp.example.com/.well-known/openid-configuration"


@pytest.mark.parametrize("answer, status, message", [
    (http(200, DISCOVERY), OK, f"{ISSUER}.well-known/openid-configuration names the issuer {ISSUER}"),
    (http(200, dict(DISCOVERY, issuer="http://auth.example.com/application/o/flyte/")), FAIL,
     f'the discovery document names the issuer "http://auth.example.com/application/o/flyte/", not "{ISSUER}"'),
    (http(200, dict(DISCOVERY, id_token_signing_alg_values_supported=["HS256"])), WARN, f"{ISSUER} signs ID tokens with HS256 only"),
    (http(404, {"detail": "Not found."}), FAIL, f"GET {ISSUER}.well-known/openid-configuration answered HTTP 404"),
    (http(200, "<html>"), FAIL, "GET https://auth.example.com/application/o/flyte/.well-known/openid-configuration did not answer a JSON"),
    (http(error="[Errno -2] Name or service not known"), FAIL, f"GET {ISSUER}.well-known/openid-configuration failed: [Errno -2]"),
])
def test_oidc_discovery(answer, status, message):
    got = health_checks.check_oidc_discovery(ISSUER, answer)
    assert got["status"] == status and got["message"].startswith(message), got["message"]


def test_oidc_discovery_without_issuer_is_skipped():
    assert health_checks.check_oidc_discovery(None, None)["status"] == SKIPPED


# --- rounds, time bounds, the wait loop, the summary -------------------------------------------

def fixed(name, status="ok", delay=0.0):
    def run(_reader):
        if delay:
            time.sleep(delay)
        return health_checks.result(name, status, f"{name} is {status}")
    return health.Check(name, run)


def test_round_runs_checks_concurrently_and_keeps_their_order():
    checks = [fixed(f"c{i}", delay=0.3) for i in range(6)]
    started = time.monotonic()
    results = health.run_checks(checks, reader=None, check_timeout=5)
    assert time.monotonic() - started < 1.2  # six checks of 0.3s, not 1.8s in a row
    assert [r["name"] for r in results] == [f"c{i}" for i in range(6)]
    assert all(r["duration"] >= 0.29 for r in results)


def test_a_check_past_its_bound_fails_and_does_not_hold_the_others():
    release = threading.Event()

    def hang(_reader):
        release.wait(10)
        return health_checks.result("slow", OK, "late")
    started = time.monotonic()
    results = health.run_checks([health.Check("slow", hang), fixed("quick")], reader=None, check_timeout=0.2)
    assert time.monotonic() - started < 1.0
    release.set()
    slow, quick = results
    assert slow["status"] == FAIL and slow["message"] == "no answer within check_timeout (0.2s)"
    assert "raise check_timeout" in slow["hint"]
    assert quick["status"] == OK


def test_a_crashing_check_is_that_checks_failure():
    def boom(_reader):
        raise KeyError("status")

    def forbidden(_reader):
        raise health_reader.ReadError("the API server forbids GET /api/v1/namespaces/x/pods", "give the credentials get")
    crashed, read, ok = health.run_checks([health.Check("boom", boom), health.Check("forbidden", forbidden), fixed("fine")], None, 2)
    assert crashed["status"] == FAIL and crashed["message"] == "the check itself failed: KeyError: 'status'"
    assert "traceback" in crashed["details"]
    assert read == dict(health_checks.result("forbidden", FAIL, "the API server forbids GET /api/v1/namespaces/x/pods", "give the credentials get"),
                        duration=read["duration"])
    assert ok["status"] == OK


def test_skipped_checks_are_reported_without_running():
    results = health.run_checks([health.Check("a", None, "skipped on request (skip_checks)"), fixed("b")], None, 1)
    assert results[0] == {"name": "a", "status": SKIPPED, "message": "skipped on request (skip_checks)", "hint": "", "details": {},
                          "duration": 0.0}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_repeats_until_healthy():
    clock = FakeClock()
    rounds = iter([FAIL, FAIL, OK])
    got = health.evaluate(lambda: [fixed("pods", next(rounds))], lambda: None, wait=True, timeout=60, sleep_seconds=5,
                          check_timeout=10, clock=clock, sleep=clock.sleep)
    assert got["healthy"] is True and got["attempts"] == 3 and got["elapsed"] == 10
    assert got["summary"] == "healthy: 1 of 1 checks ok"


def test_wait_gives_up_at_the_timeout_with_the_last_results():
    clock = FakeClock()
    count = {"n": 0}

    def checks():
        count["n"] += 1
        return [fixed("pods", FAIL), fixed("db", OK)]
    got = health.evaluate(checks, lambda: None, wait=True, timeout=12, sleep_seconds=5, check_timeout=10,
                          clock=clock, sleep=clock.sleep)
    assert got["healthy"] is False and got["attempts"] == 3 == count["n"]  # at 0, 5, 10; a fourth at 15 would pass 12
    assert got["summary"] == "unhealthy: 1 of 2 checks failed (pods) after 3 attempts in 10s"
    assert got["failed_checks"] == ["pods"] and got["counts"] == {"ok": 1, "warn": 0, "fail": 1, "skipped": 0}


def test_without_wait_one_round():
    clock = FakeClock()
    got = health.evaluate(lambda: [fixed("pods", FAIL)], lambda: None, wait=False, timeout=60, sleep_seconds=5, check_timeout=1,
                          clock=clock, sleep=clock.sleep)
    assert got["attempts"] == 1 and got["summary"] == "unhealthy: 1 of 1 checks failed (pods)"


def r(name, status):
    return health_checks.result(name, status, "m")


@pytest.mark.parametrize("statuses, summary", [
    ([OK, OK, SKIPPED], "healthy: 2 of 2 checks ok, 1 skipped"),
    ([OK, WARN], "healthy with warnings: 1 of 2 checks ok, 1 warning (c1)"),
    ([FAIL, OK, FAIL, WARN, WARN, SKIPPED], "unhealthy: 2 of 5 checks failed (c0, c2), 2 warnings (c3, c4), 1 skipped"),
    ([SKIPPED], "no check ran, 1 skipped"),
])
def test_summary(statuses, summary):
    results = [r(f"c{i}", s) for i, s in enumerate(statuses)]
    assert health.summarize(results) == summary
    assert health.is_healthy(results) == (FAIL not in statuses)


def test_failure_message_lists_each_failure_with_its_hint():
    results = [health_checks.result("flyteadmin_pods", FAIL, "no running pods", "kubectl get deploy"), r("x", OK),
               health_checks.result("database_cluster", FAIL, "phase x", "")]
    assert health.failure_message(results, "unhealthy: 2 of 3 checks failed (flyteadmin_pods, database_cluster)") == (
        "unhealthy: 2 of 3 checks failed (flyteadmin_pods, database_cluster).\n"
        "flyteadmin_pods: no running pods. Hint: kubectl get deploy\n"
        "database_cluster: phase x.")


def test_result_refuses_an_unknown_status():
    with pytest.raises(ValueError):
        health_checks.result("x", "broken", "m")


# --- parameters ----------------------------------------------------------------------------------

def params(**given):
    validated = ArgumentSpecValidator(health.argument_spec()).validate(given)
    assert not validated.error_messages, validated.error_messages
    return validated.validated_parameters


def test_defaults():
    p = params()
    assert p["namespace"] == "flyte-system" and p["components"] == health_checks.COMPONENTS
    assert p["database"]["cluster_name"] == "flyte-postgres" and p["database"]["user"] == "flyte" and p["database"]["name"] == "flyteadmin"
    assert p["secrets"]["backend"] == "onepassword_operator" and p["secrets"]["keys"] == health_checks.SECRET_KEYS
    assert p["authentik"]["blueprint_configmap"] == "authentik-blueprint-flyte" and p["admin"]["port"] == "http"
    assert p["check_timeout"] == 10 and p["wait"] is False and p["fail_on_unhealthy"] is True
    assert health.validate_params(p) == []


def test_argument_spec_rejects_bad_types_and_choices():
    validated = ArgumentSpecValidator(health.argument_spec()).validate(
        {"secrets": {"backend": "vault"}, "wait": "sometimes", "database": {"port": "x"}, "nope": 1})
    text = " ".join(validated.error_messages)
    assert "backend" in text and "wait" in text and "port" in text and "nope" in text


@pytest.mark.parametrize("given, problem", [
    ({"checks": ["flyteadmin_pods", "databse_cluster"]}, "unknown check name databse_cluster; the checks are: flyteadmin_pods,"),
    ({"skip_checks": ["x", "y"]}, "unknown check names x, y"),
    ({"check_timeout": 0}, "check_timeout must be a positive number of seconds, got 0"),
    ({"timeout": -1}, "timeout must be zero or more seconds"),
    ({"wait_sleep": 0}, "wait_sleep must be a positive number"),
    ({"components": []}, "components must name at least one component"),
    ({"components": ["flyteadmin", "flyteadmin"]}, "components names a component twice"),
    ({"database": {"port": 70000}}, "database.port must be a TCP port"),
    ({"authentik": {"issuer_url": "auth.example.com"}}, "authentik.issuer_url must be an http:// or https:// URL"),
    ({"admin": {"healthcheck_url": "flyte/healthcheck"}}, "admin.healthcheck_url must be an http:// or https:// URL"),
])
def test_validation(given, problem):
    problems = health.validate_params(params(**given))
    assert any(p.startswith(problem) for p in problems), problems


def test_check_names_follow_the_components():
    assert health_checks.check_names(["flyteadmin", "flytepropeller"])[:3] == ["flyteadmin_pods", "flytepropeller_pods", "volume_claims"]
    assert params(components=["a"], checks=["a_pods"])["checks"] == ["a_pods"]
    assert health.validate_params(params(components=["a"], checks=["a_pods"])) == []


def test_selection_and_backend_skip():
    names = [c.name for c in health.plan(params())]
    assert names == health_checks.check_names(health_checks.COMPONENTS)
    plan = {c.name: c for c in health.plan(params(checks=["flyteadmin_pods", "onepassword_item"], secrets={"backend": "inline"}))}
    assert plan["flyteadmin_pods"].skip is None
    assert plan["onepassword_item"].skip == "the secrets backend is inline, not onepassword_operator"
    assert plan["database_cluster"].skip == "not selected (checks)"
    skipped = {c.name: c for c in health.plan(params(skip_checks=["admin_healthcheck"]))}
    assert skipped["admin_healthcheck"].skip == "skipped on request (skip_checks)" and skipped["grpc_route"].skip is None


def test_issuer():
    assert health.issuer_of(params()) is None
    assert health.issuer_of(params(authentik={"url": "https://auth.example.com/"})) == ISSUER
    assert health.issuer_of(params(authentik={"url": "https://a.example", "application_slug": "x"})) == "https://a.example/application/o/x/"
    assert health.issuer_of(params(authentik={"url": "https://a.example", "issuer_url": "https://i.example/"})) == "https://i.example/"


# --- the plan over a fake Reader -----------------------------------------------------------------

class FakeReader:
    """Answers the plan's reads from a dict keyed like the Reader's paths, and records what was asked."""

    def __init__(self, objects=None, lists=None, secret=None, exec_result=(0, "1\n", ""), http_answers=None, proxy=None):
        self.objects, self.lists = objects or {}, lists or {}
        self.secret, self.exec_result, self.http_answers, self.proxy = secret, exec_result, http_answers or {}, proxy
        self.calls = []

    def get(self, api_version, plural, namespace, name):
        self.calls.append(("get", plural, namespace, name))
        return self.objects.get((plural, namespace, name))

    def list(self, api_version, plural, namespace, label_selector=None):
        self.calls.append(("list", plural, namespace, label_selector))
        return self.lists.get((plural, namespace, label_selector), [])

    def secret_keys(self, namespace, name):
        self.calls.append(("secret", namespace, name))
        return self.secret

    def exec(self, namespace, pod, container, command, timeout):
        self.calls.append(("exec", namespace, pod, container, tuple(command)))
        if isinstance(self.exec_result, Exception):
            raise self.exec_result
        return self.exec_result

    def http_get(self, url, headers=None, validate_certs=True):
        self.calls.append(("http", url, (headers or {}).get("Authorization")))
        return self.http_answers.get(url, {"error": "not recorded"})

    def proxy_get(self, namespace, service, port, path):
        self.calls.append(("proxy", namespace, service, port, path))
        return self.proxy

    def sql_select_1(self, *args):
        self.calls.append(("sql",) + args)


def login_document(role=True, login=True, password=True, connect=True, expired=False, verifier=None):
    """What the login check's query prints for the role: as postgres, in the role's database."""
    found = None if not role else {"login": login, "password": password, "valid_until": "2020-01-01 00:00:00+00" if expired else None,
                                   "expired": expired, "verifier": verifier}
    return (0, json.dumps({"database": "flyteadmin", "login_user": "postgres", "role": found,
                           "connect": connect if role else None}) + "\n", "")


def healthy_reader(**overrides):
    primary = {"metadata": {"name": "flyte-postgres-1"}, "status": {"phase": "Running"},
               "spec": {"containers": [{"name": "postgres"}]}}
    lists = {("pods", NS, f"app.kubernetes.io/name={c}"): [pod(f"{c}-1")] for c in health_checks.COMPONENTS}
    lists[("pods", NS, "cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary")] = [primary]
    lists[("persistentvolumeclaims", NS, None)] = [{"metadata": {"name": "flyte-postgres-1"}, "status": {"phase": "Bound"}}]
    objects = {
        ("clusters", NS, "flyte-postgres"): cluster(),
        ("onepassworditems", NS, "flyte-secrets"): op_item("True", "synced"),
        ("configmaps", "authentik", "authentik-blueprint-flyte"): {"data": {"flyte.yaml": "version: 1"}},
        ("configmaps", NS, "flyte-admin-base-config"): server_yaml(),
        ("httproutes", NS, "flyte"): route(),
        ("grpcroutes", NS, "flyte"): route("GRPCRoute"),
    }
    answers = {health_checks.discovery_url(ISSUER): http(200, DISCOVERY),
               f"{API}/managed/blueprints/?name=homelab-flyte-oidc": http(200, {"results": [{"status": "successful"}]})}
    reader = FakeReader(objects, lists, secret=sorted(health_checks.SECRET_KEYS), http_answers=answers, proxy=http(200, "ok"),
                        exec_result=login_document())
    for key, value in overrides.items():
        setattr(reader, key, value)
    return reader


def run_plan(reader, **given):
    return health.run_checks(health.plan(params(**given)), reader, check_timeout=5)


def test_plan_over_a_healthy_deployment():
    reader = healthy_reader()
    results = run_plan(reader, authentik={"url": "https://auth.example.com", "api_token": "t0ken"})
    assert {r["name"]: r["status"] for r in results} == {n: OK for n in health_checks.check_names(health_checks.COMPONENTS)}
    assert [c[:4] for c in reader.calls if c[0] == "exec"] == [("exec", NS, "flyte-postgres-1", "postgres")]
    assert ("proxy", NS, "flyteadmin", "http", "healthcheck") in reader.calls
    assert ("http", f"{API}/managed/blueprints/?name=homelab-flyte-oidc", "Bearer t0ken") in reader.calls
    assert not any("t0ken" in json.dumps(r) for r in results)


def test_plan_takes_the_issuer_from_flyteadmins_config_when_none_is_given():
    results = {r["name"]: r for r in run_plan(healthy_reader())}
    assert results["oidc_discovery"]["status"] == OK
    assert results["oidc_discovery"]["details"]["issuer_from"] == "flyte-admin-base-config (auth.userAuth.openId.baseUrl)"
    assert results["admin_auth_config"]["message"].endswith("(not compared: no expected issuer given)")
    assert results["blueprint_instance"]["status"] == SKIPPED


def test_plan_without_a_primary_pod_or_with_a_refused_exec():
    reader = healthy_reader()
    reader.lists[("pods", NS, "cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary")] = []
    got = {r["name"]: r for r in run_plan(reader, checks=["database_reachable"])}["database_reachable"]
    assert got["status"] == FAIL and got["message"] == (
        "The CloudNativePG cluster flyte-postgres in namespace flyte-system has no primary pod "
        "(none labelled cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary).")
    assert got["hint"].startswith("Check that the Cluster exists and is healthy: kubectl get cluster flyte-postgres")
    refused = ApiException(status=400, reason="Bad Request")
    refused.body = 'container not found ("postgres")'
    got = run_plan(healthy_reader(exec_result=refused), checks=["database_reachable"])[FIXED_INDEX["database_reachable"]]
    assert got["status"] == FAIL and got["message"].startswith("cannot exec into flyte-postgres-1")


FIXED_INDEX = {name: i for i, name in enumerate(health_checks.check_names(health_checks.COMPONENTS))}


def exec_argv(reader):
    return next(list(c[4]) for c in reader.calls if c[0] == "exec")


def test_the_database_is_checked_as_postgres_over_the_socket_for_the_app_user():
    """CloudNativePG admits only postgres over an instance's socket (peer, ident map `local`): psql logs in as postgres,
    into the app database, and asks about the app user, whose password never goes into the pod."""
    reader = healthy_reader()
    got = run_plan(reader, checks=["database_reachable"])[FIXED_INDEX["database_reachable"]]
    argv = exec_argv(reader)
    assert argv[0] == "psql" and "-U" not in argv and "-h" not in argv and "host=" not in " ".join(argv)
    assert argv == database.psql_command("postgres", "flyteadmin", argv[10::2], connect_timeout=10)
    assert "'flyte'" in argv[10]
    assert got["status"] == OK, got
    assert got["message"] == ("flyte may log in to flyteadmin (LOGIN, a password, CONNECT; the password was not compared), "
                              "as postgres found over the socket of flyte-postgres-1")
    assert got["details"]["login_user"] == "postgres" and got["details"]["user"] == "flyte"


@pytest.mark.parametrize("document, message, hint", [
    (login_document(role=False), "the role flyte does not exist on the Cluster flyte-postgres", "spec.bootstrap.initdb.owner"),
    (login_document(login=False), "the role flyte exists but may not log in (NOLOGIN)", "spec.bootstrap.initdb.owner"),
    (login_document(password=False),
     "the role flyte has no password: PostgreSQL refuses it over TCP, and CloudNativePG admits only postgres over the socket",
     "cnpg.io/reload"),
    (login_document(expired=True), "the password of flyte expired at 2020-01-01 00:00:00+00", "validUntil"),
    (login_document(connect=False), "the role flyte may not connect to flyteadmin (no CONNECT privilege)", "GRANT CONNECT"),
])
def test_database_login_problems_are_explained(document, message, hint):
    got = run_plan(healthy_reader(exec_result=document), checks=["database_reachable"])[FIXED_INDEX["database_reachable"]]
    assert got["status"] == FAIL and got["message"] == message, got
    assert hint in got["hint"], got["hint"]


def test_a_password_given_is_compared_with_the_stored_verifier_and_never_sent():
    reader = healthy_reader(exec_result=login_document(verifier=database.scram_verifier("s3cret")))
    got = run_plan(reader, checks=["database_reachable"], database={"password": "s3cret"})[FIXED_INDEX["database_reachable"]]
    assert got["status"] == OK and "the password matches" in got["message"], got
    assert "s3cret" not in json.dumps(reader.calls) and "s3cret" not in json.dumps(got)
    stale = healthy_reader(exec_result=login_document(verifier=database.scram_verifier("old")))
    got = run_plan(stale, checks=["database_reachable"], database={"password": "s3cret"})[FIXED_INDEX["database_reachable"]]
    assert got["status"] == FAIL and got["message"] == (
        "the password given (database.password) is not the one PostgreSQL holds for flyte"), got
    assert "cnpg.io/reload" in got["hint"]


def test_the_primary_is_chosen_as_flyte_database_chooses_it():
    reader = healthy_reader()
    two = [{"metadata": {"name": n}, "status": {"phase": "Running"}, "spec": {"containers": [{"name": "postgres"}]}}
           for n in ("flyte-postgres-1", "flyte-postgres-2")]
    reader.lists[("pods", NS, "cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary")] = two
    got = run_plan(reader, checks=["database_reachable"])[FIXED_INDEX["database_reachable"]]
    assert got["status"] == FAIL and "has 2 pods labelled primary (flyte-postgres-1, flyte-postgres-2)" in got["message"]
    assert not any(c[0] == "exec" for c in reader.calls)


def test_plan_with_a_database_host_connects_directly():
    reader = healthy_reader()
    got = run_plan(reader, checks=["database_reachable"], database={"host": "db.example", "password": "pw"})[FIXED_INDEX["database_reachable"]]
    assert got["status"] == OK and ("sql", "db.example", 5432, "flyte", "pw", "flyteadmin", "prefer") in reader.calls
    assert not any(c[0] == "exec" for c in reader.calls)


def test_plan_with_a_healthcheck_url_does_not_use_the_proxy():
    reader = healthy_reader()
    reader.http_answers["https://flyte.example.com/healthcheck"] = http(503, "")
    got = run_plan(reader, checks=["admin_healthcheck"], admin={"healthcheck_url": "https://flyte.example.com/healthcheck"})
    assert got[-1]["status"] == FAIL and got[-1]["message"] == "GET https://flyte.example.com/healthcheck answered HTTP 503: no body"
    assert not any(c[0] == "proxy" for c in reader.calls)


def test_plan_uses_the_other_namespaces():
    reader = healthy_reader()
    run_plan(reader, checks=["database_cluster", "secret_keys", "http_route"], database={"namespace": "db"},
             secrets={"namespace": "sec"}, routes={"namespace": "net", "name": "r"})
    assert ("get", "clusters", "db", "flyte-postgres") in reader.calls
    assert ("secret", "sec", "flyte-secrets") in reader.calls
    assert ("get", "httproutes", "net", "r") in reader.calls


# --- the Reader's edge, with fake clients --------------------------------------------------------

class Response:
    def __init__(self, status, data):
        self.status, self.data = status, data


def api_error(status, body):
    error = ApiException(status=status, reason="Reason")
    error.body = body
    return error


class FakeApi:
    """Stands in for kubernetes.client.ApiClient.call_api: answers by path, counts calls."""

    def __init__(self, answers, delay=0.0):
        self.answers, self.delay, self.calls = answers, delay, []

    def call_api(self, path, method, **kwargs):
        self.calls.append((path, tuple(kwargs.get("query_params") or ()), kwargs.get("_request_timeout")))
        if self.delay:
            time.sleep(self.delay)
        answer = self.answers[path]
        if isinstance(answer, Exception):
            raise answer
        return Response(200, json.dumps(answer).encode())


def test_reader_reads_once_per_round_even_when_checks_ask_at_once():
    api = FakeApi({"/api/v1/namespaces/ns/configmaps/cm": {"data": {"a": "b"}}}, delay=0.2)
    reader = health_reader.Reader(api, request_timeout=3)
    got = []
    threads = [threading.Thread(target=lambda: got.append(reader.get("v1", "configmaps", "ns", "cm"))) for unused in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [{"data": {"a": "b"}}] * 4 and len(api.calls) == 1
    assert api.calls[0][2] == 3


def test_reader_absent_object_is_none_but_an_unknown_resource_type_is_an_error():
    api = FakeApi({
        "/apis/postgresql.cnpg.io/v1/namespaces/ns/clusters/c": api_error(
            404, '{"kind":"Status","reason":"NotFound","details":{"name":"c","group":"postgresql.cnpg.io","kind":"clusters"},"code":404}'),
        "/apis/onepassword.com/v1/namespaces/ns/onepassworditems/i": api_error(
            404, '{"kind":"Status","message":"the server could not find the requested resource","reason":"NotFound","code":404}'),
        "/api/v1/namespaces/ns/pods": api_error(403, '{"kind":"Status","message":"pods is forbidden: User \\"u\\" cannot list"}'),
    })
    reader = health_reader.Reader(api)
    assert reader.get("postgresql.cnpg.io/v1", "clusters", "ns", "c") is None
    with pytest.raises(health_reader.ReadError) as unknown:
        reader.get("onepassword.com/v1", "onepassworditems", "ns", "i")
    assert str(unknown.value).startswith("the API server does not serve /apis/onepassword.com/v1/namespaces/ns/onepassworditems")
    assert "CRD" in unknown.value.hint
    with pytest.raises(health_reader.ReadError) as forbidden:
        reader.list("v1", "pods", "ns", "app.kubernetes.io/name=x")
    assert str(forbidden.value) == 'the API server forbids GET /api/v1/namespaces/ns/pods: pods is forbidden: User "u" cannot list'
    assert api.calls[-1][1] == (("labelSelector", "app.kubernetes.io/name=x"),)


def test_reader_keeps_only_the_names_of_a_secrets_keys():
    api = FakeApi({"/api/v1/namespaces/ns/secrets/s": {"data": {"password": "c2VjcmV0", "username": "Zmx5dGU=", "empty": ""}}})
    reader = health_reader.Reader(api)
    assert reader.secret_keys("ns", "s") == ["password", "username"]
    assert not any("c2VjcmV0" in repr(v) for v in reader._cache.values())


def test_reader_proxy_get_reports_the_api_servers_answer():
    api = FakeApi({"/api/v1/namespaces/ns/services/flyteadmin:http/proxy/healthcheck": api_error(503, NO_ENDPOINTS)})
    assert health_reader.Reader(api).proxy_get("ns", "flyteadmin", "http", "/healthcheck") == {"status": 503, "body": NO_ENDPOINTS}
    api = FakeApi({"/api/v1/namespaces/ns/services/flyteadmin:http/proxy/healthcheck": {"status": "ok"}})
    assert health_reader.Reader(api).proxy_get("ns", "flyteadmin", "http", "healthcheck") == {"status": 200, "body": '{"status": "ok"}'}


def test_reader_http_get_turns_every_outcome_into_an_answer():
    from io import BytesIO
    from urllib.error import HTTPError, URLError

    class Ok:
        def getcode(self):
            return 200

        def read(self):
            return b'{"issuer": "x"}'

    def opener(url, **kwargs):
        assert kwargs["timeout"] == 4 and kwargs["validate_certs"] is False
        if url.endswith("/ok"):
            return Ok()
        if url.endswith("/missing"):
            raise HTTPError(url, 404, "Not Found", {}, BytesIO(b'{"detail": "Not found."}'))
        raise URLError(ConnectionRefusedError(111, "Connection refused"))
    reader = health_reader.Reader(None, request_timeout=4, open_url=opener)
    assert reader.http_get("https://a/ok", validate_certs=False) == {"status": 200, "body": '{"issuer": "x"}'}
    assert reader.http_get("https://a/missing", validate_certs=False) == {"status": 404, "body": '{"detail": "Not found."}'}
    assert reader.http_get("https://a/down", validate_certs=False) == {"error": "[Errno 111] Connection refused"}
