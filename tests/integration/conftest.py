"""Fixtures for the integration tests: the local platform, a Kubernetes client, and a playbook runner.

The tests drive real playbooks against the real API server of tests/platform and read the results
back with the Kubernetes client, never through the code under test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config, dynamic

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / "tests" / "platform" / "platform.py"
RECAP = re.compile(r"^\S+\s+:\s+((?:\w+=\d+\s*)+)$", re.MULTILINE)


@dataclass(repr=False)
class PlaybookRun:
    """One ansible-playbook run: exit code, whole output, and the PLAY RECAP summed over hosts."""

    rc: int
    output: str
    recap: dict[str, int]

    @property
    def changed(self) -> int:
        return self.recap.get("changed", 0)

    @property
    def failed(self) -> int:
        return self.recap.get("failed", 0) + self.recap.get("unreachable", 0)

    def __repr__(self) -> str:  # shown by pytest when an assertion on the run fails
        return f"rc={self.rc} recap={self.recap}\n{self.output[-6000:]}"


def parse_recap(output: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counters in RECAP.findall(output):
        for key, value in (pair.split("=") for pair in counters.split()):
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def run_playbook(playbook: str | Path, *, extra_vars: dict | None = None, check: bool = False, diff: bool = False,
                 verbosity: int = 0, tags: str | None = None, inventory: str | Path | None = None,
                 env: dict | None = None) -> PlaybookRun:
    """Run a playbook (a path, relative to the repository, or homelab.flyte.<name>) and capture all of it."""
    args = ["ansible-playbook", str(playbook)]
    if inventory:
        args += ["-i", str(inventory)]
    if extra_vars:
        args += ["-e", json.dumps(extra_vars)]
    if check:
        args.append("--check")
    if diff:
        args.append("--diff")
    if verbosity:
        args.append("-" + "v" * verbosity)
    if tags:
        args += ["--tags", tags]
    run_env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env or {})}
    result = subprocess.run(args, cwd=REPO, env=run_env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    return PlaybookRun(result.returncode, output, parse_recap(output))


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """The platform's kubeconfig; starts the platform when it is not running."""
    status = subprocess.run([sys.executable, str(PLATFORM), "status"], capture_output=True, check=False)
    if status.returncode != 0:
        subprocess.run([sys.executable, str(PLATFORM), "up"], check=True)
    exports = subprocess.run([sys.executable, str(PLATFORM), "env"], check=True, capture_output=True, text=True).stdout
    for line in exports.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        os.environ[key] = os.path.expandvars(value)
    return os.environ["KUBECONFIG"]


@pytest.fixture(scope="session")
def api(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def k8s(api: client.ApiClient) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api)


@pytest.fixture(scope="session")
def flyte_programs(kubeconfig) -> dict[str, str]:
    """flytepropeller, flyte-config and flyte-workflow, built once (tests/platform/build caches them;
    the fixture's build is a no-op after scripts/bootstrap), found where the platform's PATH puts them."""
    assert kubeconfig, "the platform's PATH"
    subprocess.run([str(REPO / "tests/platform/build"), "flyte"], check=True)
    programs = {name: shutil.which(name) for name in ("flytepropeller", "flyte-config", "flyte-workflow")}
    assert all(programs.values()), f"not on PATH ({os.environ['PATH']}): {programs}"
    return programs


@pytest.fixture
def namespace(api: client.ApiClient):
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    core = client.CoreV1Api(api)
    name = f"it-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


# --- the operator simulations of tests/platform/simulations/operators.py -----------------------------

VAULT_NAMESPACE = "onepassword-test-vault"
TEST_POSTGRES_LABEL = "simulation.homelab.flyte/test-postgres"


class SimulatedVault:
    """Items of the simulated 1Password vault, which the simulated operator syncs from: one ConfigMap each.

    put() creates an item with the given fields; set_field() changes one field, as a save in 1Password
    does (the simulation raises the item's version); every item put is removed afterwards.
    """

    def __init__(self, core: client.CoreV1Api):
        self.core, self.created = core, []

    def put(self, title: str, fields: dict[str, str], vault: str = "Secrets") -> None:
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=title, labels={"simulation.homelab.flyte/vault": vault}),
            data={"fields.json": json.dumps([{"label": k, "value": v} for k, v in fields.items()])})
        self.core.create_namespaced_config_map(VAULT_NAMESPACE, body)
        self.created.append(title)

    def set_field(self, title: str, label: str, value: str) -> None:
        item = self.core.read_namespaced_config_map(title, VAULT_NAMESPACE)
        fields = json.loads(item.data["fields.json"])
        fields = [{"label": f["label"], "value": value if f["label"] == label else f["value"]} for f in fields]
        self.core.patch_namespaced_config_map(title, VAULT_NAMESPACE, {"data": {"fields.json": json.dumps(fields)}})

    def remove_all(self) -> None:
        for title in self.created:
            try:
                self.core.delete_namespaced_config_map(title, VAULT_NAMESPACE)
            except client.ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
def vault(api: client.ApiClient):
    items = SimulatedVault(client.CoreV1Api(api))
    yield items
    items.remove_all()


def create_test_postgres_namespace(api: client.ApiClient, name: str) -> None:
    """A namespace whose CloudNativePG Clusters the simulated instance manager serves from the test PostgreSQL."""
    client.CoreV1Api(api).create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={TEST_POSTGRES_LABEL: "true"})))


S3_ACCESS_KEY, S3_BUCKET = "dump-store-test", "flyte-backups"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3 server on loopback: versitygw (the storage role's object store) with its posix backend, one bucket."""
    versitygw = shutil.which("versitygw")
    if not versitygw:
        pytest.fail("versitygw is not on the PATH: tests/platform/build versitygw")
    data = tmp_path_factory.mktemp("s3")
    (data / S3_BUCKET).mkdir()
    port, secret = free_port(), secrets.token_hex(16)
    log = open(data.parent / f"versitygw-{port}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([versitygw, "--port", f"127.0.0.1:{port}", "--region", "us-east-1", "posix", str(data)],
                               stdout=log, stderr=subprocess.STDOUT,
                               env={"ROOT_ACCESS_KEY_ID": S3_ACCESS_KEY, "ROOT_SECRET_ACCESS_KEY": secret, "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert process.poll() is None and time.monotonic() < deadline, (data.parent / f"versitygw-{port}.log").read_text()
            time.sleep(0.2)
        yield {"endpoint": f"http://127.0.0.1:{port}", "secret": secret, "data": data}
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def remove_deployment(api: client.ApiClient, namespace: str, *helm_flags: str) -> None:
    """A test deployment's teardown: uninstall its release, delete its namespace and its Authentik namespace."""
    subprocess.run(["helm", "uninstall", "flyte", "-n", namespace, "--wait", *helm_flags], check=False, capture_output=True)
    core = client.CoreV1Api(api)
    for name in (namespace, f"{namespace}-authentik"):
        try:
            core.delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise
