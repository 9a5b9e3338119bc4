"""The platform's simulated Cilium (tests/platform/simulations/network_policy.py) refuses what Cilium refuses.

Each case is a rule of Cilium's policy API (pkg/policy/api) or of networking.k8s.io/v1 NetworkPolicy;
the integration tests feed it the policies the API server accepted against the real CRDs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "platform" / "simulations"))
from network_policy import ingress_verdict, pod_identity, reserved_identity  # noqa: E402  pylint: disable=wrong-import-position

NS = "flyte"
ADMIN = {"metadata": {"namespace": NS, "name": "flyteadmin-0", "labels": {"app.kubernetes.io/name": "flyteadmin"}}}
APISERVER = reserved_identity("kube-apiserver", "remote-node")


def cnp(name: str, spec: dict, namespace: str = NS) -> dict:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


DENY_ALL = cnp("deny", {"endpointSelector": {}, "ingress": [{}], "egress": [{}]})


def allowed(*policies, port: int = 8088, source=APISERVER, address=None, network_policies=()) -> bool:
    return ingress_verdict(ADMIN, port, source, address, list(policies), list(network_policies))[0]


def test_no_policy_allows_everything():
    assert allowed()


def test_an_empty_ingress_rule_is_default_deny():
    assert not allowed(DENY_ALL)


def test_a_policy_of_another_namespace_does_not_apply():
    assert allowed(cnp("deny", {"endpointSelector": {}, "ingress": [{}]}, namespace="other"))


def test_egress_only_policies_leave_ingress_open():
    assert allowed(cnp("out", {"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]}))


@pytest.mark.parametrize(("entity", "expected"), [
    ("kube-apiserver", True), ("cluster", True), ("all", True), ("remote-node", True),
    ("host", False), ("world", False), ("ingress", False),
])
def test_entities(entity, expected):
    rule = {"fromEntities": [entity], "toPorts": [{"ports": [{"port": "8088", "protocol": "TCP"}]}]}
    assert allowed(DENY_ALL, cnp("admin", {"endpointSelector": {"matchLabels": {"app.kubernetes.io/name": "flyteadmin"}},
                                           "ingress": [rule]})) is expected


def test_ports_limit_the_rule():
    rule = {"fromEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "8088", "protocol": "TCP"}]}]}
    policy = cnp("admin", {"endpointSelector": {}, "ingress": [rule]})
    assert allowed(DENY_ALL, policy, port=8088) and not allowed(DENY_ALL, policy, port=8089)
    udp = {"fromEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "8088", "protocol": "UDP"}]}]}
    assert not allowed(DENY_ALL, cnp("udp", {"endpointSelector": {}, "ingress": [udp]}))


def test_endpoint_rules_select_pods_not_the_api_server():
    rule = {"fromEndpoints": [{}], "toPorts": [{"ports": [{"port": "8088", "protocol": "TCP"}]}]}
    policy = cnp("admin", {"endpointSelector": {}, "ingress": [rule]})
    assert not allowed(DENY_ALL, policy)
    console = pod_identity({"metadata": {"namespace": NS, "name": "c", "labels": {"app.kubernetes.io/name": "flyteconsole"}}})
    assert allowed(DENY_ALL, policy, source=console)
    elsewhere = pod_identity({"metadata": {"namespace": "other", "name": "c", "labels": {}}})
    assert not allowed(DENY_ALL, policy, source=elsewhere)  # no namespace label: the policy's own namespace


def test_a_rule_with_only_ports_allows_every_source():
    policy = cnp("l4", {"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": "8088", "protocol": "TCP"}]}]}]})
    assert allowed(DENY_ALL, policy)


def test_deny_rules_win():
    allow = cnp("allow", {"endpointSelector": {}, "ingress": [{"fromEntities": ["all"]}]})
    deny = cnp("deny-apiserver", {"endpointSelector": {}, "ingressDeny": [{"fromEntities": ["kube-apiserver"]}]})
    assert allowed(allow) and not allowed(allow, deny)


def test_network_policy_ip_blocks():
    def np(rules):
        return {"metadata": {"namespace": NS, "name": "np"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": rules}}
    block = np([{"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.99/32"]}}],
                 "ports": [{"port": 8088, "protocol": "TCP"}]}])
    assert allowed(address="192.0.2.10", network_policies=[block])
    assert not allowed(address="192.0.2.99", network_policies=[block])
    assert not allowed(address="192.0.2.10", port=8089, network_policies=[block])
    assert not allowed(address="192.0.2.10", network_policies=[np([])])
