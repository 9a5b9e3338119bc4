"""SIMULATION: the status CloudNativePG (and its barman-cloud plugin) writes on Backup objects. See README.md.

A kwok Stage sees only the object it acts on; whether a Backup fails depends on its Cluster, the
barman-cloud ObjectStore and a Secret, so this is a small controller instead, started by
tests/platform/platform.py next to kwok. Standard library only (it runs before any virtualenv).

It follows, for `method: plugin` (and the refusals of the other methods):
  cloudnative-pg internal/controller/backup_controller.go  Reconcile, getCluster, checkPrerequisites,
      startBackupManagedByInstance (pending while the target pod is not ready, then started)
  cloudnative-pg pkg/management/postgres/webserver/plugin_backup.go  invokeStart (requested plugin
      not available -> failed; the plugin's result -> completed with backupId, WAL and LSN range)
  plugin-barman-cloud internal/cnpgi/instance/backup.go  Backup (the ObjectStore named by the
      Cluster's barmanObjectName must exist, its credentials Secret must have the keys)
  cloudnative-pg internal/webhook/v1/backup_webhook.go  validate: refused at admission, here by a
      ValidatingAdmissionPolicy this controller installs (the platform runs no webhook)
  cloudnative-pg internal/controller/scheduledbackup_controller.go  only `immediate: true`: one
      Backup named <scheduledbackup>-<timestamp>, owned by the ScheduledBackup with
      backupOwnerReference self; no cron schedule is run.

Phases written: pending, started, completed, failed (the `error` field says why), as CloudNativePG
writes them. No PostgreSQL is backed up and nothing is written to any object store.
For failure tests, annotate a Backup `simulation.homelab.flyte/backup-fail: <message>`: it fails
with that error after it started, as a barman-cloud-backup that exits non-zero does.

    python3 cnpg_backup.py --kubeconfig <file>      (runs until killed)
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

BARMAN_CLOUD = "barman-cloud.cloudnative-pg.io"
AVAILABLE_PLUGINS = {BARMAN_CLOUD}  # the plugins the simulated operator has loaded
FAIL_ANNOTATION = "simulation.homelab.flyte/backup-fail"
HEALTHY = "Cluster in healthy state"
STARTED_FOR = 2.0  # seconds a simulated backup stays "started"

ADMISSION_POLICY = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "simulated-cnpg-backup-webhook"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": ["postgresql.cnpg.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
            "resources": ["backups", "scheduledbackups"]}]},
        "validations": [
            {"expression": "!has(object.spec.method) || object.spec.method != 'plugin' || "
                           "(has(object.spec.pluginConfiguration) && object.spec.pluginConfiguration.name != '')",
             "message": "spec.pluginConfiguration: Invalid value: cannot be empty when the backup method is plugin"},
            {"expression": "(has(object.spec.method) && object.spec.method != 'barmanObjectStore') || !has(object.spec.online)",
             "message": "spec.online: Invalid value: Online parameter can be specified only if the backup method is volumeSnapshot"},
            {"expression": "(has(object.spec.method) && object.spec.method != 'barmanObjectStore') || "
                           "!has(object.spec.onlineConfiguration)",
             "message": "spec.onlineConfiguration: Invalid value: OnlineConfiguration parameter can be specified only if "
                        "the backup method is volumeSnapshot"},
        ],
    },
}
ADMISSION_BINDING = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicyBinding",
    "metadata": {"name": "simulated-cnpg-backup-webhook"},
    "spec": {"policyName": "simulated-cnpg-backup-webhook", "validationActions": ["Deny"]},
}


class Api:
    """The few REST calls this needs, with the kubeconfig's client certificate."""

    def __init__(self, kubeconfig: str):
        config = json.loads(open(kubeconfig, encoding="utf-8").read())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = cluster["server"]
        # Beside the kubeconfig, in the platform's state directory, which `platform.py down` removes.
        self.scratch = os.path.join(os.path.dirname(os.path.abspath(kubeconfig)), "cnpg-backup-sim")
        os.makedirs(self.scratch, mode=0o700, exist_ok=True)
        paths = {}
        for name, data in (("ca", cluster["certificate-authority-data"]), ("crt", user["client-certificate-data"]),
                           ("key", user["client-key-data"])):
            paths[name] = os.path.join(self.scratch, name)
            with open(paths[name], "wb") as out:
                out.write(base64.b64decode(data))
        self.context = ssl.create_default_context(cafile=paths["ca"])
        self.context.load_cert_chain(paths["crt"], paths["key"])

    def call(self, method: str, path: str, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def get(self, path: str):
        status, body = self.call("GET", path)
        return body if status == 200 else None

    def patch_status(self, path: str, status: dict):
        return self.call("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact(moment: datetime.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def barman_parameters(cluster: dict) -> dict | None:
    for plugin in cluster.get("spec", {}).get("plugins") or []:
        if plugin.get("name") == BARMAN_CLOUD and plugin.get("enabled", True):
            return plugin.get("parameters") or {}
    return None


def plugin_failure(api: Api, namespace: str, cluster: dict) -> str | None:
    """Why plugin-barman-cloud's Backup() would return an error before any data moves, or None."""
    parameters = barman_parameters(cluster) or {}
    name = parameters.get("barmanObjectName", "")
    if not name:
        return "resource name may not be empty"
    store = api.get(f"/apis/barmancloud.cnpg.io/v1/namespaces/{namespace}/objectstores/{name}")
    if store is None:
        return f'objectstores.barmancloud.cnpg.io "{name}" not found'
    credentials = store.get("spec", {}).get("configuration", {}).get("s3Credentials") or {}
    if credentials.get("inheritFromIAMRole"):
        return None
    for field in ("accessKeyId", "secretAccessKey"):
        selector = credentials.get(field)
        if not selector:
            return "missing S3 credentials"
        secret = api.get(f"/api/v1/namespaces/{namespace}/secrets/{selector['name']}")
        if secret is None:
            return f'secrets "{selector["name"]}" not found'
        if selector["key"] not in (secret.get("data") or {}):
            return f"missing key {selector['key']}, inside secret {selector['name']}"
    return None


def target_ready(api: Api, namespace: str, cluster: dict) -> str | None:
    """The primary pod's name when it is Running and Ready and the cluster healthy, else None (the backup waits)."""
    status = cluster.get("status") or {}
    if status.get("phase") != HEALTHY or not status.get("targetPrimary"):
        return None
    pod = api.get(f"/api/v1/namespaces/{namespace}/pods/{status['targetPrimary']}")
    if pod is None or pod.get("status", {}).get("phase") != "Running":
        return None
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions", []))
    return pod["metadata"]["name"] if ready else None


def failed(api: Api, path: str, message: str, extra: dict | None = None) -> None:
    api.patch_status(path, {"phase": "failed", "error": message, "stoppedAt": now(), **(extra or {})})


def reconcile_backup(api: Api, backup: dict, started: dict) -> None:
    meta, spec, status = backup["metadata"], backup.get("spec", {}), backup.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    path = f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/backups/{name}"
    phase = status.get("phase", "")
    if phase in ("completed", "failed") or meta.get("deletionTimestamp"):
        return
    cluster_name = spec.get("cluster", {}).get("name", "")
    cluster = api.get(f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/clusters/{cluster_name}")
    if cluster is None:
        failed(api, path, f'while getting cluster {cluster_name}: clusters.postgresql.cnpg.io "{cluster_name}" not found')
        return
    method = spec.get("method", "barmanObjectStore")
    if (cluster["metadata"].get("annotations") or {}).get("cnpg.io/hibernation") == "on":
        failed(api, path, "cannot backup a hibernated cluster")
        return
    if method == "plugin":
        if not cluster.get("spec", {}).get("plugins"):
            failed(api, path, "cannot proceed with the backup as the cluster has no plugin configured")
            return
    elif not cluster.get("spec", {}).get("backup"):
        failed(api, path, "cannot proceed with the backup as the cluster has no backup section")
        return
    elif method == "volumeSnapshot":
        failed(api, path, "cannot proceed with the backup as the Kubernetes cluster has no VolumeSnapshot support")
        return
    elif not cluster["spec"]["backup"].get("barmanObjectStore"):
        failed(api, path, "no barmanObjectStore section defined on the target cluster")
        return
    else:
        failed(api, path, "the simulation runs only method: plugin backups (barmanObjectStore is not simulated)")
        return

    if phase in ("", "pending"):
        pod = target_ready(api, namespace, cluster)
        if pod is None:
            if phase != "pending":
                api.patch_status(path, {"phase": "pending"})
            return
        api.patch_status(path, {"phase": "started", "method": "plugin", "instanceID": {"podName": pod}})
        started[(namespace, name)] = time.monotonic()
        return

    # phase started: the instance manager runs the plugin's backup
    since = started.setdefault((namespace, name), time.monotonic())
    if time.monotonic() - since < STARTED_FOR:
        return
    started.pop((namespace, name), None)
    plugin_name = spec.get("pluginConfiguration", {}).get("name", "")
    if plugin_name not in AVAILABLE_PLUGINS:
        failed(api, path, f"requested plugin is not available: {plugin_name}")
        return
    reason = plugin_failure(api, namespace, cluster)
    forced = (meta.get("annotations") or {}).get(FAIL_ANNOTATION)
    if reason or forced:
        failed(api, path, reason or forced)
        return
    moment = datetime.datetime.now(datetime.timezone.utc)
    api.patch_status(path, {
        "phase": "completed", "method": "plugin", "online": True,
        "backupId": compact(moment), "backupName": f"backup-{compact(moment)}",
        "beginWal": "000000010000000000000004", "endWal": "000000010000000000000004",
        "beginLSN": "0/4000028", "endLSN": "0/4000120",
        "startedAt": (moment - datetime.timedelta(seconds=STARTED_FOR)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stoppedAt": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "pluginMetadata": {},
    })


def reconcile_scheduled(api: Api, scheduled: dict) -> None:
    meta, spec, status = scheduled["metadata"], scheduled.get("spec", {}), scheduled.get("status") or {}
    if meta.get("deletionTimestamp") or spec.get("suspend") or not spec.get("immediate") or status.get("lastScheduleTime"):
        return
    moment = datetime.datetime.now(datetime.timezone.utc)
    owner = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup", "name": meta["name"],
             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
    body = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
            "metadata": {"name": f"{meta['name']}-{moment.strftime('%Y%m%d%H%M%S')}", "namespace": meta["namespace"],
                         "labels": {"cnpg.io/scheduled-backup": meta["name"], "cnpg.io/immediateBackup": "true",
                                    "cnpg.io/cluster": spec["cluster"]["name"]},
                         "ownerReferences": [owner] if spec.get("backupOwnerReference", "none") == "self" else []},
            "spec": {"cluster": spec["cluster"], "method": spec.get("method", "barmanObjectStore"),
                     **({"pluginConfiguration": spec["pluginConfiguration"]} if "pluginConfiguration" in spec else {}),
                     **({"target": spec["target"]} if "target" in spec else {})}}
    api.call("POST", f"/apis/postgresql.cnpg.io/v1/namespaces/{meta['namespace']}/backups", body)
    api.patch_status(f"/apis/postgresql.cnpg.io/v1/namespaces/{meta['namespace']}/scheduledbackups/{meta['name']}",
                     {"lastScheduleTime": now(), "lastCheckTime": now()})


def install_admission(api: Api) -> None:
    for kind, body in (("validatingadmissionpolicies", ADMISSION_POLICY),
                       ("validatingadmissionpolicybindings", ADMISSION_BINDING)):
        status, answer = api.call("POST", f"/apis/admissionregistration.k8s.io/v1/{kind}", body)
        if status not in (200, 201, 409):
            print(f"[cnpg-backup-sim] cannot create the {kind}: {status} {answer}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    api = Api(args.kubeconfig)
    install_admission(api)
    started: dict = {}
    while True:
        try:
            for scheduled in (api.get("/apis/postgresql.cnpg.io/v1/scheduledbackups") or {}).get("items", []):
                reconcile_scheduled(api, scheduled)
            for backup in (api.get("/apis/postgresql.cnpg.io/v1/backups") or {}).get("items", []):
                reconcile_backup(api, backup, started)
        except (OSError, ValueError, KeyError) as error:  # a restarting API server; try again
            print(f"[cnpg-backup-sim] {error!r}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
