"""SIMULATION: how Cilium decides whether a connection may enter a pod. See README.md.

Used by cluster_network.py (the platform's simulated pod network) and by the tests, which ask it about
the policies the API server accepted. It evaluates ingress only, at L3/L4, with the semantics of
Cilium's policy API (cilium/cilium pkg/policy/api: rule.go, ingress.go, entity.go, l4.go) and of
Kubernetes NetworkPolicy (networking.k8s.io/v1, which Cilium enforces too):

* a pod is in default deny for ingress as soon as one CiliumNetworkPolicy that selects it has an
  `ingress` or `ingressDeny` section (`ingress: [{}]` included), or one NetworkPolicy that selects it
  has policyType Ingress; a pod no policy selects accepts everything;
* CiliumNetworkPolicy and NetworkPolicy rules add up; an `ingressDeny` rule that matches wins;
* a source is a set of labels: a pod's (`k8s:` labels plus `k8s:io.kubernetes.pod.namespace`) or a
  reserved identity's (`reserved:kube-apiserver`, `reserved:remote-node`, ...), and an address for
  ipBlock/fromCIDR rules;
* entities select reserved identities as entity.go maps them: `all` everything; `cluster` host,
  remote-node, init, ingress, health, unmanaged, kube-apiserver and every pod of the cluster; any
  other entity the reserved identity of its name;
* a rule with toPorts but no peer allows every source on those ports; a rule with neither (`{}`)
  allows nothing; a port of "0" or none means every port; L7 rules are not evaluated.

Named ports, CIDR groups, node selectors, ServiceAccount and cluster-wide policies are not simulated.
"""

from __future__ import annotations

import ipaddress

NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
CLUSTER_ENTITY = {"host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver"}


def pod_identity(pod: dict) -> dict[str, str]:
    """The labels Cilium gives a pod's endpoint, source-prefixed."""
    labels = {f"k8s:{k}": v for k, v in ((pod.get("metadata") or {}).get("labels") or {}).items()}
    labels[f"k8s:{NAMESPACE_LABEL}"] = pod["metadata"]["namespace"]
    return labels


def reserved_identity(*names: str) -> dict[str, str]:
    return {f"reserved:{name}": "" for name in names}


def _lookup(labels: dict[str, str], key: str) -> tuple[bool, str | None]:
    """A selector key without a source (`app`) or with `any:` matches any source; `k8s:x` only k8s labels."""
    source, _colon, bare = key.partition(":") if ":" in key else ("any", "", key)
    if source == "any":
        for found, value in labels.items():
            if found.split(":", 1)[1] == bare:
                return True, value
        return False, None
    if key in labels:
        return True, labels[key]
    return False, None


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """A Cilium EndpointSelector (a LabelSelector over source-prefixed labels)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        present, found = _lookup(labels, key)
        if not present or found != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present, found = _lookup(labels, expression["key"])
        values, operator = expression.get("values") or [], expression["operator"]
        if (operator == "In" and found not in values) or (operator == "NotIn" and present and found in values) \
                or (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return True


def _is_pod(labels: dict[str, str]) -> bool:
    return f"k8s:{NAMESPACE_LABEL}" in labels


def entity_selects(entity: str, labels: dict[str, str]) -> bool:
    if entity == "all":
        return True
    if entity == "cluster":
        return _is_pod(labels) or any(f"reserved:{name}" in labels for name in CLUSTER_ENTITY)
    return f"reserved:{entity}" in labels


def _ports_match(to_ports: list[dict] | None, port: int, protocol: str) -> bool:
    if not to_ports:
        return True
    for entry in to_ports:
        for wanted in entry.get("ports") or [{}]:
            number = str(wanted.get("port", "0"))
            if not number.isdigit():
                continue  # a named port: not simulated
            first = int(number)
            last = int(wanted.get("endPort") or first)
            if wanted.get("protocol", "ANY") in ("ANY", protocol) and (first == 0 or first <= port <= last):
                return True
    return False


def _peer_matches(rule: dict, source: dict[str, str], address: str | None, pod_namespace: str) -> bool | None:
    """True/False when the rule names peers; None when it names none."""
    named = False
    for selector in rule.get("fromEndpoints") or []:
        named = True
        # A selector without the namespace label means the policy's own namespace.
        scoped = selector
        keys = set((selector.get("matchLabels") or {})) | {e["key"] for e in selector.get("matchExpressions") or []}
        if not any(k.endswith(NAMESPACE_LABEL) for k in keys):
            scoped = {**selector, "matchLabels": {**(selector.get("matchLabels") or {}), f"k8s:{NAMESPACE_LABEL}": pod_namespace}}
        if _is_pod(source) and selects(scoped, source):
            return True
    for entity in rule.get("fromEntities") or []:
        named = True
        if entity_selects(entity, source):
            return True
    cidrs = list(rule.get("fromCIDR") or []) + [c.get("cidr") for c in rule.get("fromCIDRSet") or [] if c.get("cidr")]
    for cidr in cidrs:
        named = True
        if address and not _is_pod(source) and ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False):
            return True
    return False if named else None


def _cilium_rule_allows(rule: dict, source: dict, address: str | None, namespace: str, port: int, protocol: str) -> bool:
    peers = _peer_matches(rule, source, address, namespace)
    if peers is None:  # no peer: an L4-only rule allows every source, an empty rule allows nothing
        return bool(rule.get("toPorts")) and _ports_match(rule["toPorts"], port, protocol)
    return peers and _ports_match(rule.get("toPorts"), port, protocol)


def _specs(policy: dict) -> list[dict]:
    spec = [policy["spec"]] if policy.get("spec") else []
    return spec + list(policy.get("specs") or [])


def _np_peer_matches(peer: dict, source: dict[str, str], address: str | None, namespaces: dict[str, dict]) -> bool:
    if "ipBlock" in peer:
        if not address or _is_pod(source):
            return False
        ip = ipaddress.ip_address(address)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"], strict=False) and not any(
            ip in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
    if not _is_pod(source):
        return False  # pod and namespace selectors select pods only
    namespace = source[f"k8s:{NAMESPACE_LABEL}"]
    pod_labels = {k[4:]: v for k, v in source.items() if k.startswith("k8s:") and k != f"k8s:{NAMESPACE_LABEL}"}
    if "namespaceSelector" in peer:
        ns_labels = ((namespaces.get(namespace) or {}).get("metadata") or {}).get("labels") or {}
        if not selects(peer["namespaceSelector"], {f"k8s:{k}": v for k, v in ns_labels.items()}):
            return False
    return selects(peer.get("podSelector") or {}, {f"k8s:{k}": v for k, v in pod_labels.items()})


def _np_ports_match(ports: list[dict] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for wanted in ports:
        number = wanted.get("port")
        if wanted.get("protocol", "TCP") != protocol or (number is not None and not isinstance(number, int)):
            continue
        if number is None or number <= port <= (wanted.get("endPort") or number):
            return True
    return False


def ingress_verdict(pod: dict, port: int, source: dict[str, str], address: str | None = None,
                    cilium_policies: list[dict] = (), network_policies: list[dict] = (),
                    namespaces: dict[str, dict] | None = None, protocol: str = "TCP") -> tuple[bool, str]:
    """(allowed, why) for a connection from source to the pod's port."""
    namespace = pod["metadata"]["namespace"]
    target = pod_identity(pod)
    enforced, allowed_by = [], []
    for policy in cilium_policies:
        if policy["metadata"].get("namespace") != namespace:
            continue
        name = f"CiliumNetworkPolicy {policy['metadata']['name']}"
        for spec in _specs(policy):
            scoped = {**(spec.get("endpointSelector") or {})}
            if not selects(scoped, target):
                continue
            if "ingress" in spec or "ingressDeny" in spec:
                enforced.append(name)
            for rule in spec.get("ingressDeny") or []:
                if _cilium_rule_allows(rule, source, address, namespace, port, protocol):
                    return False, f"denied by an ingressDeny rule of {name}"
            if any(_cilium_rule_allows(rule, source, address, namespace, port, protocol) for rule in spec.get("ingress") or []):
                allowed_by.append(name)
    pod_labels = {f"k8s:{k}": v for k, v in ((pod.get("metadata") or {}).get("labels") or {}).items()}
    for policy in network_policies:
        spec = policy.get("spec") or {}
        if policy["metadata"].get("namespace") != namespace or not selects(spec.get("podSelector"), pod_labels):
            continue
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            continue
        name = f"NetworkPolicy {policy['metadata']['name']}"
        enforced.append(name)
        for rule in spec.get("ingress") or []:
            peers = rule.get("from") or []
            if (not peers or any(_np_peer_matches(p, source, address, namespaces or {}) for p in peers)) \
                    and _np_ports_match(rule.get("ports"), port, protocol):
                allowed_by.append(name)
                break
    if not enforced:
        return True, "no policy selects the pod"
    if allowed_by:
        return True, f"allowed by {', '.join(sorted(set(allowed_by)))}"
    return False, f"no rule of {', '.join(sorted(set(enforced)))} allows it"
