"""The deployment lock's Lease logic (module_utils/lock.py) against a store that keeps Leases the way the API
server does: resourceVersion preconditions on every write, 409 on a stale write or a second create, namespaces
that must exist. Time is a fake clock: waiting costs nothing and is measured exactly."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import lock
from ansible_collections.homelab.flyte.plugins.module_utils.lock import (
    Conflict,
    LockError,
    LockHeld,
    NamespaceMissing,
    NamespaceTerminating,
    acquire,
    classify,
    expires_at,
    format_time,
    release,
    renew,
)

NS, NAME, ME, OTHER = "flyte-system", "homelab-flyte-lock", "host ctl, pid 100", "host awx-7, pid 23, AWX job 7"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


class Store(lock.LeaseStore):
    """An API server's Lease storage, in memory."""

    def __init__(self, namespaces=(NS,)):
        self.leases: dict[tuple[str, str], dict] = {}
        self.namespaces = set(namespaces)
        self.terminating: set[str] = set()
        self.now = T0
        self.version = 0
        self.writes: list[str] = []
        self.before_write = None  # called before each write, to let "another run" act in between

    def put(self, holder, *, acquired=None, renewed=None, duration=60, transitions=0):
        self.version += 1
        self.leases[(NS, NAME)] = {
            "metadata": {"name": NAME, "namespace": NS, "resourceVersion": str(self.version)},
            "spec": {"holderIdentity": holder, "acquireTime": format_time(acquired or self.now),
                     "renewTime": format_time(renewed or acquired or self.now), "leaseDurationSeconds": duration,
                     "leaseTransitions": transitions}}

    def read(self, namespace, name):
        return copy.deepcopy(self.leases.get((namespace, name))), self.now

    def _hook(self):
        if self.before_write:
            hook, self.before_write = self.before_write, None
            hook()

    def create(self, namespace, body):
        self._hook()
        if namespace in self.terminating:
            raise NamespaceTerminating()
        if namespace not in self.namespaces:
            raise NamespaceMissing()
        if (namespace, body["metadata"]["name"]) in self.leases:
            raise Conflict()
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[(namespace, body["metadata"]["name"])] = stored
        self.writes.append("create")
        return copy.deepcopy(stored)

    def replace(self, namespace, name, body):
        self._hook()
        current = self.leases.get((namespace, name))
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict()
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[(namespace, name)] = stored
        self.writes.append("replace")
        return copy.deepcopy(stored)

    def delete(self, namespace, name, resource_version):
        self._hook()
        current = self.leases.get((namespace, name))
        if current is None or current["metadata"]["resourceVersion"] != resource_version:
            raise Conflict()
        del self.leases[(namespace, name)]
        self.writes.append("delete")

    def namespace_exists(self, namespace):
        return namespace in self.namespaces

    def create_namespace(self, namespace):
        self.namespaces.add(namespace)
        self.writes.append("namespace")

    @property
    def lease(self):
        return self.leases.get((NS, NAME))


class Clock:
    """monotonic() and sleep() for acquire(); sleeping also moves the store's (the API server's) clock."""

    def __init__(self, store, on_sleep=None):
        self.store, self.t, self.on_sleep, self.sleeps = store, 0.0, on_sleep, 0

    def monotonic(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds
        self.sleeps += 1
        self.store.now += timedelta(seconds=seconds)
        if self.on_sleep:
            self.on_sleep(self)


def take(store, clock=None, **kwargs):
    clock = clock or Clock(store)
    options = {"duration": 600, "timeout": 30, "poll_interval": 5, **kwargs}
    return acquire(store, NS, NAME, ME, clock=clock.monotonic, sleep=clock.sleep, **options)


def test_times_are_kubernetes_micro_times():
    assert format_time(T0) == "2025-03-01T12:00:00.000000Z"
    lease = {"spec": {"renewTime": "2025-03-01T12:00:00.000000Z", "leaseDurationSeconds": 30}}
    assert expires_at(lease) == T0 + timedelta(seconds=30)
    # As the kubernetes client serializes the datetimes it read.
    assert lock.parse_time("2025-03-01T12:00:00.250000+00:00") == T0 + timedelta(milliseconds=250)


@pytest.mark.parametrize(
    ("holder", "renewed_ago", "duration", "state"),
    [(ME, 9999, 10, "ours"), (OTHER, 5, 10, "held"), (OTHER, 10, 10, "expired"), (OTHER, 11, 10, "expired"), ("", 0, 10, "free")],
)
def test_classify(holder, renewed_ago, duration, state):
    store = Store()
    store.put(holder, renewed=T0 - timedelta(seconds=renewed_ago), duration=duration)
    assert classify(store.lease, ME, T0) == state
    assert classify(None, ME, T0) == "absent"


def test_a_free_deployment_is_locked_at_once():
    store = Store()
    result = take(store, duration=900)
    assert result["action"] == "acquired" and result["acquired"] and result["waited"] == 0
    spec = store.lease["spec"]
    assert spec == {"holderIdentity": ME, "acquireTime": "2025-03-01T12:00:00.000000Z",
                    "renewTime": "2025-03-01T12:00:00.000000Z", "leaseDurationSeconds": 900, "leaseTransitions": 0}
    assert store.lease["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "homelab.flyte"}
    assert result["lease"]["expires"] == "2025-03-01T12:15:00.000000Z"


def test_the_holder_renews_and_keeps_its_acquire_time():
    store = Store()
    store.put(ME, acquired=T0 - timedelta(minutes=5))
    result = take(store, duration=120)
    assert result["action"] == "renewed"
    assert store.lease["spec"]["acquireTime"] == format_time(T0 - timedelta(minutes=5))
    assert store.lease["spec"]["renewTime"] == format_time(T0)
    assert store.lease["spec"]["leaseDurationSeconds"] == 120
    again = renew(store, NS, NAME, ME, duration=120)
    assert again["action"] == "renewed" and store.writes == ["replace", "replace"]


def test_a_held_lock_makes_the_run_wait_then_refuse_naming_the_holder():
    store = Store()
    store.put(OTHER, acquired=T0 - timedelta(minutes=3), duration=3600)
    clock = Clock(store)
    with pytest.raises(LockHeld) as refused:
        take(store, clock, timeout=30, poll_interval=5)
    message = str(refused.value)
    assert f"{OTHER!r} has held the Lease {NS}/{NAME} since 2025-03-01T11:57:00.000000Z" in message
    assert "waited 30 of 30 seconds" in message
    assert "expires at 2025-03-01T12:57:00.000000Z" in message
    assert f"kubectl -n {NS} delete lease {NAME}" in message and "homelab_flyte_lock_timeout" in message
    assert clock.t == 30 and clock.sleeps == 6
    assert store.writes == [] and store.lease["spec"]["holderIdentity"] == OTHER


def test_timeout_zero_refuses_without_waiting():
    store = Store()
    store.put(OTHER, duration=60)
    clock = Clock(store)
    with pytest.raises(LockHeld):
        take(store, clock, timeout=0)
    assert clock.t == 0


def test_the_run_takes_the_lock_when_the_holder_releases_it():
    store = Store()
    store.put(OTHER, duration=3600)

    def other_finishes(clock):
        if clock.t >= 10:
            store.leases.clear()

    result = take(store, Clock(store, other_finishes), timeout=60)
    assert result["action"] == "acquired" and result["waited"] == 10
    assert store.lease["spec"]["holderIdentity"] == ME


def test_a_killed_holders_lock_is_taken_over_when_it_expires():
    store = Store()
    store.put(OTHER, acquired=T0 - timedelta(seconds=50), duration=60, transitions=2)
    result = take(store, timeout=120, poll_interval=5)
    # Renewed 50 s before the start, for 60 s: expired 10 s into the wait.
    assert result["action"] == "taken_over" and result["waited"] == 10
    assert result["previous"]["holder"] == OTHER
    spec = store.lease["spec"]
    assert spec["holderIdentity"] == ME and spec["leaseTransitions"] == 3
    assert spec["acquireTime"] == format_time(T0 + timedelta(seconds=10))


def test_an_old_expired_lock_is_taken_over_at_once():
    store = Store()
    store.put(OTHER, acquired=T0 - timedelta(hours=2), duration=1800)
    result = take(store, timeout=0)
    assert result["action"] == "taken_over" and result["waited"] == 0


def test_a_lease_with_no_holder_is_free():
    store = Store()
    store.put("")
    assert take(store, timeout=0)["action"] == "taken_over"


def test_of_two_runs_racing_for_a_free_lock_one_waits():
    store = Store()
    store.before_write = lambda: store.put(OTHER, duration=3600)  # the other run creates it between our read and write
    with pytest.raises(LockHeld):
        take(store, timeout=10)
    assert store.lease["spec"]["holderIdentity"] == OTHER


def test_of_two_runs_racing_for_an_expired_lock_one_waits():
    store = Store()
    store.put("host gone, pid 1", acquired=T0 - timedelta(hours=1), duration=60)
    store.before_write = lambda: store.put(OTHER, duration=3600)  # the other run took it over first
    with pytest.raises(LockHeld):
        take(store, timeout=10)
    assert store.lease["spec"]["holderIdentity"] == OTHER


def test_a_first_run_creates_the_namespace_to_hold_the_lock():
    store = Store(namespaces=())
    result = take(store)
    assert result["action"] == "acquired" and result["created_namespace"] is True
    assert store.writes == ["namespace", "create"]


def test_without_create_namespace_a_missing_namespace_is_not_locked():
    store = Store(namespaces=())
    result = take(store, create_namespace=False)
    assert result["action"] == "no_namespace" and result["acquired"] is False and store.writes == []


def test_a_namespace_being_deleted_is_waited_for():
    store = Store()
    store.terminating.add(NS)

    def deleted(clock):
        if clock.t >= 15:
            store.terminating.discard(NS)
            store.namespaces.discard(NS)

    result = take(store, Clock(store, deleted), timeout=60)
    assert result["action"] == "acquired" and result["waited"] == 15 and result["created_namespace"]
    store = Store()
    store.terminating.add(NS)
    with pytest.raises(LockError, match="is being deleted"):
        take(store, timeout=10)


@pytest.mark.parametrize(
    ("setup", "action"),
    [(lambda s: None, "would_acquire"), (lambda s: s.put(ME), "would_renew"),
     (lambda s: s.put(OTHER, acquired=T0 - timedelta(hours=1), duration=60), "would_take_over"), (lambda s: s.put(""), "would_take_over")],
)
def test_check_mode_writes_nothing(setup, action):
    store = Store()
    setup(store)
    before = copy.deepcopy(store.leases)
    result = take(store, check_mode=True)
    assert result["action"] == action and result["acquired"] is True
    assert store.writes == [] and store.leases == before


def test_check_mode_creates_no_namespace():
    store = Store(namespaces=())
    result = take(store, check_mode=True)
    assert result["action"] == "would_acquire" and "does not exist yet" in result["note"]
    assert store.writes == [] and store.namespaces == set()


def test_check_mode_still_reports_a_held_lock():
    store = Store()
    store.put(OTHER, duration=3600)
    with pytest.raises(LockHeld, match="has held the Lease"):
        take(store, check_mode=True, timeout=10)
    assert store.writes == []


def test_renew_fails_when_the_lock_was_lost():
    store = Store()
    store.put(OTHER, duration=3600)
    with pytest.raises(LockError, match=f"{OTHER!r} took it at .*homelab_flyte_lock_duration"):
        renew(store, NS, NAME, ME, duration=600)
    store.leases.clear()
    with pytest.raises(LockError, match="the Lease is gone"):
        renew(store, NS, NAME, ME, duration=600)
    assert store.writes == []
    assert renew(store, NS, NAME, ME, duration=600, check_mode=True)["action"] == "would_renew"


def test_release_deletes_only_the_holders_lease():
    store = Store()
    store.put(ME)
    assert release(store, NS, NAME, ME, check_mode=True)["action"] == "would_release" and store.lease
    result = release(store, NS, NAME, ME)
    assert result["action"] == "released" and result["previous"]["holder"] == ME and store.lease is None
    assert release(store, NS, NAME, ME)["action"] == "absent"
    store.put(OTHER)
    result = release(store, NS, NAME, ME)
    assert result["action"] == "not_ours" and store.lease["spec"]["holderIdentity"] == OTHER
    assert store.writes == ["delete"]


def test_release_does_not_delete_a_lease_taken_over_in_between():
    store = Store()
    store.put(ME)
    store.before_write = lambda: store.put(OTHER)
    assert release(store, NS, NAME, ME)["action"] == "not_ours"
    assert store.lease["spec"]["holderIdentity"] == OTHER


def test_server_time_comes_from_the_date_header():
    assert lock.server_time({"Date": "Sat, 01 Mar 2025 12:00:00 GMT"}) == T0
    assert abs(lock.server_time({}) - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_the_default_holder_names_host_pid_and_awx_job(monkeypatch):
    monkeypatch.setattr(lock.socket, "gethostname", lambda: "awx-job-7-x")
    monkeypatch.setattr(lock, "playbook_pid", lambda: 23)
    assert lock.default_holder("7") == "host awx-job-7-x, pid 23, AWX job 7"
    assert lock.default_holder(None) == "host awx-job-7-x, pid 23"


def test_playbook_pid_is_this_process_parent_outside_ansible():
    import os
    assert lock.playbook_pid() == os.getppid() or "ansible" in open(f"/proc/{lock.playbook_pid()}/cmdline", "rb").read().decode()
