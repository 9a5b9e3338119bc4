"""The local test platform: a real Kubernetes control plane with kwok nodes, on one machine.

    python3 tests/platform/platform.py up       build what is missing, start, print how to use it
    python3 tests/platform/platform.py down     stop everything and remove the platform's state
    python3 tests/platform/platform.py status   exit 0 when the platform answers, 1 otherwise
    python3 tests/platform/platform.py env      print shell exports (KUBECONFIG, PATH) for a running platform
    python3 tests/platform/platform.py flyte-digest   the digest of tests/platform/flyte's programs (build's cache key)

Real: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from upstream
modules (tests/platform/build), the upstream CRDs from ../shared/crds, RBAC, admission, the
garbage collector, the PV binder. Simulated: kubelets (kwok nodes), the pod network as the API
server reaches it, and the third-party operators the collection relies on (tests/platform/simulations:
kwok Stages, and small controllers for what a Stage cannot do: operators.py for the 1Password operator
and the CloudNativePG instance manager, cnpg_backup.py, gateway_controller.py, cluster_network.py).

Only the standard library: it runs before any virtualenv exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CACHE = Path(os.environ.get("HOMELAB_FLYTE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "homelab-flyte")
STATE = Path(os.environ.get("HOMELAB_FLYTE_PLATFORM_DIR") or CACHE / "run" / "platform")
SHARED = Path(os.environ.get("HOMELAB_FLYTE_SHARED") or REPO.parent / "shared")
PORT_BASE = int(os.environ.get("HOMELAB_FLYTE_PLATFORM_PORT_BASE", "26400"))
PORTS = {
    "etcd-client": PORT_BASE + 79,
    "etcd-peer": PORT_BASE + 80,
    "apiserver": PORT_BASE + 43,
    "controller-manager": PORT_BASE + 57,
    "scheduler": PORT_BASE + 59,
    "kwok": PORT_BASE + 50,
}
NODE_COUNT = int(os.environ.get("HOMELAB_FLYTE_PLATFORM_NODES", "3"))
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
# Components in start order; down stops them in reverse.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "cluster-network", "kwok",
              "gateway-controller", "cnpg-backup", "operators"]
# The test PostgreSQL's port (tests/postgres.py reads the same variable).
PG_PORT = os.environ.get("HOMELAB_FLYTE_PG_PORT", "25432")
# The controllerName of the platform's GatewayClass (manifests/gateway.yaml), served by simulations/gateway_controller.py.
GATEWAY_CONTROLLER = "homelab.flyte/simulated-gateway-controller"


def log(message: str) -> None:
    print(f"[platform] {message}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    pins = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            pins[key] = value
    return pins


def flyte_digest() -> str:
    """What the build of tests/platform/flyte depends on besides FLYTE_VERSION: its Go sources."""
    digest = hashlib.sha256()
    root = HERE / "flyte"
    for path in sorted(root.rglob("*.go")):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def bin_dirs() -> dict[str, Path]:
    pins = versions()
    dirs = {
        name: CACHE / "bin" / f"{name}-{pins[key]}"
        for name, key in (("kubernetes", "KUBERNETES_VERSION"), ("etcd", "ETCD_VERSION"), ("kwok", "KWOK_VERSION"),
                          ("helm", "HELM_VERSION"), ("versitygw", "VERSITYGW_VERSION"))
    }
    dirs["flyte"] = CACHE / "bin" / f"flyte-{pins['FLYTE_VERSION']}-{flyte_digest()}"
    return dirs


def binary(name: str) -> str:
    dirs = bin_dirs()
    owner = {"etcd": "etcd", "kwok": "kwok", "helm": "helm", "versitygw": "versitygw",
             "flytepropeller": "flyte", "flyte-config": "flyte", "flyte-workflow": "flyte"}.get(name, "kubernetes")
    return str(dirs[owner] / name)


def path_dirs() -> list[str]:
    return [str(d) for d in bin_dirs().values()]


# --- PKI -----------------------------------------------------------------------------------------

def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue_cert(pki: Path, name: str, subject: str, ext: str) -> None:
    """Key and certificate signed by the platform CA; ext is an openssl extension section."""
    (pki / f"{name}.ext").write_text(ext)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / f"{name}.key"),
            "-subj", subject, "-out", str(pki / f"{name}.csr"))
    openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
            "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", str(pki / f"{name}.ext"), "-out", str(pki / f"{name}.crt"))


def make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-keyout", str(pki / "ca.key"),
            "-subj", "/CN=homelab-flyte-platform-ca", "-out", str(pki / "ca.crt"))
    sans = ",".join([
        "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local", "IP:127.0.0.1", "IP:10.96.0.1",
    ])
    issue_cert(pki, "apiserver", "/CN=kube-apiserver",
               f"keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    issue_cert(pki, "admin", "/O=system:masters/CN=homelab-flyte-admin",
               "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")
    # kwok plays every kubelet: the API server reaches it for logs, exec and port-forward.
    issue_cert(pki, "kwok", "/CN=kwok",
               "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
               "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    issue_cert(pki, "gateway", "/CN=*.platform.test",
               "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
               "subjectAltName=DNS:*.platform.test\n")
    openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for leftover in pki.glob("*.csr"):
        leftover.unlink()


def write_kubeconfig(path: Path, pki: Path) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "homelab-flyte", "cluster": {
            "server": f"https://127.0.0.1:{PORTS['apiserver']}", "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "homelab-flyte-admin", "user": {
            "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": "homelab-flyte", "context": {"cluster": "homelab-flyte", "user": "homelab-flyte-admin"}}],
        "current-context": "homelab-flyte",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


# --- processes -----------------------------------------------------------------------------------

def advertise_address() -> str | None:
    """The host's primary address; the API server may not advertise a loopback one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.255", 9))  # no packet is sent for a UDP connect
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def command_lines() -> dict[str, list[str]]:
    pki, kubeconfig = STATE / "pki", str(STATE / "kubeconfig")
    advertise = advertise_address()
    apiserver = [
        binary("kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{PORTS['etcd-client']}",
        "--bind-address=127.0.0.1", f"--secure-port={PORTS['apiserver']}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'admin.crt'}", f"--kubelet-client-key={pki / 'admin.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC", "--allow-privileged=true",
        # Its connections to pods and kubelets go through the simulated pod network (simulations/cluster_network.py).
        f"--egress-selector-config-file={STATE / 'egress-selector.yaml'}",
    ]
    apiserver += [f"--advertise-address={advertise}"] if advertise else ["--endpoint-reconciler-type=none"]
    simulation_api = [f"--server=https://127.0.0.1:{PORTS['apiserver']}", f"--ca={pki / 'ca.crt'}",
                      f"--cert={pki / 'admin.crt'}", f"--key={pki / 'admin.key'}"]
    delegated = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                 f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", "--leader-elect=false"]
    return {
        "etcd": [
            binary("etcd"), "--name=platform", f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{PORTS['etcd-client']}",
            f"--advertise-client-urls=http://127.0.0.1:{PORTS['etcd-client']}",
            f"--listen-peer-urls=http://127.0.0.1:{PORTS['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{PORTS['etcd-peer']}",
            f"--initial-cluster=platform=http://127.0.0.1:{PORTS['etcd-peer']}",
            # A throw-away test store: durability buys nothing and fsync costs seconds on slow disks.
            "--unsafe-no-fsync=true", "--log-level=warn",
        ],
        "kube-apiserver": apiserver,
        "kube-controller-manager": [
            binary("kube-controller-manager"), *delegated, f"--secure-port={PORTS['controller-manager']}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true", f"--service-cluster-ip-range={SERVICE_CIDR}",
        ],
        "kube-scheduler": [binary("kube-scheduler"), *delegated, f"--secure-port={PORTS['scheduler']}"],
        "kwok": [
            binary("kwok"), f"--kubeconfig={kubeconfig}", f"--config={STATE / 'stages.yaml'}",
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1", f"--node-port={PORTS['kwok']}",
            f"--server-address=127.0.0.1:{PORTS['kwok']}",
            f"--tls-cert-file={pki / 'kwok.crt'}", f"--tls-private-key-file={pki / 'kwok.key'}",
            "--node-lease-duration-seconds=40",
        ],
        # The status CloudNativePG writes on Backups depends on other objects: a small controller, not a Stage.
        "cnpg-backup": [sys.executable, str(HERE / "simulations" / "cnpg_backup.py"), f"--kubeconfig={kubeconfig}"],
        "operators": [
            sys.executable, str(HERE / "simulations" / "operators.py"), *simulation_api, f"--pg-port={PG_PORT}",
        ],
        "cluster-network": [
            sys.executable, str(HERE / "simulations" / "cluster_network.py"), *simulation_api,
            f"--socket={STATE / 'cluster-network.sock'}", f"--pod-cidr={POD_CIDR}",
            f"--apiserver-address={advertise or '127.0.0.1'}",
        ],
        "gateway-controller": [
            sys.executable, str(HERE / "simulations" / "gateway_controller.py"), *simulation_api,
            f"--controller-name={GATEWAY_CONTROLLER}",
        ],
    }


def pid_of(name: str) -> int | None:
    pidfile = STATE / "pids" / f"{name}.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(name: str, argv: list[str]) -> None:
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    (STATE / "pids").mkdir(parents=True, exist_ok=True)
    # No libpq settings of the caller's shell: kwok's exec processes play a CloudNativePG container,
    # whose environment is postgres-exec.yaml's alone (a PGPASSWORD here would let TCP logins through).
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    with open(STATE / "logs" / f"{name}.log", "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=STATE, env=env)
    (STATE / "pids" / f"{name}.pid").write_text(str(process.pid))


def stop_all() -> None:
    for name in reversed(COMPONENTS):
        pid = pid_of(name)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pid_of(name):
            time.sleep(0.2)
        if pid_of(name):
            os.killpg(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def wait_for(what: str, probe, timeout: float, component: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if component and pid_of(component) is None:
            raise SystemExit(f"[platform] {component} exited while waiting for {what}; see {STATE / 'logs' / (component + '.log')}\n"
                             + tail(STATE / "logs" / f"{component}.log"))
        try:
            if probe():
                return
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last_error = str(error)
        time.sleep(0.5)
    raise SystemExit(f"[platform] timed out after {timeout:.0f}s waiting for {what}: {last_error}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def https_ok(url: str) -> bool:
    context = ssl.create_default_context(cafile=str(STATE / "pki" / "ca.crt"))
    context.load_cert_chain(str(STATE / "pki" / "admin.crt"), str(STATE / "pki" / "admin.key"))
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return response.status == 200


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([binary("kubectl"), f"--kubeconfig={STATE / 'kubeconfig'}", *args],
                            input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


# --- cluster content -----------------------------------------------------------------------------

def write_stages() -> None:
    """kwok's own default node and pod lifecycles, then this project's operator simulations."""
    documents = sorted((bin_dirs()["kwok"] / "stages").glob("*.yaml"))
    documents += sorted((HERE / "simulations").glob("*.yaml"))
    # The exec simulation names the test PostgreSQL's port, which a developer may move.
    text = "\n---\n".join(path.read_text() for path in documents)
    (STATE / "stages.yaml").write_text(text.replace("25432", PG_PORT))


def write_egress_selector() -> None:
    """The API server's "cluster" traffic (pods, services, kubelets) goes through the simulated pod network."""
    config = {
        "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
        "egressSelections": [{"name": "cluster", "connection": {
            "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(STATE / "cluster-network.sock")}}}}],
    }
    (STATE / "egress-selector.yaml").write_text(json.dumps(config, indent=2))


def node_manifest(index: int) -> dict:
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "200Gi"}
    name = f"kwok-node-{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "type": "kwok", "topology.kubernetes.io/zone": f"zone-{index}",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def install_content() -> None:
    crds = sorted(SHARED.glob("crds/*.yaml"))
    if not crds:
        raise SystemExit(f"[platform] no CRDs under {SHARED / 'crds'}; set HOMELAB_FLYTE_SHARED to the shared/ folder")
    for crd in crds:
        # Server-side: some upstream CRDs are larger than the last-applied annotation allows.
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=homelab-flyte-platform", "-f", str(crd))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    wait_for("the CRDs in API discovery", crds_discoverable, 60)
    nodes = {"apiVersion": "v1", "kind": "List", "items": [node_manifest(i) for i in range(NODE_COUNT)]}
    kubectl("apply", "-f", "-", stdin=json.dumps(nodes))
    kubectl("apply", "--server-side", "--field-manager=homelab-flyte-platform", "-f", str(HERE / "manifests"))
    pki = STATE / "pki"
    tls = kubectl("create", "secret", "tls", "platform-gateway-tls", "-n", "gateway-system", "--dry-run=client", "-o", "json",
                  f"--cert={pki / 'gateway.crt'}", f"--key={pki / 'gateway.key'}").stdout
    kubectl("apply", "-f", "-", stdin=tls)


def crds_discoverable() -> bool:
    """Established is not enough for clients that read discovery (kwok does, once, at start)."""
    crds = json.loads(kubectl("get", "crd", "-o", "json").stdout)["items"]
    for crd in crds:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for version in (v["name"] for v in crd["spec"]["versions"] if v["served"]):
            listing = json.loads(kubectl("get", "--raw", f"/apis/{group}/{version}").stdout)
            if listing.get("kind") != "APIResourceList" or plural not in {r["name"] for r in listing["resources"]}:
                return False
    return True


def cluster_ready() -> bool:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
    if len(ready) < NODE_COUNT:
        return False
    # The token and service-account controllers have run once the default account exists.
    return kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0


def gateway_programmed() -> bool:
    gateway = json.loads(kubectl("get", "gateway", "platform-gateway", "-n", "gateway-system", "-o", "json").stdout)
    generation = gateway["metadata"]["generation"]
    return any(c["type"] == "Programmed" and c["status"] == "True" and c.get("observedGeneration") == generation
               for c in (gateway.get("status") or {}).get("conditions") or [])


# --- commands ------------------------------------------------------------------------------------

def running() -> bool:
    if not all(pid_of(name) for name in COMPONENTS):
        return False
    try:
        return https_ok(f"https://127.0.0.1:{PORTS['apiserver']}/readyz")
    except Exception:  # noqa: BLE001
        return False


def cmd_up() -> None:
    subprocess.run([str(HERE / "build")], check=True)
    started = time.monotonic()
    if running():
        log("already running")
    else:
        stop_all()
        shutil.rmtree(STATE, ignore_errors=True)
        STATE.mkdir(parents=True)
        make_pki(STATE / "pki")
        write_kubeconfig(STATE / "kubeconfig", STATE / "pki")
        write_stages()
        write_egress_selector()
        lines = command_lines()
        start("etcd", lines["etcd"])
        wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{PORTS['etcd-client']}/health"), 60, "etcd")
        start("kube-apiserver", lines["kube-apiserver"])
        wait_for("kube-apiserver", lambda: https_ok(f"https://127.0.0.1:{PORTS['apiserver']}/readyz"), 120, "kube-apiserver")
        for name in ("kube-controller-manager", "kube-scheduler"):
            start(name, lines[name])
        install_content()
        start("cluster-network", lines["cluster-network"])
        wait_for("the simulated pod network", (STATE / "cluster-network.sock").exists, 30, "cluster-network")
        # kwok resolves every Stage's resource at start, so the CRDs must be served first.
        start("kwok", lines["kwok"])
        start("gateway-controller", lines["gateway-controller"])
        start("cnpg-backup", lines["cnpg-backup"])
        wait_for(f"{NODE_COUNT} Ready kwok nodes", cluster_ready, 120, "kwok")
        start("operators", lines["operators"])
        wait_for("the operator simulations", lambda: "started:" in (STATE / "logs" / "operators.log").read_text(), 30, "operators")
        wait_for("the platform Gateway to be programmed", gateway_programmed, 60, "gateway-controller")
        log(f"started in {time.monotonic() - started:.1f}s")
    print(usage())


def usage() -> str:
    return (
        f"The local platform is running (Kubernetes {versions()['KUBERNETES_VERSION']}, {NODE_COUNT} simulated kwok nodes).\n"
        f"  kubeconfig: {STATE / 'kubeconfig'}\n"
        "  use it:     eval \"$(scripts/platform env)\"   (KUBECONFIG, K8S_AUTH_KUBECONFIG and PATH)\n"
        f"  logs:       {STATE / 'logs'}\n"
        f"  stop it:    make platform-down"
    )


def cmd_env() -> None:
    print(f"export KUBECONFIG={STATE / 'kubeconfig'}")
    print(f"export K8S_AUTH_KUBECONFIG={STATE / 'kubeconfig'}")
    print(f"export PATH={':'.join(path_dirs())}:$PATH")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    if command == "up":
        cmd_up()
    elif command == "down":
        stop_all()
        shutil.rmtree(STATE, ignore_errors=True)
        log("stopped")
    elif command == "status":
        ok = running()
        print("running" if ok else "stopped")
        return 0 if ok else 1
    elif command == "env":
        cmd_env()
    elif command == "flyte-digest":
        print(flyte_digest())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
