"""The deployment lock on the platform's real API server: playbooks/site.yml (and teardown, seed) hold a
coordination.k8s.io/v1 Lease while they write. Two runs at once, a run killed with kill -9, a Lease left by
another holder, check mode. Each test deploys into a namespace of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client

from conftest import REPO, remove_deployment, run_playbook

SITE = "playbooks/site.yml"
INVENTORY = REPO / "inventory" / "local"
LEASE = "homelab-flyte-lock"
RAW_HELM_ERROR = "another operation (install/upgrade/rollback) is in progress"
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
    """A site run in the background, in a session of its own so that the test can kill all of it."""
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


def kill_session(process: subprocess.Popen):
    """kill -9 of the run and of everything it started (helm included), as when its container dies."""
    for _attempt in range(20):
        members = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True, check=False).stdout.split()
        if not members:
            break
        for pid in members:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    process.wait(timeout=30)
    assert not subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True, check=False).stdout.strip()


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
        kill_session(first)


def test_a_run_that_fails_releases_the_lock(api, deployment):
    """The flyte role alone lacks the other roles' facts and fails: inside the locked block, so the lock is released."""
    run = site(deployment, tags="flyte")
    assert run.rc != 0 and "is not set: run the" in run.output, run
    assert "Release the deployment's lock" in run.output or "state released" in run.output, run
    assert read_lease(api, deployment) is None


def test_a_run_killed_inside_helm_does_not_block_the_next_run(api, deployment, tmp_path):
    """kill -9 while helm installs: the lock expires, the next run takes it over and converges; a third changes nothing."""
    log = tmp_path / "killed.log"
    first = start_site(deployment, log, overrides=UNSCHEDULABLE, homelab_flyte_lock_duration=30)
    wait_for(lambda: "pending-install" in release_statuses(api, deployment), 900, "the first run's helm install", log)
    kill_session(first)
    assert release_statuses(api, deployment)[-1] == "pending-install"
    lease = read_lease(api, deployment)

    started = time.monotonic()
    second = site(deployment, homelab_flyte_lock_timeout=180)
    assert RAW_HELM_ERROR not in second.output, second
    assert second.rc == 0, second
    # The killed run's lock was still there, naming it; the second run waited for it to expire and took it over.
    assert lease is not None and f"pid {first.pid}" in lease.spec.holder_identity
    assert "Took over the expired lock" in second.output and f"pid {first.pid}" in second.output, second
    assert time.monotonic() - started < 1200
    assert release_statuses(api, deployment)[-1] == "deployed"
    assert read_lease(api, deployment) is None

    third = site(deployment)
    assert third.rc == 0 and third.changed == 0, third


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
                run_playbook("playbooks/teardown.yml", inventory=INVENTORY,
                             extra_vars=site_vars(deployment, homelab_flyte_lock_timeout=2))):
        assert run.rc != 0, run
        assert f"{holder!r} has held the Lease {deployment}/{LEASE} since" in run.output, run
    after = read_lease(api, deployment)
    assert after.metadata.resource_version == before.metadata.resource_version


def test_check_mode_takes_no_lock_and_creates_no_namespace(api, deployment):
    run = site(deployment, check=True, tags="secrets")
    assert run.rc == 0, run
    assert deployment not in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
