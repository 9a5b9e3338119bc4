"""The deployment lock on the platform's real API server: playbooks/site.yml (and teardown, seed) hold a
coordination.k8s.io/v1 Lease while they write. Two runs at once, a run killed with kill -9, a Lease left by
another holder, check mode. Each test deploys into a namespace of its own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kubernetes import client

from conftest import REPO, remove_deployment, run_playbook

SITE = "playbooks/site.yml"
INVENTORY = REPO / "inventory" / "local"
LEASE = "homelab-flyte-lock"
RAW_HELM_ERROR = "another operation (install/upgrade/rollback) is in progress"
RECOVERED = re.compile(r"TASK \[homelab\.flyte\.flyte : Undo a helm operation [^\]]*\] \**\nchanged: ")
# FlyteAdmin's pods can never be scheduled: helm --wait keeps the release pending-install for flyte_helm_timeout.
UNSCHEDULABLE = {"flyteadmin": {"nodeSelector": {"homelab.flyte/no-such-node": "true"}}}


def site_vars(namespace: str, overrides: dict | None = None, **extra) -> dict:
    # The FlyteWorkflow CRD belongs to the release in flyte-system; test releases must not compete for it.
    return {
        "flyte_namespace": namespace, "authentik_namespace": f"{namespace}-authentik",
        "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests/charts/flyte-core"),
        "flyte_values_overrides": {"flytepropeller": {"createCRDs": False}, **(overrides or {})},
        "flyte_helm_timeout": 120, "flyte_health_timeout": 60, "homelab_flyte_lock_poll_interval": 1, **extra,
    }


def site(namespace: str, *, check: bool = False, tags: str | None = None, overrides: dict | None = None, **extra):
    return run_playbook(SITE, inventory=INVENTORY, extra_vars=site_vars(namespace, overrides, **extra), check=check, tags=tags)


def start_site(namespace: str, log_path, overrides: dict | None = None, **extra) -> subprocess.Popen:
    """A site run in the background; kill_tree ends all of it."""
    args = ["ansible-playbook", SITE, "-i", str(INVENTORY), "-e", json.dumps(site_vars(namespace, overrides, **extra))]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(predicate, timeout: float, what: str, log=None, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(encoding="utf-8")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def release_statuses(api, namespace: str) -> list[str]:
    """The status of each revision of the release flyte, read from Helm's own storage (Secrets)."""
    secrets = client.CoreV1Api(api).list_namespaced_secret(namespace, label_selector="owner=helm,name=flyte").items
    return [s.metadata.labels["status"] for s in sorted(secrets, key=lambda s: int(s.metadata.labels["version"]))]


def read_lease(api, namespace: str):
    try:
        return client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def put_lease(api, namespace: str, holder: str, renewed: datetime, duration: int):
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except client.ApiException as error:
        if error.status != 409:
            raise
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.CoordinationV1Api(api).create_namespaced_lease(namespace, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": LEASE},
        "spec": {"holderIdentity": holder, "acquireTime": stamp, "renewTime": stamp, "leaseDurationSeconds": duration}})


def process_tree(root: int) -> set[int]:
    """root and every process below it, from /proc. ansible-playbook's workers call setsid(), so the run's session
    does not hold them nor the helm they start: only the parent links do."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="utf-8")
            except OSError:  # it ended meanwhile
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def signal_all(pids, number):
    for pid in pids:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def kill_tree(process: subprocess.Popen):
    """kill -9 of the run and of everything it started (its workers and helm included), as when its container dies.
    Frozen first (SIGSTOP) until no new process appears, so that nothing forks or outlives its parent unseen."""
    frozen: set[int] = set()
    while True:
        tree = process_tree(process.pid)
        if tree <= frozen:
            break
        signal_all(tree - frozen, signal.SIGSTOP)
        frozen |= tree
    signal_all(frozen, signal.SIGKILL)
    process.wait(timeout=30)
    wait_for(lambda: not any(alive(pid) for pid in frozen), 30, "the killed run's processes to end")


@pytest.fixture
def deployment(api):
    """A namespace name for one test's deployment; everything in it (and its Authentik namespace) removed afterwards."""
    namespace = f"it-lock-{uuid.uuid4().hex[:6]}"
    yield namespace
    remove_deployment(api, namespace, "--no-hooks")


def test_a_second_run_waits_for_the_first_then_refuses_naming_it(api, deployment, tmp_path):
    """While a first run is inside helm (its pods never become ready), a second run of the site roles."""
    log = tmp_path / "first.log"
    first = start_site(deployment, log, overrides=UNSCHEDULABLE, flyte_helm_timeout=1200)
    try:
        wait_for(lambda: "pending-install" in release_statuses(api, deployment), 900, "the first run's helm install", log)
        second = site(deployment, homelab_flyte_lock_timeout=10)
        assert RAW_HELM_ERROR not in second.output, second
        assert second.rc != 0, second
        assert f"pid {first.pid}" in second.output and "has held the Lease" in second.output, second
        assert "waited 1" in second.output, second  # it waited its 10 seconds (1x: the message rounds down)
        # The second run wrote nothing: it stopped at the lock, before its first role.
        assert second.changed == 0, second
        assert release_statuses(api, deployment) == ["pending-install"]
    finally:
        kill_tree(first)


def test_a_run_that_fails_releases_the_lock(api, deployment):
    """The flyte role alone lacks the other roles' facts and fails: inside the locked block, so the lock is released."""
    run = site(deployment, tags="flyte")
    assert run.rc != 0 and "is not set: run the" in run.output, run
    assert "Release the deployment's lock" in run.output or "state released" in run.output, run
    assert read_lease(api, deployment) is None


def flyteadmin_node_selector(api, namespace: str) -> dict | None:
    """The nodeSelector of FlyteAdmin's Deployment, or None while helm has not created it."""
    try:
        deployment = client.AppsV1Api(api).read_namespaced_deployment("flyteadmin", namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return deployment.spec.template.spec.node_selector or {}


def kill_once_helm_wrote_the_selector(api, namespace: str, log, status: str) -> subprocess.Popen:
    """A site run with UNSCHEDULABLE, killed with kill -9 inside helm once its change reached the live Deployment."""
    run = start_site(namespace, log, overrides=UNSCHEDULABLE, homelab_flyte_lock_duration=30)
    wait_for(lambda: status in release_statuses(api, namespace), 900, f"the run's helm {status}", log)
    wait_for(lambda: "homelab.flyte/no-such-node" in (flyteadmin_node_selector(api, namespace) or {}), 120,
             "helm to write FlyteAdmin's unschedulable nodeSelector", log)
    kill_tree(run)
    assert release_statuses(api, namespace)[-1] == status
    lease = read_lease(api, namespace)
    assert lease is not None and f"pid {run.pid}" in lease.spec.holder_identity
    return run


def test_a_run_killed_inside_helm_does_not_block_the_next_run(api, deployment, tmp_path):
    """kill -9 while helm installs, then while it upgrades: each time the lock expires, the next run takes it over,
    undoes what the killed helm left (the unschedulable nodeSelector included) and converges; a last run changes nothing."""
    first = kill_once_helm_wrote_the_selector(api, deployment, tmp_path / "install.log", "pending-install")
    started = time.monotonic()
    second = site(deployment, homelab_flyte_lock_timeout=180)
    assert RAW_HELM_ERROR not in second.output, second
    assert second.rc == 0, second
    # It waited for the killed run's lock to expire and took it over, then uninstalled the interrupted install.
    assert "Took over the expired lock" in second.output and f"pid {first.pid}" in second.output, second
    assert RECOVERED.search(second.output), second
    assert time.monotonic() - started < 1200
    assert release_statuses(api, deployment) == ["deployed"]  # uninstalled, then installed afresh
    assert flyteadmin_node_selector(api, deployment) == {}
    assert read_lease(api, deployment) is None

    kill_once_helm_wrote_the_selector(api, deployment, tmp_path / "upgrade.log", "pending-upgrade")
    fourth = site(deployment, homelab_flyte_lock_timeout=180)
    assert RAW_HELM_ERROR not in fourth.output, fourth
    assert fourth.rc == 0, fourth
    # Rolled back to revision 1 from the interrupted revision 2's manifest (revision 3): the selector it added is
    # gone, and the upgrade that follows has nothing left to change. helm's rollback supersedes only deployed
    # revisions: the interrupted one keeps its status in the history.
    assert RECOVERED.search(fourth.output), fourth
    statuses = release_statuses(api, deployment)
    assert statuses == ["superseded", "pending-upgrade", "deployed"], statuses
    assert flyteadmin_node_selector(api, deployment) == {}
    assert read_lease(api, deployment) is None

    last = site(deployment)
    assert last.rc == 0 and last.changed == 0, last


def test_a_lease_left_by_another_holder_is_taken_over_once_expired(api, deployment):
    put_lease(api, deployment, "host gone, pid 1", datetime.now(timezone.utc) - timedelta(hours=2), 600)
    run = site(deployment, tags="secrets", homelab_flyte_lock_timeout=0)
    assert run.rc == 0, run
    assert "Took over the expired lock" in run.output and "'host gone, pid 1'" in run.output, run
    assert read_lease(api, deployment) is None


def test_a_held_lease_stops_every_writing_playbook_even_in_check_mode(api, deployment):
    holder = "host awx-task-1, pid 7, AWX job 1234"
    put_lease(api, deployment, holder, datetime.now(timezone.utc), 3600)
    before = read_lease(api, deployment)
    for run in (site(deployment, tags="secrets", homelab_flyte_lock_timeout=2),
                site(deployment, check=True, tags="secrets", homelab_flyte_lock_timeout=2),
                *(run_playbook(f"playbooks/{playbook}.yml", inventory=INVENTORY,
                               extra_vars=site_vars(deployment, homelab_flyte_lock_timeout=2, **extra))
                  for playbook, extra in (("teardown", {}), ("upgrade", {}),
                                          ("restore", {"restore_src": "/nowhere/flyte-20250101T000000Z"})))):
        assert run.rc != 0, run
        assert f"{holder!r} has held the Lease {deployment}/{LEASE} since" in run.output, run
    after = read_lease(api, deployment)
    assert after.metadata.resource_version == before.metadata.resource_version


def test_check_mode_takes_no_lock_and_creates_no_namespace(api, deployment):
    run = site(deployment, check=True, tags="secrets")
    assert run.rc == 0, run
    assert deployment not in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
