# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment's lock: a coordination.k8s.io/v1 Lease that one playbook run holds at a time.

A run takes the Lease (holderIdentity, acquireTime, renewTime, leaseDurationSeconds), renews it
between steps and deletes it at the end. Another run waits while the Lease is held and not expired,
then takes it; a Lease whose holder died (kill -9) expires leaseDurationSeconds after its last renewal.
Every time written and compared is the API server's (the Date header of its answers), so the hosts'
clocks do not matter. Writes use the Lease's resourceVersion: of two runs racing for it, one wins.

The logic is written against LeaseStore, which KubeLeaseStore implements with the kubernetes client;
the unit tests give it a store of their own.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

try:
    from kubernetes.client import CoordinationV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException
except ImportError:  # kubernetes.core's client reports the missing library itself
    ApiException = Exception

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
MANAGED_BY = {"app.kubernetes.io/managed-by": "homelab.flyte"}


class LockError(Exception):
    """The lock could not be taken or kept; the message says why and what to do."""


class LockHeld(LockError):
    """Another run held the lock for the whole wait."""


class Conflict(Exception):
    """The Lease changed (or appeared) since it was read: read it again."""


class NamespaceMissing(Exception):
    """The Lease's namespace does not exist."""


class NamespaceTerminating(Exception):
    """The Lease's namespace is being deleted."""


# --------------------------------------------------------------------------------------------------
# Pure logic

def format_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339, UTC, exactly six fraction digits."""
    return moment.astimezone(timezone.utc).strftime(MICRO_TIME)


def parse_time(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def expires_at(lease: dict) -> datetime | None:
    """When the Lease lapses unless renewed: renewTime (else acquireTime) plus leaseDurationSeconds."""
    spec = lease.get("spec") or {}
    last = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if last is None or not duration:
        return None
    return last + timedelta(seconds=int(duration))


def classify(lease: dict | None, holder: str, now: datetime) -> str:
    """absent, free (no holder), ours, expired (another holder's, lapsed) or held (another holder's, current)."""
    if lease is None:
        return "absent"
    current = (lease.get("spec") or {}).get("holderIdentity") or ""
    if not current:
        return "free"
    if current == holder:
        return "ours"
    expiry = expires_at(lease)
    if expiry is None or expiry <= now:
        return "expired"
    return "held"


def summary(lease: dict | None) -> dict | None:
    """What the result shows of a Lease."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    expiry = expires_at(lease)
    return {
        "name": lease["metadata"]["name"], "namespace": lease["metadata"]["namespace"],
        "holder": spec.get("holderIdentity") or "",
        "acquire_time": _text(spec.get("acquireTime")), "renew_time": _text(spec.get("renewTime")),
        "duration": spec.get("leaseDurationSeconds"), "transitions": spec.get("leaseTransitions") or 0,
        "expires": format_time(expiry) if expiry else None,
    }


def _text(value) -> str | None:
    moment = parse_time(value)
    return format_time(moment) if moment else None


def held_message(lease: dict, waited: float, timeout: float, now: datetime) -> str:
    info = summary(lease)
    where = f"{info['namespace']}/{info['name']}"
    remaining = max(0, int((expires_at(lease) - now).total_seconds())) if expires_at(lease) else 0
    return (f"The deployment is locked by another run: {info['holder']!r} has held the Lease {where} since "
            f"{info['acquire_time']} (renewed {info['renew_time']}); waited {int(waited)} of {int(timeout)} seconds. "
            f"Run again when it has finished, or wait longer (the timeout option, homelab_flyte_lock_timeout in the "
            f"playbooks). If that run is dead, the lock expires at {info['expires']} (in {remaining} s) and the next run "
            f"takes it; to free it now, check that the holder is gone and run: kubectl -n {info['namespace']} delete lease "
            f"{info['name']}")


def lease_body(name: str, namespace: str, holder: str, now: datetime, duration: int, transitions: int,
               acquire_time: datetime | None = None, resource_version: str | None = None) -> dict:
    metadata = {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
        "spec": {"holderIdentity": holder, "acquireTime": format_time(acquire_time or now), "renewTime": format_time(now),
                 "leaseDurationSeconds": int(duration), "leaseTransitions": int(transitions)},
    }


def default_holder(job_id: str | None = None) -> str:
    """host <name>, pid <ansible-playbook's pid>[, AWX job <id>]: the same for every task of one run."""
    parts = [f"host {socket.gethostname()}", f"pid {playbook_pid()}"]
    if job_id:
        parts.append(f"AWX job {job_id}")
    return ", ".join(parts)


def playbook_pid(pid: int | None = None) -> int:
    """The outermost ansible-playbook (or ansible) process above this one, which every task of a run shares.

    A module runs in a process that its worker (a fork of ansible-playbook) starts for each task; the
    worker's own parent is the run's main process. Without /proc, or outside any ansible process, the
    parent's pid.
    """
    found = None
    current = pid or os.getpid()
    for _attempt in range(64):
        try:
            with open(f"/proc/{current}/cmdline", "rb") as handle:
                argv = [os.path.basename(a.decode(errors="replace")) for a in handle.read().split(b"\0")[:3] if a]
            with open(f"/proc/{current}/stat", encoding="utf-8") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if any(a in ("ansible-playbook", "ansible") for a in argv):
            found = current
        if parent <= 1:
            break
        current = parent
    return found or os.getppid()


# --------------------------------------------------------------------------------------------------
# The operations, on any LeaseStore

class LeaseStore:
    """What the operations need of the API server. read() returns (lease or None, the server's time)."""

    def read(self, namespace: str, name: str) -> tuple[dict | None, datetime]:
        raise NotImplementedError

    def create(self, namespace: str, body: dict) -> dict:
        raise NotImplementedError

    def replace(self, namespace: str, name: str, body: dict) -> dict:
        raise NotImplementedError

    def delete(self, namespace: str, name: str, resource_version: str) -> None:
        raise NotImplementedError

    def namespace_exists(self, namespace: str) -> bool:
        raise NotImplementedError

    def create_namespace(self, namespace: str) -> None:
        raise NotImplementedError


def acquire(store: LeaseStore, namespace: str, name: str, holder: str, *, duration: int, timeout: float,
            poll_interval: float = 5, check_mode: bool = False, create_namespace: bool = True,
            clock=time.monotonic, sleep=time.sleep) -> dict:
    """Take the lock, or renew it when this holder has it; wait up to timeout seconds while another holds it."""
    started = clock()
    created_namespace = False
    terminating = False
    while True:
        waited = clock() - started
        lease, now = store.read(namespace, name)
        state = classify(lease, holder, now)
        base = {"holder": holder, "waited": round(waited, 1), "previous": None, "created_namespace": created_namespace}
        if state == "ours":
            if check_mode:
                return dict(base, action="would_renew", acquired=True, lease=summary(lease))
            spec = lease["spec"]
            body = lease_body(name, namespace, holder, now, duration, spec.get("leaseTransitions") or 0,
                              acquire_time=parse_time(spec.get("acquireTime")),
                              resource_version=lease["metadata"]["resourceVersion"])
            try:
                return dict(base, action="renewed", acquired=True, lease=summary(store.replace(namespace, name, body)))
            except Conflict:
                continue
        if state == "absent":
            if check_mode:
                exists = store.namespace_exists(namespace)
                return dict(base, action="would_acquire", acquired=True, lease=None,
                            note=None if exists else f"namespace {namespace} does not exist yet: a run would create it")
            try:
                created = store.create(namespace, lease_body(name, namespace, holder, now, duration, 0))
                return dict(base, action="acquired", acquired=True, lease=summary(created))
            except Conflict:
                continue
            except NamespaceMissing:
                if not create_namespace:
                    return dict(base, action="no_namespace", acquired=False, lease=None,
                                note=f"namespace {namespace} does not exist: nothing in it to lock")
                store.create_namespace(namespace)
                base["created_namespace"] = created_namespace = True
                continue
            except NamespaceTerminating:
                terminating = True
        if state in ("free", "expired"):
            previous = summary(lease)
            if check_mode:
                return dict(base, action="would_take_over", acquired=True, lease=previous, previous=previous)
            body = lease_body(name, namespace, holder, now, duration, (lease["spec"].get("leaseTransitions") or 0) + 1,
                              resource_version=lease["metadata"]["resourceVersion"])
            try:
                taken = store.replace(namespace, name, body)
                return dict(base, action="taken_over", acquired=True, lease=summary(taken), previous=previous)
            except Conflict:
                continue
        # Held by another run, or the namespace is on its way out: wait.
        remaining = timeout - (clock() - started)
        if remaining <= 0:
            if terminating and state == "absent":
                raise LockError(f"The namespace {namespace} is being deleted (a teardown?); waited {int(waited)} of "
                                f"{int(timeout)} seconds for it to go. Run again when it is gone.")
            raise LockHeld(held_message(lease, waited, timeout, now))
        sleep(min(poll_interval, remaining))


def renew(store: LeaseStore, namespace: str, name: str, holder: str, *, duration: int, check_mode: bool = False) -> dict:
    """Extend this holder's lock; fail if it has lost it (expired and taken by another run, or deleted)."""
    while True:
        lease, now = store.read(namespace, name)
        state = classify(lease, holder, now)
        base = {"holder": holder, "waited": 0, "previous": None, "created_namespace": False}
        if check_mode:
            # A check run takes no lock, so there is nothing of its own to renew.
            return dict(base, action="would_renew", acquired=state in ("ours", "absent", "free", "expired"), lease=summary(lease))
        if state != "ours":
            found = summary(lease)
            raise LockError(
                f"This run ({holder!r}) no longer holds the lock {namespace}/{name}: "
                + (f"{found['holder']!r} took it at {found['acquire_time']}" if found and found["holder"] else "the Lease is gone")
                + ". A step took longer than the lock's duration (duration, homelab_flyte_lock_duration in the playbooks), "
                  "so another run may be changing the deployment at the same time: check it, and raise the duration.")
        spec = lease["spec"]
        body = lease_body(name, namespace, holder, now, duration, spec.get("leaseTransitions") or 0,
                          acquire_time=parse_time(spec.get("acquireTime")), resource_version=lease["metadata"]["resourceVersion"])
        try:
            return dict(base, action="renewed", acquired=True, lease=summary(store.replace(namespace, name, body)))
        except Conflict:
            continue


def release(store: LeaseStore, namespace: str, name: str, holder: str, *, check_mode: bool = False) -> dict:
    """Delete the Lease if this holder has it; leave another holder's alone."""
    while True:
        lease, now = store.read(namespace, name)
        state = classify(lease, holder, now)
        base = {"holder": holder, "waited": 0, "previous": summary(lease), "created_namespace": False, "acquired": False,
                "lease": None}
        if state == "absent":
            return dict(base, action="absent")
        if state != "ours":
            return dict(base, action="not_ours", lease=summary(lease))
        if check_mode:
            return dict(base, action="would_release")
        try:
            store.delete(namespace, name, lease["metadata"]["resourceVersion"])
            return dict(base, action="released")
        except Conflict:
            continue


# --------------------------------------------------------------------------------------------------
# The API server

def server_time(headers) -> datetime:
    """The API server's clock, from the Date header of its answer (whole seconds); the local clock without one."""
    value = (headers or {}).get("Date") or (headers or {}).get("date")
    if value:
        try:
            return parsedate_to_datetime(value).astimezone(timezone.utc)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc)


class KubeLeaseStore(LeaseStore):
    """LeaseStore on the kubernetes client (coordination.k8s.io/v1 and core/v1)."""

    def __init__(self, api_client):
        self.api_client = api_client
        self.leases = CoordinationV1Api(api_client)
        self.core = CoreV1Api(api_client)

    def _lease(self, obj) -> dict:
        return self.api_client.sanitize_for_serialization(obj)

    def read(self, namespace, name):
        try:
            obj, _status, headers = self.leases.read_namespaced_lease_with_http_info(name, namespace)
            return self._lease(obj), server_time(headers)
        except ApiException as error:
            if error.status == 404:
                return None, server_time(error.headers)
            raise

    def _write(self, call, *args):
        try:
            return self._lease(call(*args))
        except ApiException as error:
            if error.status == 409:
                raise Conflict() from error
            if error.status == 404:
                raise NamespaceMissing() from error
            if error.status == 403 and "being terminated" in (error.body or ""):
                raise NamespaceTerminating() from error
            raise

    def create(self, namespace, body):
        return self._write(self.leases.create_namespaced_lease, namespace, body)

    def replace(self, namespace, name, body):
        try:
            return self._write(self.leases.replace_namespaced_lease, name, namespace, body)
        except NamespaceMissing as error:  # deleted since it was read
            raise Conflict() from error

    def delete(self, namespace, name, resource_version):
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": resource_version}}
        try:
            self.leases.delete_namespaced_lease(name, namespace, body=body)
        except ApiException as error:
            if error.status in (404, 409):
                raise Conflict() from error
            raise

    def namespace_exists(self, namespace):
        try:
            self.core.read_namespace(namespace)
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    def create_namespace(self, namespace):
        try:
            self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        except ApiException as error:
            if error.status != 409:
                raise
