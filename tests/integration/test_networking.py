"""The networking role: Gateway API routes to Flyte and the network policies of its namespace.

The API server validates every route and policy against the real Gateway API and Cilium CRDs, so a
successful apply is itself a schema check; the tests read the objects back with the Kubernetes
client and check what they say.
"""

from __future__ import annotations

import sys
import uuid

import pytest
from kubernetes import client

from conftest import REPO, run_playbook

sys.path.insert(0, str(REPO / "tests" / "platform" / "simulations"))
from network_policy import ingress_verdict, reserved_identity  # noqa: E402  pylint: disable=wrong-import-position

# The role as playbooks/site.yml runs it: its preflight entry point first, then main.
ROLES = "tests/integration/playbooks/roles.yml"
# The role alone, whose main runs the preflight itself.
PLAYBOOK = "tests/integration/playbooks/networking_role.yml"
HOSTNAME = "flyte.platform.test"
PARENT_REFS = [{"name": "platform-gateway", "namespace": "gateway-system", "sectionName": "https"}]
ADMIN_PATHS = ["/login", "/logout", "/callback", "/me", "/api", "/v1", "/healthcheck", "/.well-known", "/oauth2", "/config"]
GRPC_SERVICES = [
    "flyteidl.service.AdminService",
    "flyteidl.service.AuthMetadataService",
    "flyteidl.service.IdentityService",
    "flyteidl.service.DataProxyService",
    "flyteidl.service.SignalService",
    "grpc.health.v1.Health",
]
POLICIES = {
    "flyte-default-deny", "flyte-dns", "flyte-admin", "flyte-console", "flyte-propeller", "flyte-scheduler",
    "flyte-datacatalog", "flyte-pod-webhook", "flyte-syncresources", "flyte-database", "flyte-object-store",
    "flyte-task-pods", "flyte-bucket-job",
}
NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"
CONTROLLER = "homelab.flyte/simulated-gateway-controller"
# The API server's connections as Cilium sees them from a control plane on other nodes than the pod.
APISERVER = reserved_identity("kube-apiserver", "remote-node")


def role_vars(namespace: str, **extra) -> dict:
    """Inputs of one run: the test's own namespace, and facts as the other roles would publish them."""
    return {
        "test_roles": ["networking"],
        "networking_namespace": namespace,
        "homelab_flyte_hostname": HOSTNAME,
        "networking_parent_refs": PARENT_REFS,
        "database_connection": {"cluster_name": "flyte-db"},
        "storage_flyte": {"service": "flyte-s3", "port": 7070,
                          "endpoint": f"http://flyte-s3.{namespace}.svc.cluster.local:7070"},
        "authentik_flyte": {"issuer_url": "https://auth.platform.test/application/o/flyte/"},
        **extra,
    }


def resources(k8s, api_version: str, kind: str, namespace: str) -> dict[str, dict]:
    items = k8s.resources.get(api_version=api_version, kind=kind).get(namespace=namespace).to_dict()["items"]
    return {item["metadata"]["name"]: item for item in items}


def routes_and_policies(k8s, namespace: str) -> dict[str, dict]:
    return {
        kind: resources(k8s, api_version, kind, namespace)
        for api_version, kind in [
            ("gateway.networking.k8s.io/v1", "HTTPRoute"),
            ("gateway.networking.k8s.io/v1", "GRPCRoute"),
            ("cilium.io/v2", "CiliumNetworkPolicy"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
        ]
    }


def ports(rule: dict) -> set[tuple[str, str]]:
    """(port, protocol) pairs of a Cilium rule."""
    return {(p["port"], p["protocol"]) for to_ports in rule.get("toPorts", []) for p in to_ports["ports"]}


def test_cilium_engine_converges_idempotently(k8s, namespace):
    first = run_playbook(ROLES, extra_vars=role_vars(namespace))
    assert first.rc == 0 and first.changed > 0, first

    # HTTPRoute: one rule of FlyteAdmin prefixes, the console, and / redirected to the console.
    http = resources(k8s, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace)["flyte"]
    assert http["spec"]["hostnames"] == [HOSTNAME]
    assert [(ref["name"], ref["namespace"], ref["sectionName"]) for ref in http["spec"]["parentRefs"]] == [
        ("platform-gateway", "gateway-system", "https")]
    rules = {rule["name"]: rule for rule in http["spec"]["rules"]}
    assert len(rules) <= 16 and all(len(rule["matches"]) <= 64 for rule in rules.values())
    admin = rules["flyteadmin"]
    assert [m["path"] for m in admin["matches"]] == [{"type": "PathPrefix", "value": p} for p in ADMIN_PATHS]
    assert [(b["kind"], b["name"], b["port"]) for b in admin["backendRefs"]] == [("Service", "flyteadmin", 80)]
    console = rules["flyteconsole"]
    assert console["matches"] == [{"path": {"type": "PathPrefix", "value": "/console"}}]
    assert [(b["name"], b["port"]) for b in console["backendRefs"]] == [("flyteconsole", 80)]
    redirect = rules["root-to-console"]
    assert redirect["matches"] == [{"path": {"type": "Exact", "value": "/"}}]
    assert "backendRefs" not in redirect
    assert redirect["filters"] == [{"type": "RequestRedirect", "requestRedirect": {
        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/console"}, "statusCode": 302}}]

    # GRPCRoute: exact service matches to FlyteAdmin's gRPC port, on a host name of its own.
    grpc = resources(k8s, "gateway.networking.k8s.io/v1", "GRPCRoute", namespace)["flyte"]
    assert grpc["spec"]["hostnames"] == ["flyte-grpc.platform.test"]
    assert grpc["spec"]["parentRefs"] == http["spec"]["parentRefs"]
    [grpc_rule] = grpc["spec"]["rules"]
    assert [m["method"] for m in grpc_rule["matches"]] == [{"type": "Exact", "service": s} for s in GRPC_SERVICES]
    assert [(b["kind"], b["name"], b["port"]) for b in grpc_rule["backendRefs"]] == [("Service", "flyteadmin", 81)]

    # The role waited for the (simulated) gateway to accept both routes.
    for route in (http, grpc):
        conditions = {c["type"]: c["status"] for c in route["status"]["parents"][0]["conditions"]}
        assert conditions["Accepted"] == "True"

    # Network policies.
    cnps = resources(k8s, "cilium.io/v2", "CiliumNetworkPolicy", namespace)
    assert set(cnps) == POLICIES
    assert resources(k8s, "networking.k8s.io/v1", "NetworkPolicy", namespace) == {}
    assert all(p["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "homelab.flyte" for p in cnps.values())
    spec = {name: policy["spec"] for name, policy in cnps.items()}

    assert spec["flyte-default-deny"]["endpointSelector"] == {}
    assert spec["flyte-default-deny"]["ingress"] == [{}] and spec["flyte-default-deny"]["egress"] == [{}]

    [dns] = spec["flyte-dns"]["egress"]
    assert spec["flyte-dns"]["endpointSelector"] == {}
    assert dns["toEndpoints"] == [{"matchLabels": {NAMESPACE_LABEL: "kube-system", "k8s-app": "kube-dns"}}]
    assert ports(dns) == {("53", "UDP"), ("53", "TCP")}
    assert dns["toPorts"][0]["rules"] == {"dns": [{"matchPattern": "*"}]}

    admin_egress = spec["flyte-admin"]["egress"]
    to_postgres = [r for r in admin_egress if r.get("toEndpoints") == [{"matchLabels": {"cnpg.io/cluster": "flyte-db"}}]]
    assert [ports(r) for r in to_postgres] == [{("5432", "TCP")}]
    assert any(r.get("toEntities") == ["kube-apiserver"] for r in admin_egress)
    assert any(r.get("toFQDNs") == [{"matchName": "auth.platform.test"}] and ports(r) == {("443", "TCP")} for r in admin_egress)
    assert {"fromEntities": ["ingress"]} in [{k: v for k, v in r.items() if k != "toPorts"} for r in spec["flyte-admin"]["ingress"]]

    database_ingress = spec["flyte-database"]["ingress"]
    operator = {"matchLabels": {NAMESPACE_LABEL: "cnpg-system", "app.kubernetes.io/name": "cloudnative-pg"}}
    assert any(r["fromEndpoints"] == [operator] and ("8000", "TCP") in ports(r) for r in database_ingress)
    assert any({"matchLabels": {"app.kubernetes.io/name": "flyteadmin"}} in r["fromEndpoints"] and ports(r) == {("5432", "TCP")}
               for r in database_ingress)

    [store_ingress] = spec["flyte-object-store"]["ingress"]
    assert spec["flyte-object-store"]["endpointSelector"] == {"matchLabels": {"app.kubernetes.io/name": "flyte-s3"}}
    assert {"matchExpressions": [{"key": "execution-id", "operator": "Exists"},
                                 {"key": NAMESPACE_LABEL, "operator": "Exists"}]} in store_ingress["fromEndpoints"]
    assert ports(store_ingress) == {("7070", "TCP")}

    second = run_playbook(ROLES, extra_vars=role_vars(namespace))
    assert second.rc == 0 and second.changed == 0, second

    check = run_playbook(ROLES, extra_vars=role_vars(namespace), check=True, diff=True)
    assert check.rc == 0 and check.changed == 0, check


def test_kubernetes_engine_replaces_cilium_policies(k8s, namespace):
    assert run_playbook(ROLES, extra_vars=role_vars(namespace)).rc == 0
    kubernetes_vars = role_vars(namespace, networking_policy_engine="kubernetes",
                                networking_kube_apiserver_cidrs=["192.0.2.10/32"], networking_oidc_issuer_cidrs=["192.0.2.20/32"])

    first = run_playbook(ROLES, extra_vars=kubernetes_vars)
    assert first.rc == 0 and first.changed > 0, first

    assert resources(k8s, "cilium.io/v2", "CiliumNetworkPolicy", namespace) == {}
    policies = resources(k8s, "networking.k8s.io/v1", "NetworkPolicy", namespace)
    assert set(policies) == POLICIES
    spec = {name: policy["spec"] for name, policy in policies.items()}

    deny = spec["flyte-default-deny"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    assert not deny.get("ingress") and not deny.get("egress")

    [dns] = spec["flyte-dns"]["egress"]
    assert spec["flyte-dns"]["policyTypes"] == ["Egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}

    apiserver = [r for r in spec["flyte-admin"]["egress"] if r["to"] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}]]
    assert [{p["port"] for p in r["ports"]} for r in apiserver] == [{443, 6443}]
    assert any(r["to"] == [{"ipBlock": {"cidr": "192.0.2.20/32"}}] and r["ports"] == [{"port": 443, "protocol": "TCP"}]
               for r in spec["flyte-admin"]["egress"])
    assert spec["flyte-pod-webhook"]["ingress"] == [{"from": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
                                                     "ports": [{"port": 9443, "protocol": "TCP"}]}]
    [store_ingress] = spec["flyte-object-store"]["ingress"]
    assert {"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "execution-id", "operator": "Exists"}]}} \
        in store_ingress["from"]
    assert [r["from"] for r in spec["flyte-admin"]["ingress"]][0] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}]

    second = run_playbook(ROLES, extra_vars=kubernetes_vars)
    assert second.rc == 0 and second.changed == 0, second


def test_check_mode_on_an_empty_namespace_creates_nothing(k8s, namespace):
    run = run_playbook(ROLES, extra_vars=role_vars(namespace), check=True)
    assert run.rc == 0 and run.changed > 0, run
    assert routes_and_policies(k8s, namespace) == {
        "HTTPRoute": {}, "GRPCRoute": {}, "CiliumNetworkPolicy": {}, "NetworkPolicy": {}}


def test_check_mode_in_a_namespace_that_does_not_exist_yet(api):
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    try:
        run = run_playbook(ROLES, extra_vars=role_vars(namespace), check=True)
        assert run.rc == 0 and run.changed > 0, run
        assert f"namespace {namespace} does not exist yet" in run.output, run
        assert namespace not in {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
    finally:
        try:
            client.CoreV1Api(api).delete_namespace(namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise


@pytest.mark.parametrize(("overrides", "variable"), [
    pytest.param({"homelab_flyte_hostname": None}, "homelab_flyte_hostname", id="missing-hostname"),
    pytest.param({"homelab_flyte_hostname": f"https://{HOSTNAME}"}, "homelab_flyte_hostname", id="hostname-with-scheme"),
    # The role's own host name variable before 0.2.0: refused, so that a stale inventory says what to rename.
    pytest.param({"networking_hostname": HOSTNAME}, "networking_hostname", id="hostname-old-name"),
    pytest.param({"networking_parent_refs": []}, "networking_parent_refs", id="no-parent-refs"),
    pytest.param({"networking_policy_engine": "kubernetes"}, "networking_kube_apiserver_cidrs", id="kubernetes-without-cidrs"),
])
def test_preflight_rejects_bad_input_before_touching_the_cluster(k8s, namespace, overrides, variable):
    extra_vars = {key: value for key, value in {**role_vars(namespace), **overrides}.items() if value is not None}
    run = run_playbook(PLAYBOOK, extra_vars=extra_vars)
    assert run.rc != 0 and run.failed == 1, run
    assert f"{variable} must be" in run.output, run
    assert "Preflight" in run.output, run
    assert routes_and_policies(k8s, namespace) == {
        "HTTPRoute": {}, "GRPCRoute": {}, "CiliumNetworkPolicy": {}, "NetworkPolicy": {}}
    # The run stopped in the preflight, before the role's first write.
    assert "Ensure namespace" not in run.output, run


def parent_verdicts(route: dict) -> dict[str, tuple[str, str, str]]:
    """Each condition the platform's (strict) gateway controller reports: type -> (status, reason, message)."""
    [parent] = [p for p in route["status"]["parents"] if p["controllerName"] == CONTROLLER]
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in parent["conditions"]}


def service(api, namespace: str, name: str, ports: dict[str, int]) -> None:
    client.CoreV1Api(api).create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(selector={"app.kubernetes.io/name": name},
                                  ports=[client.V1ServicePort(name=n, port=p) for n, p in ports.items()])))


def test_every_route_is_accepted_by_a_conformant_gateway(api, k8s, namespace):
    """Gateway API v1.6.1: a listener accepts only one of an HTTPRoute and a GRPCRoute for one hostname."""
    for name, ports in {"flyteadmin": {"http": 80, "grpc": 81}, "flyteconsole": {"http": 80}, "flyte-s3": {"s3": 7070}}.items():
        service(api, namespace, name, ports)
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, networking_wait_timeout=30))
    assert run.rc == 0, run
    routes = {(kind, name): route for kind in ("HTTPRoute", "GRPCRoute")
              for name, route in resources(k8s, "gateway.networking.k8s.io/v1", kind, namespace).items()}
    for (kind, name), route in routes.items():
        verdicts = parent_verdicts(route)
        assert verdicts["Accepted"][:2] == ("True", "Accepted"), (kind, name, verdicts)
        assert verdicts["ResolvedRefs"][:2] == ("True", "ResolvedRefs"), (kind, name, verdicts)
    http_hosts = {h for (kind, _name), r in routes.items() if kind == "HTTPRoute" for h in r["spec"]["hostnames"]}
    grpc_hosts = {h for (kind, _name), r in routes.items() if kind == "GRPCRoute" for h in r["spec"]["hostnames"]}
    assert http_hosts.isdisjoint(grpc_hosts), (http_hosts, grpc_hosts)


def test_signed_urls_host_is_routed_to_the_in_cluster_object_store(api, k8s, namespace):
    """pyflyte register from a laptop PUTs to the signed URL FlyteAdmin hands out: its host must reach the S3 server."""
    service(api, namespace, "flyte-s3", {"s3": 7070})
    public = {**role_vars(namespace)["storage_flyte"], "public_endpoint": "https://flyte-s3.platform.test"}
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, storage_flyte=public, networking_wait_timeout=30))
    assert run.rc == 0, run
    routes = resources(k8s, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace)
    [s3] = [r for r in routes.values() if r["spec"].get("hostnames") == ["flyte-s3.platform.test"]]
    [rule] = s3["spec"]["rules"]
    # Path-style S3 with SigV4: the path is signed, so it reaches the server unchanged (no prefix, no rewrite).
    assert rule.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}]) == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert "filters" not in rule
    assert [(b["kind"], b["name"], b["port"]) for b in rule["backendRefs"]] == [("Service", "flyte-s3", 7070)]
    verdicts = parent_verdicts(s3)
    assert verdicts["Accepted"][:2] == ("True", "Accepted") and verdicts["ResolvedRefs"][:2] == ("True", "ResolvedRefs"), verdicts
    # Under default deny, the gateway must reach the store's pods too.
    cnps = resources(k8s, "cilium.io/v2", "CiliumNetworkPolicy", namespace)
    store_ingress = cnps["flyte-object-store"]["spec"]["ingress"]
    assert any({k: v for k, v in r.items() if k != "toPorts"} == {"fromEntities": ["ingress"]} and ports(r) == {("7070", "TCP")}
               for r in store_ingress), store_ingress


def pod(namespace: str, name: str, **labels) -> dict:
    return {"metadata": {"namespace": namespace, "name": f"{name}-0", "labels": {"app.kubernetes.io/name": name, **labels}}}


def test_the_api_server_reaches_flyteadmins_health_endpoint_under_the_cilium_policies(k8s, namespace):
    """flyte_health's admin_healthcheck goes through the API server's service proxy: the API server itself
    connects to a FlyteAdmin pod's HTTP port. The policies are read back from the API server, which
    validated them against the real CiliumNetworkPolicy CRD."""
    run = run_playbook(ROLES, extra_vars=role_vars(namespace, networking_wait_timeout=0))
    assert run.rc == 0, run
    cnps = list(resources(k8s, "cilium.io/v2", "CiliumNetworkPolicy", namespace).values())
    allowed, why = ingress_verdict(pod(namespace, "flyteadmin"), 8088, APISERVER, cilium_policies=cnps)
    assert allowed, why
    # The evaluation can refuse: the API server has no business on the gRPC port nor with the console.
    assert not ingress_verdict(pod(namespace, "flyteadmin"), 8089, APISERVER, cilium_policies=cnps)[0]
    assert not ingress_verdict(pod(namespace, "flyteconsole"), 8080, APISERVER, cilium_policies=cnps)[0]


def test_the_api_server_reaches_flyteadmins_health_endpoint_under_network_policies(k8s, namespace):
    kubernetes_vars = role_vars(namespace, networking_policy_engine="kubernetes", networking_wait_timeout=0,
                                networking_kube_apiserver_cidrs=["192.0.2.10/32"], networking_oidc_issuer_cidrs=["192.0.2.20/32"])
    assert run_playbook(ROLES, extra_vars=kubernetes_vars).rc == 0
    policies = list(resources(k8s, "networking.k8s.io/v1", "NetworkPolicy", namespace).values())
    verdict = ingress_verdict(pod(namespace, "flyteadmin"), 8088, APISERVER, "192.0.2.10", network_policies=policies)
    assert verdict[0], verdict[1]
    assert not ingress_verdict(pod(namespace, "flyteadmin"), 8088, APISERVER, "192.0.2.99", network_policies=policies)[0]
