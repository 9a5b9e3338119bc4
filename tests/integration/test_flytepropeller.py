"""Real FlytePropeller 1.16.8 (tests/platform/flyte) with the configuration the release deployed.

The site roles converge in a namespace of the test's own; the flytepropeller pod stays simulated
(kwok), and the real binary runs on this machine in its place: with the files of the
flyte-propeller-config ConfigMap laid out as the Deployment mounts them, the container's command
and environment, and the pod's identity (POD_NAME is the simulated pod's name, the API server is
reached with a token of the flytepropeller ServiceAccount). What differs from the deployed
configuration is in local_changes() below and nowhere else: one more config file, merged last by
Flyte's loader (test_only_the_named_changes_differ_from_what_the_release_deployed proves it).

Storage: versitygw, the S3 server the storage role deploys, runs on the loopback interface with
the container arguments and credentials of the role's Deployment (its pod is simulated too). The
bucket is a folder made by the test in place of the role's bucket Job, which kwok does not run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from conftest import REPO, free_port, run_playbook
from flyte_code import config_files, config_search_path, effective_config
from test_flyte_site import ROLES, site_vars

PROPELLER_LOG_TIMEOUT = 120
CRD = "flyteworkflows.flyte.lyft.com"


def local_changes(kubeconfig: Path, prof_port: int, s3_endpoint: str, events: Path) -> dict:
    """Every change to the deployed configuration. Addresses: where the process finds the API server
    (a pod uses its in-cluster config), the port of its health and profiling server (a pod has its
    own network namespace; this machine is shared), and the S3 endpoint (the in-cluster Service name
    does not resolve here). One more: the event sink. The release sends events to FlyteAdmin, which
    does not run here, and propeller does not advance a workflow whose event it cannot publish
    ("ErrorRecordingError: failed to publish event, caused by: EventSinkError: ... lookup flyteadmin
    ... no such host"); the file sink (flytepropeller/events) records them to a file instead."""
    return {
        "propeller": {"kube-config": str(kubeconfig), "prof-port": prof_port},
        "storage": {"connection": {"endpoint": s3_endpoint}},
        "event": {"type": "file", "file-path": str(events)},
    }


def leaves(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaves(value, (*prefix, key))
    else:
        yield prefix, tree


def secret_data(core, namespace: str, name: str) -> dict[str, str]:
    data = core.read_namespaced_secret(name, namespace).data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def container_env(core, namespace: str, pod: str, container: dict) -> dict[str, str]:
    """The environment the kubelet would give the container (the kinds of entry the chart uses)."""
    env = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom")
        if source is None:
            env[entry["name"]] = entry.get("value", "")
        elif "fieldRef" in source:
            fields = {"metadata.name": pod, "metadata.namespace": namespace}
            env[entry["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            ref = source["secretKeyRef"]
            env[entry["name"]] = secret_data(core, namespace, ref["name"])[ref["key"]]
    return env


def start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **env})


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(what: str, probe, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(1)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    raise AssertionError(f"timed out waiting for {what}; {log.name} ends with:\n{tail}")


def serialized(api, obj) -> dict:
    return api.sanitize_for_serialization(obj)


def ensure_crd(api) -> bool:
    """The FlyteWorkflow CRD, from the stand-in chart's template when no release installed it (the
    releases of test namespaces leave it to flyte-system's). Returns whether this test created it."""
    extensions = client.ApiextensionsV1Api(api)
    try:
        extensions.read_custom_resource_definition(CRD)
        return False
    except client.ApiException as error:
        if error.status != 404:
            raise
    manifest = subprocess.run(
        ["helm", "template", "crd", str(REPO / "tests/charts/flyte-core"),
         "--show-only", "templates/propeller-crd.yaml",
         "--api-versions=apiextensions.k8s.io/v1/CustomResourceDefinition"],
        check=True, capture_output=True, text=True).stdout
    subprocess.run(["kubectl", "apply", "-f", "-"], input=manifest, check=True, capture_output=True, text=True)
    subprocess.run(["kubectl", "wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s"],
                   check=True, capture_output=True)
    return True


def service_account_kubeconfig(api, core, namespace: str, account: str, path: Path) -> None:
    """What a pod of the account reads in-cluster: the API server's CA, and a token of the account."""
    token = core.create_namespaced_service_account_token(
        account, namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600))).status.token
    ca = Path(api.configuration.ssl_ca_cert).read_bytes()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "platform", "cluster": {"server": api.configuration.host,
                                                      "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "contexts": [{"name": "pod", "context": {"cluster": "platform", "user": account, "namespace": namespace}}],
        "users": [{"name": account, "user": {"token": token}}]}))


@pytest.fixture(scope="module")
def propeller(api, flyte_programs, tmp_path_factory):
    namespace = f"it-prop-{uuid.uuid4().hex[:6]}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    work = tmp_path_factory.mktemp("propeller")
    created_crd = ensure_crd(api)
    processes = []
    try:
        run = run_playbook(ROLES, extra_vars=site_vars(namespace))
        assert run.rc == 0, run

        # The storage role's S3 server, as its Deployment runs it, on loopback.
        s3 = serialized(api, apps.read_namespaced_deployment("flyte-s3", namespace))
        s3_container = s3["spec"]["template"]["spec"]["containers"][0]
        s3_port = free_port()
        data = work / "s3"
        (data / "flyte-data").mkdir(parents=True)
        args = [str(data) if a == "/data" else (f"127.0.0.1:{s3_port}" if a.startswith(":") else a)
                for a in s3_container["args"]]
        s3_log = work / "versitygw.log"
        processes.append(start(["versitygw", *args], s3_log, container_env(core, namespace, "flyte-s3", s3_container)))
        wait_until("versitygw", lambda: socket.socket().connect_ex(("127.0.0.1", s3_port)) == 0, 30, s3_log)

        deployment = serialized(api, apps.read_namespaced_deployment("flytepropeller", namespace))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        name = "flyte-propeller-config"
        configmaps = {name: core.read_namespaced_config_map(name, namespace).data}
        search = config_files(deployment, container, configmaps, work / "files")
        kubeconfig = work / "flytepropeller-kubeconfig"
        service_account_kubeconfig(api, core, namespace, deployment["spec"]["template"]["spec"]["serviceAccountName"],
                                   kubeconfig)
        prof_port = free_port()
        events = work / "events.log"
        changes = local_changes(kubeconfig, prof_port, f"http://127.0.0.1:{s3_port}", events)
        overlay = Path(search).parent / "zz-test-local-changes.yaml"
        overlay.write_text(yaml.safe_dump(changes))

        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        pod = core.list_namespaced_pod(namespace, label_selector=selector).items[0].metadata.name
        env = container_env(core, namespace, pod, container)
        deployed_search = config_search_path(container)
        argv = [search if a == deployed_search else a for a in [*container["command"], *(container.get("args") or [])]]
        log = work / "flytepropeller.log"
        processes.append(start([flyte_programs["flytepropeller"], *argv[1:]], log, env))
        yield {"namespace": namespace, "pod": pod, "log": log, "prof_port": prof_port, "search": search,
               "overlay": overlay, "changes": changes, "events": events, "s3": data}
    finally:
        teardown(api, namespace, processes, created_crd)


def teardown(api, namespace: str, processes: list, created_crd: bool) -> None:
    custom = client.CustomObjectsApi(api)
    # Workflows carry propeller's finalizer; with propeller gone, nothing would remove it.
    for item in custom.list_cluster_custom_object("flyte.lyft.com", "v1alpha1", "flyteworkflows")["items"]:
        if item["metadata"]["namespace"].startswith(namespace):
            custom.patch_namespaced_custom_object("flyte.lyft.com", "v1alpha1", item["metadata"]["namespace"],
                                                  "flyteworkflows", item["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
    for process in reversed(processes):
        stop(process)
    subprocess.run(["helm", "uninstall", "flyte", "-n", namespace, "--wait"], check=False, capture_output=True)
    core = client.CoreV1Api(api)
    for name in (namespace, f"{namespace}-authentik", f"{namespace}-proj-development"):
        try:
            core.delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise
    if created_crd:
        client.ApiextensionsV1Api(api).delete_custom_resource_definition(CRD)


def test_only_the_named_changes_differ_from_what_the_release_deployed(propeller, flyte_programs, tmp_path):
    config = flyte_programs["flyte-config"]
    with_changes = effective_config(config, propeller["search"])["settings"]
    # The same files without the one that names the changes (propeller is reading the folder).
    search = Path(propeller["search"])
    deployed_folder = tmp_path / "deployed"
    shutil.copytree(search.parent, deployed_folder, ignore=shutil.ignore_patterns(propeller["overlay"].name))
    deployed = dict(leaves(effective_config(config, str(deployed_folder / search.name))["settings"]))
    changed = {path for path, value in leaves(with_changes) if deployed.get(path) != value}
    assert changed == {path for path, _value in leaves(propeller["changes"])}


def test_propeller_takes_its_leader_lease_in_the_deployments_namespace(api, propeller):
    coordination = client.CoordinationV1Api(api)

    def holder():
        try:
            return coordination.read_namespaced_lease("propeller-leader", propeller["namespace"]).spec.holder_identity
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
    assert wait_until("the leader lease", holder, PROPELLER_LOG_TIMEOUT, propeller["log"]) == propeller["pod"]


def test_propeller_answers_its_health_endpoint(propeller):
    url = f"http://127.0.0.1:{propeller['prof_port']}/healthcheck"

    def healthy():
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False
    assert wait_until("the health endpoint", healthy, PROPELLER_LOG_TIMEOUT, propeller["log"])


def test_a_container_task_gets_the_environment_and_secrets_the_collection_configured(api, propeller, flyte_programs):
    namespace = propeller["namespace"]
    core = client.CoreV1Api(api)
    # flyteadmin's default namespace mapping, {{ project }}-{{ domain }}; the cluster resource sync
    # (simulated) would have created it.
    project, domain = f"{namespace}-proj", "development"
    target = f"{project}-{domain}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=target)))
    execution = f"x{uuid.uuid4().hex[:12]}"
    built = subprocess.run([flyte_programs["flyte-workflow"], "--namespace", target, "--project", project,
                            "--domain", domain, "--name", execution,
                            "--image", "cr.flyte.org/flyteorg/flytekit:py3.11-1.16.8",
                            "--arg", "pyflyte-execute", "--raw-output-prefix", "s3://flyte-data/raw"],
                           capture_output=True, text=True, check=True)
    workflow = json.loads(built.stdout)
    client.CustomObjectsApi(api).create_namespaced_custom_object("flyte.lyft.com", "v1alpha1", target, "flyteworkflows",
                                                                 workflow)

    def task_pod():
        pods = core.list_namespaced_pod(target, label_selector=f"execution-id={execution}").items
        return pods[0] if pods else None
    pod = wait_until("the task pod", task_pod, PROPELLER_LOG_TIMEOUT, propeller["log"])
    container = pod.spec.containers[0]
    env = {e.name: e.value for e in container.env or []}
    endpoint = f"http://flyte-s3.{namespace}.svc.cluster.local:7070"
    names = sorted(name for name in env if not name.startswith("FLYTE_INTERNAL"))
    assert env.get("FLYTE_AWS_ENDPOINT") == endpoint, names
    secrets = [source.secret_ref.name for source in container.env_from or [] if source.secret_ref]
    assert secrets == ["flyte-s3-credentials"]
    # Propeller got as far as it does in a cluster: its events, and the node's metadata in the bucket.
    recorded = propeller["events"].read_text()
    assert f'[--WF EVENT--] project:"{project}" domain:"{domain}" name:"{execution}", Phase: RUNNING' in recorded
    assert list((propeller["s3"] / "flyte-data/metadata/propeller").glob(f"{target}-{execution}/n0*"))
