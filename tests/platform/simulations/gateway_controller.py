"""SIMULATION: a Gateway API v1.6.1 controller for the GatewayClasses of one controllerName. See README.md.

No data plane: it decides, as a conformant controller must, which routes attach to which listeners,
and writes the status the specification prescribes. It follows the API types of
kubernetes-sigs/gateway-api v1.6.1 (apis/v1/gateway_types.go, shared_types.go, httproute_types.go,
grpcroute_types.go, referencegrant_types.go; the same text is in the CRDs of ../shared/crds) and the
status its conformance tests expect (conformance/tests/httproute-invalid-*.go,
httproute-disallowed-kind.go, gateway-invalid-route-kind.go, httproute-listener-hostname-matching.go):

* a parentRef selects the listeners whose name equals its sectionName and whose port equals its
  port (both when set); none: Accepted False NoMatchingParent;
* of those, a listener admits the route when allowedRoutes.namespaces (From All, Same or a Selector
  over the route namespace's labels) and the listener's kinds (allowedRoutes.kinds, or the kinds of
  its protocol) allow it; none: Accepted False NotAllowedByListeners;
* of those, the route's hostnames must intersect the listener's hostname (a `*.` wildcard is a
  suffix match of at least one label); none: Accepted False NoMatchingListenerHostname;
* on one listener, an HTTPRoute and a GRPCRoute whose hostnames intersect: only the older route
  (then the first by namespace/name) is accepted; the specification names no reason for the other
  (grpcroute_types.go, "Hostnames"), so, like the implementations that enforce the rule, this one
  raises its own: Accepted False HostnameConflict, naming the route that won;
* backendRefs: a kind other than core Service: ResolvedRefs False InvalidKind; another namespace
  without a ReferenceGrant there: RefNotPermitted; a Service or Service port that does not exist:
  BackendNotFound. ResolvedRefs does not change Accepted (traffic to an invalid backend gets a 500).
* Implementation-specific RegularExpression matches are not offered: Accepted False
  UnsupportedValue, as an implementation without them must answer.

Gateways get Accepted and Programmed, and per listener supportedKinds, attachedRoutes (routes
Accepted through that listener) and the conditions Accepted (UnsupportedProtocol for protocols
other than HTTP and HTTPS), ResolvedRefs (InvalidRouteKinds, InvalidCertificateRef,
RefNotPermitted), Conflicted (ProtocolConflict between listeners of one port) and Programmed.

Only the standard library: tests/platform/platform.py starts it before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from simapi import Api, add_arguments, api_from, key_of, log, now, snapshot, start_informers

GROUP = "gateway.networking.k8s.io"
SUPPORTED_VERSION = "v1.6"
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")
# The watched kinds: (API path prefix, plural).
RESOURCES = {
    "GatewayClass": (f"/apis/{GROUP}/v1", "gatewayclasses"),
    "Gateway": (f"/apis/{GROUP}/v1", "gateways"),
    "HTTPRoute": (f"/apis/{GROUP}/v1", "httproutes"),
    "GRPCRoute": (f"/apis/{GROUP}/v1", "grpcroutes"),
    "ReferenceGrant": (f"/apis/{GROUP}/v1beta1", "referencegrants"),
    "Service": ("/api/v1", "services"),
    "Namespace": ("/api/v1", "namespaces"),
    "Secret": ("/api/v1", "secrets"),
}


def resource_path(kind: str, namespace: str = "", name: str = "") -> str:
    prefix, plural = RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


# --- the rules -----------------------------------------------------------------------------------

def condition(kind: str, status: bool | str, reason: str, message: str, generation: int) -> dict:
    value = status if isinstance(status, str) else ("True" if status else "False")
    return {"type": kind, "status": value, "reason": reason, "message": message, "observedGeneration": generation}


def hostname_intersection(first: str, second: str) -> str | None:
    """The hostnames both match, as the more specific of the two; `*` stands for any hostname."""
    if first == "*":
        return second
    if second in ("*", first):
        return first
    first_wild, second_wild = first.startswith("*."), second.startswith("*.")
    if first_wild and second.endswith(first[1:]):
        return second
    if second_wild and first.endswith(second[1:]):
        return first
    return None


def effective_hostnames(route_hostnames: list[str], listener_hostname: str | None) -> list[str]:
    """The hostnames a route serves on a listener; empty: the route does not match the listener."""
    listener = listener_hostname or "*"
    if not route_hostnames:
        return [listener]
    found = [hostname_intersection(h, listener) for h in route_hostnames]
    return [h for h in found if h]


def hostnames_overlap(first: list[str], second: list[str]) -> bool:
    return any(hostname_intersection(a, b) for a in first for b in second)


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A metav1.LabelSelector; an empty selector matches everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def reference_granted(grants: dict, target_namespace: str, from_group: str, from_kind: str, from_namespace: str,
                      to_group: str, to_kind: str, to_name: str) -> bool:
    """A ReferenceGrant in the target's namespace lets this kind of object of from_namespace refer to it."""
    for (namespace, _name), grant in grants.items():
        if namespace != target_namespace:
            continue
        spec = grant.get("spec") or {}
        sources = any(f.get("group", "") == from_group and f.get("kind") == from_kind and f.get("namespace") == from_namespace
                      for f in spec.get("from") or [])
        targets = any(t.get("group", "") == to_group and t.get("kind") == to_kind and t.get("name") in (None, "", to_name)
                      for t in spec.get("to") or [])
        if sources and targets:
            return True
    return False


class Reconciler:
    def __init__(self, api: Api, controller: str, cache: dict) -> None:
        self.api, self.controller, self.cache = api, controller, cache
        self.bundle_version = self.read_bundle_version()

    def read_bundle_version(self) -> str:
        status, crd = self.api.call("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gateways.{GROUP}")
        if status != 200:
            return ""
        return (crd["metadata"].get("annotations") or {}).get(f"{GROUP}/bundle-version", "")

    # The listener ------------------------------------------------------------------------------

    def listener_kinds(self, listener: dict) -> tuple[list[dict], list[str]]:
        """(supported kinds, kinds named in allowedRoutes that this protocol cannot carry)."""
        carried = ROUTE_KINDS if listener.get("protocol") in ("HTTP", "HTTPS") else ()
        wanted = (listener.get("allowedRoutes") or {}).get("kinds") or []
        if not wanted:
            return [{"group": GROUP, "kind": k} for k in carried], []
        supported, invalid = [], []
        for kind in wanted:
            group = kind.get("group", GROUP)
            if group == GROUP and kind.get("kind") in carried:
                supported.append({"group": GROUP, "kind": kind["kind"]})
            else:
                invalid.append(f"{group}/{kind.get('kind')}")
        return supported, invalid

    def certificate_problem(self, gateway: dict, listener: dict) -> tuple[str, str] | None:
        tls = listener.get("tls") or {}  # the CRD admits only mode Terminate on HTTPS
        namespace = gateway["metadata"]["namespace"]
        for ref in tls.get("certificateRefs") or []:
            group, kind, name = ref.get("group", ""), ref.get("kind", "Secret"), ref.get("name")
            target = ref.get("namespace") or namespace
            label = f"{kind} {target}/{name}"
            if target != namespace and not reference_granted(self.cache["ReferenceGrant"], target, GROUP, "Gateway", namespace,
                                                             group, kind, name):
                return "RefNotPermitted", f"no ReferenceGrant in namespace {target} allows this Gateway to use {label}"
            if group != "" or kind != "Secret":
                return "InvalidCertificateRef", f"certificateRef {group}/{kind} {name}: only core Secrets are supported"
            secret = self.cache["Secret"].get((target, name))
            if secret is None:
                return "InvalidCertificateRef", f"{label} does not exist"
            data = secret.get("data") or {}
            if secret.get("type") != "kubernetes.io/tls" or not data.get("tls.crt") or not data.get("tls.key"):
                return "InvalidCertificateRef", f"{label} is not a kubernetes.io/tls Secret with tls.crt and tls.key"
        return None

    def listener_states(self, gateway: dict) -> dict[str, dict]:
        generation = gateway["metadata"].get("generation", 0)
        listeners = (gateway.get("spec") or {}).get("listeners") or []
        states = {}
        for listener in listeners:
            name, protocol = listener["name"], listener.get("protocol")
            supported, invalid = self.listener_kinds(listener)
            conditions = []
            accepted = protocol in ("HTTP", "HTTPS")
            conditions.append(condition("Accepted", accepted, "Accepted" if accepted else "UnsupportedProtocol",
                                        "Listener accepted" if accepted else
                                        f"protocol {protocol} is not supported by this controller (HTTP and HTTPS are)", generation))
            problem = self.certificate_problem(gateway, listener) if protocol == "HTTPS" else None
            if invalid:
                problem = ("InvalidRouteKinds", f"route kinds {', '.join(invalid)} cannot attach to a {protocol} listener")
            conditions.append(condition("ResolvedRefs", problem is None, problem[0] if problem else "ResolvedRefs",
                                        problem[1] if problem else "References resolved", generation))
            peers = [other for other in listeners if other is not listener and other.get("port") == listener.get("port")]
            # Listeners of one port with one protocol differ in hostname: the CRD refuses the same
            # port, protocol and hostname twice, so only a protocol conflict is left to report.
            conflict = None
            if any(other.get("protocol") != protocol for other in peers):
                conflict = ("ProtocolConflict", f"another listener on port {listener.get('port')} has another protocol")
            conditions.append(condition("Conflicted", conflict is not None, conflict[0] if conflict else "NoConflicts",
                                        conflict[1] if conflict else "No conflicts", generation))
            programmed = accepted and problem is None and conflict is None
            conditions.append(condition("Programmed", programmed, "Programmed" if programmed else "Invalid",
                                        "Listener programmed" if programmed else "Listener is not valid", generation))
            states[name] = {"listener": listener, "supported": supported, "conditions": conditions,
                            "programmed": programmed, "accepted": accepted, "attached": 0}
        return states

    def admits_namespace(self, listener: dict, gateway_namespace: str, route_namespace: str) -> bool:
        namespaces = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
        source = namespaces.get("from", "Same")
        if source == "All":
            return True
        if source == "Same":
            return route_namespace == gateway_namespace
        if source == "Selector":
            found = self.cache["Namespace"].get(("", route_namespace))
            labels = (found or {}).get("metadata", {}).get("labels") or {}
            return found is not None and selector_matches(namespaces.get("selector"), labels)
        return False

    # The route ---------------------------------------------------------------------------------

    @staticmethod
    def unsupported_value(kind: str, route: dict) -> str | None:
        for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            for match in rule.get("matches") or []:
                if kind == "HTTPRoute":
                    types = [("path", (match.get("path") or {}).get("type"))]
                    types += [("headers", h.get("type")) for h in match.get("headers") or []]
                    types += [("queryParams", q.get("type")) for q in match.get("queryParams") or []]
                else:
                    types = [("method", (match.get("method") or {}).get("type"))]
                    types += [("headers", h.get("type")) for h in match.get("headers") or []]
                for field, value in types:
                    if value == "RegularExpression":
                        return (f"rule {index}: {field} match type RegularExpression is implementation-specific "
                                "and not offered by this controller")
        return None

    def backend_problem(self, kind: str, route: dict) -> tuple[str, str] | None:
        namespace = route["metadata"]["namespace"]
        problems = []
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                group, ref_kind, name = ref.get("group", ""), ref.get("kind", "Service"), ref.get("name")
                target = ref.get("namespace") or namespace
                label = f"{ref_kind} {target}/{name}"
                if group != "" or ref_kind != "Service":
                    problems.append(("InvalidKind", f"backendRef {group}/{ref_kind} {name}: only core Services are supported"))
                elif target != namespace and not reference_granted(self.cache["ReferenceGrant"], target, GROUP, kind, namespace,
                                                                   "", "Service", name):
                    problems.append(("RefNotPermitted", f"no ReferenceGrant in namespace {target} allows {kind}s of "
                                                        f"{namespace} to refer to {label}"))
                elif (target, name) not in self.cache["Service"]:
                    problems.append(("BackendNotFound", f"{label} does not exist"))
                else:
                    ports = [p.get("port") for p in (self.cache["Service"][(target, name)].get("spec") or {}).get("ports") or []]
                    if ref.get("port") not in ports:
                        problems.append(("BackendNotFound", f"{label} has no port {ref.get('port')} (it has {ports})"))
        if not problems:
            return None
        return problems[0][0], "; ".join(message for _reason, message in problems)

    def reconcile(self) -> None:
        classes = {name: gc for (_namespace, name), gc in self.cache["GatewayClass"].items()
                   if (gc.get("spec") or {}).get("controllerName") == self.controller}
        for gc in classes.values():
            self.write_class(gc)
        gateways = {key: gw for key, gw in self.cache["Gateway"].items() if (gw.get("spec") or {}).get("gatewayClassName") in classes}
        states = {key: self.listener_states(gw) for key, gw in gateways.items()}
        # Listener -> routes accepted there: (kind, hostnames, namespace/name).
        attached: dict[tuple, list[tuple[str, list[str], str]]] = {}
        routes = [(kind, route) for kind in ROUTE_KINDS for route in self.cache[kind].values()
                  if not route["metadata"].get("deletionTimestamp")]
        # Oldest first, then by namespace/name: the order in which conflicts are settled.
        routes.sort(key=lambda kr: (kr[1]["metadata"].get("creationTimestamp", ""), "/".join(key_of(kr[1]))))
        for kind, route in routes:
            self.write_route(kind, route, gateways, states, attached)
        for key, gateway in gateways.items():
            self.write_gateway(gateway, states[key])

    def route_parent_status(self, kind: str, route: dict, ref: dict, gateway: dict, states: dict,
                            attached: dict) -> dict:
        meta = route["metadata"]
        generation, namespace = meta.get("generation", 0), meta["namespace"]
        hostnames = (route.get("spec") or {}).get("hostnames") or []
        gw_key = key_of(gateway)

        def accepted(status: bool, reason: str, message: str) -> dict:
            return condition("Accepted", status, reason, message, generation)

        section, port = ref.get("sectionName"), ref.get("port")
        candidates = [s for s in states.values()
                      if (section is None or s["listener"]["name"] == section) and (port is None or s["listener"].get("port") == port)]
        unsupported = self.unsupported_value(kind, route)
        if not candidates:
            wanted = " and ".join(w for w in ([f"name {section}"] if section else []) + ([f"port {port}"] if port else []))
            verdict = accepted(False, "NoMatchingParent", f"Gateway {'/'.join(gw_key)} has no listener with {wanted}")
        else:
            allowed = [s for s in candidates
                       if self.admits_namespace(s["listener"], gw_key[0], namespace)
                       and any(k["kind"] == kind for k in s["supported"])]
            matching = [(s, effective_hostnames(hostnames, s["listener"].get("hostname"))) for s in allowed]
            matching = [(s, h) for s, h in matching if h]
            if not allowed:
                verdict = accepted(False, "NotAllowedByListeners",
                                   f"no listener of {', '.join(s['listener']['name'] for s in candidates)} allows {kind}s "
                                   f"from namespace {namespace}")
            elif not matching:
                verdict = accepted(False, "NoMatchingListenerHostname",
                                   f"hostnames {hostnames} do not intersect those of listeners "
                                   f"{', '.join(s['listener']['name'] + ' (' + (s['listener'].get('hostname') or '*') + ')' for s in allowed)}")
            elif unsupported:
                verdict = accepted(False, "UnsupportedValue", unsupported)
            else:
                winners, losers = [], []
                for state, served in matching:
                    slot = (gw_key, state["listener"]["name"])
                    rival = next((r for r in attached.get(slot, []) if r[0] != kind and hostnames_overlap(r[1], served)), None)
                    (losers if rival else winners).append((state, served, rival))
                if winners:
                    for state, served, _rival in winners:
                        attached.setdefault((gw_key, state["listener"]["name"]), []).append((kind, served, "/".join(key_of(route))))
                        state["attached"] += 1
                    verdict = accepted(True, "Accepted", "Route accepted")
                else:
                    state, served, rival = losers[0]
                    verdict = accepted(False, "HostnameConflict",
                                       f"listener {state['listener']['name']} already serves {rival[0]} {rival[2]} for "
                                       f"{served}: a listener accepts only one of an HTTPRoute and a GRPCRoute for a hostname")
        problem = self.backend_problem(kind, route)
        resolved = condition("ResolvedRefs", problem is None, problem[0] if problem else "ResolvedRefs",
                             problem[1] if problem else "Backends resolved", generation)
        return {"parentRef": ref, "controllerName": self.controller, "conditions": [verdict, resolved]}

    def write_route(self, kind: str, route: dict, gateways: dict, states: dict, attached: dict) -> None:
        namespace = route["metadata"]["namespace"]
        ours = []
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if ref.get("group", GROUP) != GROUP or ref.get("kind", "Gateway") != "Gateway":
                continue
            gw_key = (ref.get("namespace") or namespace, ref["name"])
            if gw_key not in gateways:
                continue  # not a Gateway of this controller: its status is not ours to write
            ours.append(self.route_parent_status(kind, route, ref, gateways[gw_key], states[gw_key], attached))
        previous = (route.get("status") or {}).get("parents") or []
        others = [p for p in previous if p.get("controllerName") != self.controller]
        mine = [p for p in previous if p.get("controllerName") == self.controller]
        parents = others + [self.keep_times(next((p for p in mine if p.get("parentRef") == entry["parentRef"]), {}), entry)
                            for entry in ours]
        if parents != previous:
            self.patch_status(kind, route, {"parents": parents})

    def write_class(self, gc: dict) -> None:
        generation = gc["metadata"].get("generation", 0)
        supported = self.bundle_version.startswith(SUPPORTED_VERSION)
        status = {"conditions": [
            condition("Accepted", True, "Accepted", "Accepted by the simulated controller", generation),
            condition("SupportedVersion", supported, "SupportedVersion" if supported else "UnsupportedVersion",
                      f"Gateway API CRDs {self.bundle_version or '(version unknown)'}", generation),
        ]}
        self.write_status("GatewayClass", gc, status)

    def write_gateway(self, gateway: dict, states: dict) -> None:
        generation = gateway["metadata"].get("generation", 0)
        valid = [s for s in states.values() if s["programmed"]]
        all_accepted = all(s["accepted"] for s in states.values())
        listeners = [{"name": name, "supportedKinds": s["supported"], "attachedRoutes": s["attached"],
                      "conditions": s["conditions"]} for name, s in states.items()]
        status = {
            "addresses": [{"type": "IPAddress", "value": "10.96.200.1"}],
            "conditions": [
                condition("Accepted", bool(valid), "Accepted" if all_accepted and valid else "ListenersNotValid",
                          "Gateway accepted" if all_accepted and valid else
                          f"{len(states) - len(valid)} of {len(states)} listeners are not valid", generation),
                condition("Programmed", bool(valid), "Programmed" if valid else "Invalid",
                          "Programmed by the simulated controller (no data plane)" if valid else "no valid listener", generation),
            ],
            "listeners": listeners,
        }
        self.write_status("Gateway", gateway, status)

    # Writing -----------------------------------------------------------------------------------

    @staticmethod
    def keep_times(previous: dict, entry: dict) -> dict:
        """Conditions keep their lastTransitionTime while their status does not change."""
        before = {c.get("type"): c for c in previous.get("conditions") or []}
        for cond in entry["conditions"]:
            old = before.get(cond["type"])
            cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == cond["status"] else now()
        return entry

    def write_status(self, kind: str, obj: dict, status: dict) -> None:
        previous = obj.get("status") or {}
        self.keep_times(previous, status)
        for listener in status.get("listeners") or []:
            old = next((p for p in previous.get("listeners") or [] if p.get("name") == listener["name"]), {})
            self.keep_times(old, listener)
        merged = {**previous, **status}
        if merged != previous:
            self.patch_status(kind, obj, status)

    def patch_status(self, kind: str, obj: dict, status: dict) -> None:
        namespace, name = key_of(obj)
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": status}
        code, answer = self.api.call("PATCH", resource_path(kind, namespace, name) + "/status", body,
                                     "application/merge-patch+json")
        label = f"{kind} {namespace + '/' if namespace else ''}{name}"
        if code == 200:
            summary = [f"{c['type']}={c['status']}({c['reason']})" for c in status.get("conditions") or []]
            for parent in status.get("parents") or []:
                summary.append(f"{parent['parentRef'].get('name')}#{parent['parentRef'].get('sectionName', '')}: " + ", ".join(
                    f"{c['type']}={c['status']}({c['reason']})" for c in parent["conditions"]))
            log(f"{label} generation {obj['metadata'].get('generation')}: {'; '.join(summary)}")
        elif code in (404, 409):
            log(f"{label}: status not written ({code}), retried on the next change")
        else:
            log(f"{label}: status patch answered {code}: {answer.get('message')}")


def keep_secret(obj: dict) -> dict:
    """Of a Secret the cache keeps only its type and the names of its keys, never a value."""
    data = obj.get("data") or {}
    return {"metadata": obj["metadata"], "type": obj.get("type"), "data": {k: True for k in data if data[k]}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parser)
    parser.add_argument("--controller-name", required=True)
    args = parser.parse_args(argv)
    api = api_from(args)
    cache, lock, changed = start_informers(api, {kind: resource_path(kind) for kind in RESOURCES}, {"Secret": keep_secret})
    reconciler = Reconciler(api, args.controller_name, cache)
    log(f"serving GatewayClasses of {args.controller_name} (Gateway API CRDs {reconciler.bundle_version})")
    while True:
        changed.wait(timeout=30)
        changed.clear()
        time.sleep(0.05)  # let a burst of events land before one pass
        reconciler.cache = snapshot(cache, lock)
        try:
            reconciler.reconcile()
        except Exception:  # noqa: BLE001 - log and carry on, as a controller does
            log("reconcile failed:\n" + traceback.format_exc())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
