"""The platform's Gateway API controller (tests/platform/simulations/gateway_controller.py) refuses what
Gateway API v1.6.1 refuses.

Every object goes through the real API server and the real Gateway API CRDs (their defaults included);
each test has a Gateway of its own, of the platform's GatewayClass, in its own namespace, and reads the
status the controller writes back. One test per rule of the specification the collection relies on.
"""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from kubernetes import client

GROUP = "gateway.networking.k8s.io"
CONTROLLER = "homelab.flyte/simulated-gateway-controller"
DUMMY = base64.b64encode(b"not parsed by the simulation").decode()


def listeners() -> list[dict]:
    tls = {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "gw-tls"}]}
    return [
        {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "*.example.test", "tls": tls,
         "allowedRoutes": {"namespaces": {"from": "All"}}},
        {"name": "http", "protocol": "HTTP", "port": 80},  # allowedRoutes defaults to namespaces From Same
        {"name": "selected", "protocol": "HTTP", "port": 8080, "hostname": "selected.example.test",
         "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"gateway-access": "granted"}}}}},
        {"name": "grpc-only", "protocol": "HTTPS", "port": 8443, "hostname": "*.example.test", "tls": tls,
         "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"kind": "GRPCRoute"}]}},
    ]


class Cluster:
    def __init__(self, api, k8s, namespace: str) -> None:
        self.api, self.k8s, self.namespace = api, k8s, namespace
        self.core = client.CoreV1Api(api)
        self.extra_namespaces: list[str] = []

    def resource(self, kind: str, version: str = "v1"):
        return self.k8s.resources.get(api_version=f"{GROUP}/{version}", kind=kind)

    def create(self, kind: str, name: str, spec: dict, namespace: str | None = None, version: str = "v1") -> dict:
        body = {"apiVersion": f"{GROUP}/{version}", "kind": kind,
                "metadata": {"name": name, "namespace": namespace or self.namespace}, "spec": spec}
        return self.resource(kind, version).create(body=body).to_dict()

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        return self.resource(kind).get(name=name, namespace=namespace or self.namespace).to_dict()

    def other_namespace(self, labels: dict | None = None) -> str:
        name = f"it-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        self.extra_namespaces.append(name)
        return name

    def service(self, name: str, ports: list[int], namespace: str | None = None) -> None:
        self.core.create_namespaced_service(namespace or self.namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(selector={"app": name},
                                      ports=[client.V1ServicePort(name=f"p{p}", port=p) for p in ports])))

    def gateway(self, name: str = "gw", spec_listeners: list[dict] | None = None) -> None:
        self.core.create_namespaced_secret(self.namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="gw-tls"), type="kubernetes.io/tls", data={"tls.crt": DUMMY, "tls.key": DUMMY}))
        self.create("Gateway", name, {"gatewayClassName": "platform", "listeners": spec_listeners or listeners()})
        self.wait_gateway(name)

    def route(self, kind: str, name: str, parent: dict, hostnames: list[str] | None = None, backends: list[dict] | None = None,
              namespace: str | None = None, matches: list[dict] | None = None) -> dict:
        rule: dict = {"backendRefs": backends if backends is not None else [{"name": "backend", "port": 80}]}
        if matches:
            rule["matches"] = matches
        spec: dict = {"parentRefs": [{"name": "gw", "namespace": self.namespace, **parent}], "rules": [rule]}
        if hostnames:
            spec["hostnames"] = hostnames
        self.create(kind, name, spec, namespace)
        return self.wait_route(kind, name, namespace)

    def wait_gateway(self, name: str = "gw", timeout: float = 30) -> dict:
        def ready(gateway):
            generation = gateway["metadata"]["generation"]
            conditions = (gateway.get("status") or {}).get("conditions") or []
            return conditions and all(c.get("observedGeneration") == generation for c in conditions) \
                and all(c["observedGeneration"] == generation for listener in gateway["status"].get("listeners") or []
                        for c in listener["conditions"])
        return self.wait(lambda: self.get("Gateway", name), ready, f"Gateway {name}", timeout)

    def wait_route(self, kind: str, name: str, namespace: str | None = None, timeout: float = 30) -> dict:
        """The route once this controller reported on it for its current generation; {} if it reports nothing."""
        def reported(route):
            generation = route["metadata"]["generation"]
            mine = [p for p in (route.get("status") or {}).get("parents") or [] if p["controllerName"] == CONTROLLER]
            return mine and all(c["observedGeneration"] == generation for p in mine for c in p["conditions"])
        return self.wait(lambda: self.get(kind, name, namespace), reported, f"{kind} {name}", timeout)

    @staticmethod
    def wait(read, done, what: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            obj = read()
            if done(obj):
                return obj
            if time.monotonic() > deadline:
                raise AssertionError(f"no status for {what} after {timeout:.0f}s: {obj.get('status')}")
            time.sleep(0.3)

    def cleanup(self) -> None:
        for name in self.extra_namespaces:
            self.core.delete_namespace(name)


@pytest.fixture
def cluster(api, k8s, namespace):
    found = Cluster(api, k8s, namespace)
    found.gateway()
    found.service("backend", [80])
    yield found
    found.cleanup()


def verdict(route: dict, condition: str = "Accepted") -> tuple[str, str]:
    [parent] = [p for p in route["status"]["parents"] if p["controllerName"] == CONTROLLER]
    [found] = [c for c in parent["conditions"] if c["type"] == condition]
    return found["status"], found["reason"]


def listener_status(gateway: dict, name: str) -> dict:
    [found] = [listener for listener in gateway["status"]["listeners"] if listener["name"] == name]
    return {**found, "conditions": {c["type"]: (c["status"], c["reason"]) for c in found["conditions"]}}


def attached(cluster: Cluster, listener: str, expected: int) -> dict:
    """The listener's status once attachedRoutes is what the test expects (status converges after the routes')."""
    return Cluster.wait(lambda: cluster.get("Gateway", "gw"),
                        lambda gw: listener_status(gw, listener)["attachedRoutes"] == expected,
                        f"attachedRoutes {expected} on listener {listener}", 30)


def test_an_allowed_route_is_accepted_and_counted_on_its_listener(cluster):
    route = cluster.route("HTTPRoute", "web", {"sectionName": "https"}, ["app.example.test"])
    assert verdict(route) == ("True", "Accepted")
    assert verdict(route, "ResolvedRefs") == ("True", "ResolvedRefs")
    https = listener_status(attached(cluster, "https", 1), "https")
    assert https["conditions"] == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
                                   "Conflicted": ("False", "NoConflicts"), "Programmed": ("True", "Programmed")}
    assert https["supportedKinds"] == [{"group": GROUP, "kind": "HTTPRoute"}, {"group": GROUP, "kind": "GRPCRoute"}]
    gateway = cluster.get("Gateway", "gw")
    assert {c["type"]: c["status"] for c in gateway["status"]["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    assert listener_status(gateway, "http")["attachedRoutes"] == 0


def test_section_name_and_port_must_name_a_listener(cluster):
    assert verdict(cluster.route("HTTPRoute", "no-such-listener", {"sectionName": "admin"})) == ("False", "NoMatchingParent")
    assert verdict(cluster.route("HTTPRoute", "wrong-port", {"sectionName": "https", "port": 80},
                                 ["app.example.test"])) == ("False", "NoMatchingParent")
    assert verdict(cluster.route("HTTPRoute", "right-port", {"sectionName": "https", "port": 443},
                                 ["app.example.test"])) == ("True", "Accepted")
    assert verdict(cluster.route("HTTPRoute", "by-port", {"port": 8080}, ["selected.example.test"])) \
        == ("False", "NotAllowedByListeners")  # port 8080 names the Selector listener, which this namespace does not pass


def test_allowed_routes_namespaces_same_and_selector(cluster):
    outsider = cluster.other_namespace()
    cluster.service("backend", [80], outsider)
    assert verdict(cluster.route("HTTPRoute", "same", {"sectionName": "http"})) == ("True", "Accepted")
    assert verdict(cluster.route("HTTPRoute", "from-elsewhere", {"sectionName": "http"}, namespace=outsider)) \
        == ("False", "NotAllowedByListeners")
    assert verdict(cluster.route("HTTPRoute", "not-selected", {"sectionName": "selected"}, namespace=outsider)) \
        == ("False", "NotAllowedByListeners")
    granted = cluster.other_namespace({"gateway-access": "granted"})
    cluster.service("backend", [80], granted)
    assert verdict(cluster.route("HTTPRoute", "selected", {"sectionName": "selected"}, namespace=granted)) == ("True", "Accepted")
    # The whole Gateway: attached where a listener allows it, which From All does.
    assert verdict(cluster.route("HTTPRoute", "whole-gateway", {}, ["app.example.test"], namespace=outsider)) == ("True", "Accepted")


def test_allowed_routes_kinds(cluster):
    assert verdict(cluster.route("HTTPRoute", "http-on-grpc-only", {"sectionName": "grpc-only"}, ["app.example.test"])) \
        == ("False", "NotAllowedByListeners")
    assert verdict(cluster.route("GRPCRoute", "grpc-on-grpc-only", {"sectionName": "grpc-only"}, ["app.example.test"])) \
        == ("True", "Accepted")
    grpc_only = listener_status(attached(cluster, "grpc-only", 1), "grpc-only")
    assert grpc_only["supportedKinds"] == [{"group": GROUP, "kind": "GRPCRoute"}]


@pytest.mark.parametrize(("hostnames", "accepted"), [
    pytest.param(["app.example.test"], True, id="under-the-wildcard"),
    pytest.param(["deep.app.example.test"], True, id="wildcard-is-a-suffix-match"),
    pytest.param(["*.example.test"], True, id="same-wildcard"),
    pytest.param(["example.test"], False, id="wildcard-needs-a-label"),
    pytest.param(["app.example.org"], False, id="other-domain"),
    pytest.param(["app.example.org", "app.example.test"], True, id="one-of-several"),
])
def test_hostnames_must_intersect_the_listener_hostname(cluster, hostnames, accepted):
    route = cluster.route("HTTPRoute", "web", {"sectionName": "https"}, hostnames)
    assert verdict(route) == (("True", "Accepted") if accepted else ("False", "NoMatchingListenerHostname"))


def test_a_listener_accepts_only_one_of_an_httproute_and_a_grpcroute_for_a_hostname(cluster):
    # The older route wins, and between routes created in the same second (creationTimestamp's resolution)
    # the first by namespace/name: the names make the HTTPRoute win either way.
    http = cluster.route("HTTPRoute", "a-web", {"sectionName": "https"}, ["flyte.example.test"])
    grpc = cluster.route("GRPCRoute", "b-api", {"sectionName": "https"}, ["flyte.example.test"])
    assert verdict(http) == ("True", "Accepted")
    assert verdict(grpc) == ("False", "HostnameConflict")
    [parent] = grpc["status"]["parents"]
    assert f"HTTPRoute {cluster.namespace}/a-web" in next(c["message"] for c in parent["conditions"] if c["type"] == "Accepted")
    # A wildcard route overlaps the older route's hostname as well; another hostname does not.
    assert verdict(cluster.route("GRPCRoute", "wild", {"sectionName": "https"}, ["*.example.test"])) == ("False", "HostnameConflict")
    assert verdict(cluster.route("GRPCRoute", "own-host", {"sectionName": "https"}, ["grpc.example.test"])) == ("True", "Accepted")
    attached(cluster, "https", 2)
    # Once the older route is gone, the GRPCRoute takes the hostname.
    cluster.resource("HTTPRoute").delete(name="a-web", namespace=cluster.namespace)
    Cluster.wait(lambda: cluster.get("GRPCRoute", "b-api"), lambda r: verdict(r) == ("True", "Accepted"), "GRPCRoute b-api accepted", 30)


def test_routes_of_one_kind_share_a_hostname(cluster):
    assert verdict(cluster.route("HTTPRoute", "one", {"sectionName": "https"}, ["flyte.example.test"])) == ("True", "Accepted")
    assert verdict(cluster.route("HTTPRoute", "two", {"sectionName": "https"}, ["flyte.example.test"])) == ("True", "Accepted")
    attached(cluster, "https", 2)


@pytest.mark.parametrize(("backend", "reason"), [
    pytest.param({"name": "missing", "port": 80}, "BackendNotFound", id="no-such-service"),
    pytest.param({"name": "backend", "port": 81}, "BackendNotFound", id="no-such-port"),
    pytest.param({"group": "example.com", "kind": "Widget", "name": "backend"}, "InvalidKind", id="unknown-kind"),
])
def test_backend_refs_are_resolved(cluster, backend, reason):
    route = cluster.route("HTTPRoute", "web", {"sectionName": "https"}, ["app.example.test"], backends=[backend])
    assert verdict(route, "ResolvedRefs") == ("False", reason)
    assert verdict(route) == ("True", "Accepted")  # an unresolved backend answers 500; the route stays attached


def test_cross_namespace_backend_needs_a_reference_grant(cluster):
    other = cluster.other_namespace()
    cluster.service("shared", [80], other)
    backend = [{"name": "shared", "namespace": other, "port": 80}]
    route = cluster.route("HTTPRoute", "web", {"sectionName": "https"}, ["app.example.test"], backends=backend)
    assert verdict(route, "ResolvedRefs") == ("False", "RefNotPermitted")
    cluster.create("ReferenceGrant", "allow-routes", {
        "from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": cluster.namespace}],
        "to": [{"group": "", "kind": "Service", "name": "shared"}]}, namespace=other, version="v1beta1")
    Cluster.wait(lambda: cluster.get("HTTPRoute", "web"), lambda r: verdict(r, "ResolvedRefs") == ("True", "ResolvedRefs"),
                 "ResolvedRefs after the ReferenceGrant", 30)


def test_an_implementation_specific_match_is_an_unsupported_value(cluster):
    matches = [{"path": {"type": "RegularExpression", "value": "/api/.*"}}]
    route = cluster.route("HTTPRoute", "regex", {"sectionName": "https"}, ["app.example.test"], matches=matches)
    assert verdict(route) == ("False", "UnsupportedValue")


def test_a_route_to_a_gateway_that_does_not_exist_gets_no_status(cluster):
    body = {"parentRefs": [{"name": "nowhere"}], "rules": [{"backendRefs": [{"name": "backend", "port": 80}]}]}
    cluster.create("HTTPRoute", "lost", body)
    cluster.route("HTTPRoute", "found", {"sectionName": "https"}, ["app.example.test"])  # the controller has caught up
    assert not (cluster.get("HTTPRoute", "lost").get("status") or {}).get("parents")


def test_a_new_generation_is_reevaluated(cluster):
    route = cluster.route("HTTPRoute", "web", {"sectionName": "https"}, ["app.example.org"])
    assert verdict(route) == ("False", "NoMatchingListenerHostname")
    cluster.resource("HTTPRoute").patch(name="web", namespace=cluster.namespace, content_type="application/merge-patch+json",
                                        body={"spec": {"hostnames": ["app.example.test"]}})
    route = cluster.wait_route("HTTPRoute", "web")
    assert route["metadata"]["generation"] == 2 and verdict(route) == ("True", "Accepted")


def test_invalid_listeners_say_why(api, k8s, namespace):
    cluster = Cluster(api, k8s, namespace)
    cluster.gateway(spec_listeners=[
        {"name": "tls-kinds", "protocol": "HTTP", "port": 80, "allowedRoutes": {"kinds": [{"kind": "TLSRoute"}]}},
        {"name": "mixed-kinds", "protocol": "HTTP", "port": 81,
         "allowedRoutes": {"kinds": [{"kind": "HTTPRoute"}, {"kind": "TLSRoute"}]}},
        {"name": "no-secret", "protocol": "HTTPS", "port": 443, "hostname": "a.example.test",
         "tls": {"certificateRefs": [{"name": "missing"}]}},
        {"name": "tcp", "protocol": "TCP", "port": 5432},
        {"name": "good", "protocol": "HTTP", "port": 8080},
    ])
    gateway = cluster.get("Gateway", "gw")
    tls_kinds = listener_status(gateway, "tls-kinds")
    assert tls_kinds["supportedKinds"] == [] and tls_kinds["conditions"]["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    mixed = listener_status(gateway, "mixed-kinds")
    assert mixed["supportedKinds"] == [{"group": GROUP, "kind": "HTTPRoute"}]
    assert mixed["conditions"]["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    assert listener_status(gateway, "no-secret")["conditions"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    tcp = listener_status(gateway, "tcp")["conditions"]
    assert tcp["Accepted"] == ("False", "UnsupportedProtocol") and tcp["Programmed"] == ("False", "Invalid")
    assert listener_status(gateway, "good")["conditions"]["Programmed"] == ("True", "Programmed")
    assert {c["type"]: (c["status"], c["reason"]) for c in gateway["status"]["conditions"]} == {
        "Accepted": ("True", "ListenersNotValid"), "Programmed": ("True", "Programmed")}


def test_listeners_of_one_port_conflict(api, k8s, namespace):
    cluster = Cluster(api, k8s, namespace)
    cluster.gateway(spec_listeners=[
        {"name": "plain", "protocol": "HTTP", "port": 80, "hostname": "a.example.test"},
        {"name": "secure", "protocol": "HTTPS", "port": 80, "hostname": "b.example.test",
         "tls": {"certificateRefs": [{"name": "gw-tls"}]}},
    ])
    gateway = cluster.get("Gateway", "gw")
    for name in ("plain", "secure"):
        conditions = listener_status(gateway, name)["conditions"]
        assert conditions["Conflicted"] == ("True", "ProtocolConflict") and conditions["Programmed"] == ("False", "Invalid")
    assert {c["type"]: c["status"] for c in gateway["status"]["conditions"]} == {"Accepted": "False", "Programmed": "False"}


def test_the_crd_itself_refuses_two_listeners_of_one_port_protocol_and_hostname(api, k8s, namespace):
    """Why the controller never reports a HostnameConflict between a Gateway's own listeners."""
    cluster = Cluster(api, k8s, namespace)
    twice = [{"name": name, "protocol": "HTTP", "port": 81, "hostname": "c.example.test"} for name in ("first", "second")]
    with pytest.raises(client.ApiException) as refused:
        cluster.create("Gateway", "gw", {"gatewayClassName": "platform", "listeners": twice})
    assert "Combination of port, protocol and hostname must be unique" in refused.value.body
