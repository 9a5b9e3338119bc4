"""SIMULATION: the pod network as the API server sees it, under Cilium's policies. See README.md.

kwok's pods have addresses (10.244.0.0/16) but no network and no process. The platform's API server
sends its "cluster" traffic (service and pod proxy, logs, exec, port-forward) through this HTTP
CONNECT proxy, by its egress selector (apiserver.k8s.io EgressSelectorConfiguration, the mechanism
Konnectivity uses; k8s.io/apiserver pkg/server/egressselector). For each connection:

* an address outside the pod network (kwok's kubelet endpoint on 127.0.0.1) is passed through;
* an address of a pod: the connection comes from the API server, which Cilium identifies as the
  `kube-apiserver` entity; here, as on a cluster whose control plane runs on other nodes than the
  pod, as `reserved:kube-apiserver` and `reserved:remote-node`, and, for ipBlock rules, from the
  API server's own address. network_policy.py decides with the CiliumNetworkPolicies and
  NetworkPolicies of the pod's namespace. A dropped connection is refused at once with status 503
  and the reason (Cilium would drop the packets silently, and the API server would time out);
* an allowed connection reaches what the pod would serve: of FlyteAdmin (pods
  `app.kubernetes.io/name: flyteadmin`, port 8088) the `/healthcheck` handler, which answers 200
  with an empty body as flyteadmin/pkg/server/service.go's healthCheckFunc does at v1.16.8; any
  other port of any pod refuses the connection (status 502), as no process listens there.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import socketserver
import sys
import threading

from network_policy import ingress_verdict, reserved_identity
from simapi import add_arguments, api_from, log, snapshot, start_informers

APISERVER_IDENTITY = reserved_identity("kube-apiserver", "remote-node")
PATHS = {
    "Pod": "/api/v1/pods",
    "Namespace": "/api/v1/namespaces",
    "CiliumNetworkPolicy": "/apis/cilium.io/v2/ciliumnetworkpolicies",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/networkpolicies",
}


def flyteadmin_http(connection: socket.socket, first: bytes) -> None:
    """FlyteAdmin's HTTP port, as far as the health check needs it: GET /healthcheck answers 200."""
    data = first
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return
        data += chunk
    request_line = data.split(b"\r\n", 1)[0].decode(errors="replace").split()
    method, path = (request_line + ["", ""])[:2]
    if method in ("GET", "HEAD") and path.split("?", 1)[0] == "/healthcheck":
        status, body = "200 OK", b""
    else:
        status, body = "404 Not Found", b"only FlyteAdmin's /healthcheck is simulated\n"
    connection.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                       + (body if method != "HEAD" else b""))


# (pod labels, container port, what answers)
SERVERS = [({"app.kubernetes.io/name": "flyteadmin"}, 8088, flyteadmin_http)]


def in_network(host: str, network) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network)
    except ValueError:
        return False


class Network:
    def __init__(self, cache: dict, lock: threading.Lock, pod_cidr: str, apiserver_address: str) -> None:
        self.cache, self.lock = cache, lock
        self.pod_network = ipaddress.ip_network(pod_cidr)
        self.apiserver_address = apiserver_address

    def pod_at(self, address: str, view: dict) -> dict | None:
        for pod in view["Pod"].values():
            status = pod.get("status") or {}
            addresses = {status.get("podIP")} | {p.get("ip") for p in status.get("podIPs") or []}
            if address in addresses and status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
                return pod
        return None

    def decide(self, host: str, port: int):
        """("pass", None) | ("refuse", (code, reason)) | ("serve", handler)."""
        if not in_network(host, self.pod_network):
            return "pass", None
        view = snapshot(self.cache, self.lock)
        pod = self.pod_at(host, view)
        if pod is None:
            return "refuse", (503, f"no running pod has the address {host}")
        label = f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}:{port}"
        allowed, why = ingress_verdict(pod, port, APISERVER_IDENTITY, self.apiserver_address,
                                       list(view["CiliumNetworkPolicy"].values()), list(view["NetworkPolicy"].values()),
                                       {name: ns for (_namespace, name), ns in view["Namespace"].items()})
        if not allowed:
            log(f"dropped kube-apiserver -> {label}: {why}")
            return "refuse", (503, f"simulated Cilium dropped kube-apiserver -> {label}: {why}")
        labels = pod["metadata"].get("labels") or {}
        for wanted, server_port, handler in SERVERS:
            if server_port == port and all(labels.get(k) == v for k, v in wanted.items()):
                log(f"kube-apiserver -> {label}: {why}; served by the simulation")
                return "serve", handler
        return "refuse", (502, f"connection refused by {label}: no process runs in a kwok pod")


class Handler(socketserver.BaseRequestHandler):
    network: Network | None = None
    pod_cidr = ""

    def handle(self) -> None:
        connection = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                return
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        parts = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
        if len(parts) < 2 or parts[0] != "CONNECT":
            connection.sendall(b"HTTP/1.1 405 only CONNECT\r\n\r\n")
            return
        host, _colon, port_text = parts[1].rpartition(":")
        host = host.strip("[]")
        if self.network is None:  # still filling the caches: only the pod network must wait
            verdict, detail = ("refuse", (503, "the simulated network is starting")) if in_network(host, self.pod_cidr) \
                else ("pass", None)
        else:
            verdict, detail = self.network.decide(host, int(port_text))
        if verdict == "refuse":
            code, reason = detail
            connection.sendall(f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
            return
        if verdict == "serve":
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            detail(connection, rest)
            return
        try:
            upstream = socket.create_connection((host, int(port_text)), timeout=10)
        except OSError as error:
            connection.sendall(f"HTTP/1.1 502 {error}\r\nContent-Length: 0\r\n\r\n".encode())
            return
        upstream.settimeout(None)
        connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        pump = threading.Thread(target=copy, args=(upstream, connection), daemon=True)
        pump.start()
        copy(connection, upstream)
        pump.join()


def copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parser)
    parser.add_argument("--socket", required=True, help="the Unix socket the API server's egress selector dials")
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--apiserver-address", required=True, help="the address pods see the API server's connections from")
    args = parser.parse_args(argv)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    # Listen first: the API server dials the socket for every exec and log, before the caches are filled.
    Handler.pod_cidr = args.pod_cidr
    server = Server(args.socket, Handler)
    os.chmod(args.socket, 0o600)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"listening on {args.socket}")
    cache, lock, _threads = start_informers(api_from(args), PATHS)
    Handler.network = Network(cache, lock, args.pod_cidr, args.apiserver_address)
    log("policies and pods cached; deciding connections to the pod network")
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
