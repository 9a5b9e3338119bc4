"""SIMULATION: the parts of two operators that need more than a kwok Stage. See README.md.

    python3 tests/platform/simulations/operators.py --server URL --ca CA --cert CRT --key KEY --pg-port PORT

tests/platform/platform.py starts it after kwok, like the platform's other components (log:
<state>/logs/operators.log). Only the standard library: it runs before any virtualenv exists.
Nothing secret is logged: passwords go to psql on its stdin, never in arguments or messages.

1. The 1Password operator (1Password/onepassword-operator v1.12.0), against a test vault:
   internal/controller/onepassworditem_controller.go (finalizer, Secret, Ready condition),
   pkg/kubernetessecrets/kubernetes_secrets_builder.go (the Secret's shape and update rules),
   pkg/onepassword/items.go (item paths, vault and item lookup and their errors) and
   pkg/onepassword/secret_update_handler.go (the poller: Secrets follow the item's version, and
   workloads that use an updated Secret are restarted when auto-restart says so).
   The vault is ConfigMaps in namespace VAULT_NAMESPACE, one per item (see Vault). The poller runs
   every --onepassword-poll seconds, the operator's POLLING_INTERVAL (600 s by default upstream).
   The operator's --enable-annotations and --allow-empty-values flags are off, as by default.

2. The CloudNativePG instance manager (cloudnative-pg v1.30.0) of Clusters in namespaces labelled
   TEST_POSTGRES_LABEL=true, whose instance is the test PostgreSQL (tests/postgres.py), reached as
   the instance manager reaches its own: over the Unix socket, as postgres.
   - bootstrap.initdb: the owner role and the database, with the password of initdb.secret;
   - the owner's password follows that Secret (internal/management/controller/instance_controller.go,
     refreshCredentialsFromSecret): applied when the operator reconciles the Cluster, which a Secret
     change triggers only if it is labelled cnpg.io/reload or owned by the Cluster
     (internal/controller/cluster_predicates.go); otherwise this simulation waits for a change of the
     Cluster's spec, the one reconciliation it can be sure of;
   - spec.managed.roles (internal/management/controller/roles/: roles.go, runnable.go, postgres.go,
     contract.go), status.managedRolesStatus as upstream writes it;
   - DatabaseRole resources (internal/management/controller/databaserole_controller.go and, for the
     PasswordSecretChange condition, internal/controller/databaserole_controller.go).
   Clusters elsewhere have no PostgreSQL behind them; kwok's Stages (cloudnative-pg.yaml) give every
   Cluster its pods, Services and status phase, and Database objects their `applied`.
   The superuser's password is left alone: a real instance without enableSuperuserAccess sets it
   NULL, but the test harness logs in as postgres over TCP with it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

VAULT_NAMESPACE = "onepassword-test-vault"
DEFAULT_VAULT = "Secrets"
VAULT_LABEL = "simulation.homelab.flyte/vault"
TITLE_ANNOTATION = "simulation.homelab.flyte/item-title"
ID_ANNOTATION = "simulation.homelab.flyte/item-id"
VERSION_ANNOTATION_VAULT = "simulation.homelab.flyte/item-version"
DIGEST_ANNOTATION = "simulation.homelab.flyte/fields-digest"
FIELDS_KEY = "fields.json"

OP_PREFIX = "operator.1password.io"
OP_VERSION = f"{OP_PREFIX}/item-version"
OP_PATH = f"{OP_PREFIX}/item-path"
OP_NAME = f"{OP_PREFIX}/item-name"
OP_AUTO_RESTART = f"{OP_PREFIX}/auto-restart"
OP_LAST_RESTARTED = f"{OP_PREFIX}/last-restarted"
OP_FINALIZER = "onepassword.com/finalizer.secret"
OP_TYPE_IMMUTABLE = "cannot change secret type: secret type is immutable"

TEST_POSTGRES_LABEL = "simulation.homelab.flyte/test-postgres"
CNPG_RELOAD_LABEL = "cnpg.io/reload"
CNPG_PASSTHROUGH = "cnpg.io/passwordPassthrough"
CNPG_ROLE_FINALIZER = "cnpg.io/deleteRole"
CNPG_GROUP = "postgresql.cnpg.io/v1"
DATABASEROLE_REQUEUE = 30.0  # databaseRoleReconciliationInterval


def log(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {message}", flush=True)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the Kubernetes API ----------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Kube:
    """A few REST calls with the platform's admin certificate."""

    def __init__(self, server: str, ca: str, cert: str, key: str):
        self.server = server.rstrip("/")
        self.context = ssl.create_default_context(cafile=ca)
        self.context.load_cert_chain(cert, key)

    def request(self, method: str, path: str, body=None, content_type: str = "application/json", query=None):
        url = self.server + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=15) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                status = json.loads(text)
            except ValueError:
                status = {"message": text, "reason": ""}
            raise ApiError(error.code, status.get("reason", ""), status.get("message", text)) from None
        return json.loads(text) if text else None

    def get(self, path: str):
        try:
            return self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, path: str, **query) -> list[dict]:
        """The items, each with its apiVersion and kind (a list leaves them out; an update needs them)."""
        try:
            listing = self.request("GET", path, query=query or None) or {}
        except ApiError as error:
            if error.status == 404:  # a CRD that is not installed
                return []
            raise
        kind = (listing.get("kind") or "").removesuffix("List")
        for item in listing.get("items", []):
            item.setdefault("apiVersion", listing.get("apiVersion"))
            item.setdefault("kind", kind)
        return listing.get("items", [])

    def create(self, path: str, obj: dict):
        return self.request("POST", path, obj)

    def update(self, path: str, obj: dict):
        return self.request("PUT", path, obj)

    def merge(self, path: str, patch: dict):
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except ApiError as error:
            if error.status != 404:
                raise


def core_path(namespace: str | None, plural: str, name: str | None = None) -> str:
    path = "/api/v1" + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return path + (f"/{name}" if name else "")


def group_path(group_version: str, namespace: str | None, plural: str, name: str | None = None) -> str:
    path = f"/apis/{group_version}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return path + (f"/{name}" if name else "")


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def replace_map(old: dict | None, new: dict) -> dict:
    """The merge patch that turns map `old` into `new` (keys that go away become null)."""
    patch = {key: None for key in (old or {}) if key not in new}
    patch.update(new)
    return patch


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool on the lower-cased text, as the 1Password operator reads its annotations."""
    value = text.lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise ValueError(text)


# --- the 1Password operator ------------------------------------------------------------------------

def op_id(*names: str) -> str:
    """A 26-character ID in the alphabet of 1Password's (a-z, 2-7), stable for the names."""
    return base64.b32encode(hashlib.sha256("\0".join(names).encode()).digest()).decode().lower()[:26]


def is_op_uuid(text: str) -> bool:
    return len(text) == 26 and all("a" <= c <= "z" or "0" <= c <= "9" for c in text)


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def secret_name_for(value: str) -> str:
    """formatSecretName: the name as is when valid, else lower-cased with invalid runs as '-'."""
    if len(value) <= 253 and DNS1123_SUBDOMAIN.match(value):
        return value
    result = re.sub(r"[^a-z0-9-.]+", "-", value.lower())[:253]
    return result.strip("-.")


def secret_key_for(label: str) -> str:
    """formatSecretDataName: the field label as a Secret data key."""
    if len(label) <= 253 and CONFIGMAP_KEY.match(label) and label not in (".", ".."):
        return label
    result = re.sub(r"(^[^a-zA-Z0-9-._]+|[^a-zA-Z0-9-._]+$)", "", label)
    return re.sub(r"[^a-zA-Z0-9-._]+", "-", result)[:253]


def default_fields(title: str) -> list[dict]:
    """The simulated vault's default item: the reference deployment's flyte-secrets fields."""
    fields = [{"label": "username", "value": "flyte"},
              {"label": "password", "value": secrets.token_urlsafe(24)},
              {"label": "oidc-client-id", "value": "flyte"}]
    if not title.endswith("-incomplete"):
        fields.append({"label": "oidc-client-secret", "value": secrets.token_urlsafe(36)})
    return fields


class ItemLookupError(Exception):
    """An error the operator would report, worded as it words it."""


class Vault:
    """The test vault: one ConfigMap per item in VAULT_NAMESPACE.

    A ConfigMap is an item of the vault named by its label simulation.homelab.flyte/vault, titled
    by its annotation simulation.homelab.flyte/item-title (default: the ConfigMap's name), with the
    fields in data["fields.json"]: [{"label": ..., "value": ...}, ...]. Change a value and the item's
    version goes up by one, as a save in 1Password does. Vault "Secrets" always exists and has every
    item asked for: a missing one is created with default_fields().
    """

    def __init__(self, kube: Kube):
        self.kube = kube
        self.items: list[dict] = []

    def refresh(self) -> None:
        self.items = []
        for cm in self.kube.list(core_path(VAULT_NAMESPACE, "configmaps")):
            md = meta(cm)
            vault = (md.get("labels") or {}).get(VAULT_LABEL)
            if not vault:
                continue
            try:
                fields = json.loads((cm.get("data") or {}).get(FIELDS_KEY) or "[]")
                fields = [{"label": str(f.get("label", "")), "value": str(f.get("value", ""))} for f in fields]
            except (ValueError, AttributeError):
                log(f"vault: ConfigMap {md['name']} has no valid {FIELDS_KEY}; ignored")
                continue
            annotations = md.get("annotations") or {}
            digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
            item_id = annotations.get(ID_ANNOTATION) or op_id(vault, md["name"], md.get("uid", ""))
            version = int(annotations.get(VERSION_ANNOTATION_VAULT) or 0)
            if annotations.get(DIGEST_ANNOTATION) != digest or not annotations.get(ID_ANNOTATION):
                version += 1  # a save in 1Password
                self.kube.merge(core_path(VAULT_NAMESPACE, "configmaps", md["name"]), {"metadata": {"annotations": {
                    ID_ANNOTATION: item_id, VERSION_ANNOTATION_VAULT: str(version), DIGEST_ANNOTATION: digest}}})
            self.items.append({"vault": vault, "vault_id": op_id(vault), "id": item_id,
                               "title": annotations.get(TITLE_ANNOTATION) or md["name"], "version": version,
                               "fields": fields, "created": md.get("creationTimestamp", "")})

    def vault_titles(self) -> set[str]:
        return {DEFAULT_VAULT} | {item["vault"] for item in self.items}

    def vault_id(self, name_or_id: str) -> str:
        titles = self.vault_titles()
        if name_or_id in titles:
            return op_id(name_or_id)
        if is_op_uuid(name_or_id):
            return name_or_id
        raise ItemLookupError(f"failed to 'getVaultID' for vaultNameOrID='{name_or_id}': "
                              f"no vaults found with identifier \"{name_or_id}\"")

    def item_by_path(self, path: str, create: bool = True) -> dict:
        """GetOnePasswordItemByPath; in vault Secrets a missing item is created first, unless create is false."""
        parts = path.split("/")
        if not (len(parts) == 4 and parts[0] == "vaults" and parts[2] == "items"):
            raise ItemLookupError(f"\"{path}\" is not an acceptable path for One Password item. "
                                  "Must be of the format: `vaults/{vault_id}/items/{item_id}`")
        vault_id, wanted = self.vault_id(parts[1]), parts[3]
        in_vault = [item for item in self.items if item["vault_id"] == vault_id]
        if is_op_uuid(wanted):
            by_id = [item for item in in_vault if item["id"] == wanted]
            if by_id:
                return by_id[0]
        titled = sorted((item for item in in_vault if item["title"] == wanted), key=lambda item: item["created"])
        if titled:
            return titled[0]
        if vault_id == op_id(DEFAULT_VAULT) and create:
            return self._create_default(wanted)
        raise ItemLookupError(f"failed to get item for vaultID='{vault_id}' and itemNameOrID='{wanted}': "
                              f"no items found with identifier \"{wanted}\" in vault \"{vault_id}\"")

    def _create_default(self, title: str) -> dict:
        name = secret_name_for(title) if len(title) <= 63 else ""
        if not name or name != title:
            name = "item-" + op_id(DEFAULT_VAULT, title)[:16]
        fields = default_fields(title)
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": VAULT_NAMESPACE, "labels": {VAULT_LABEL: DEFAULT_VAULT},
                             "annotations": {TITLE_ANNOTATION: title}},
                "data": {FIELDS_KEY: json.dumps(fields, indent=1)}}
        try:
            self.kube.create(core_path(VAULT_NAMESPACE, "configmaps"), body)
            log(f"vault: created item {DEFAULT_VAULT}/{title} with the default fields")
        except ApiError as error:
            if error.status != 409:
                raise
        self.refresh()
        return next(item for item in self.items if item["vault"] == DEFAULT_VAULT and item["title"] == title)


def item_secret_data(item: dict) -> dict[str, str]:
    """BuildKubernetesSecretData for fields only (the test vault has no URLs or files), base64."""
    data = {}
    for field in item["fields"]:
        key = secret_key_for(field["label"])
        if not key or not field["value"]:  # invalid label, or an empty value (--allow-empty-values is off)
            continue
        data[key] = base64.b64encode(field["value"].encode()).decode()
    return data


class OnePasswordOperator:
    """OnePasswordItem reconciliation, and the poller that follows item versions."""

    def __init__(self, kube: Kube, vault: Vault, poll_interval: float):
        self.kube, self.vault, self.poll_interval = kube, vault, poll_interval
        self.seen: dict[str, str] = {}  # item uid -> resourceVersion last reconciled
        self.next_poll = 0.0

    def step(self) -> None:
        items = self.kube.list(group_path("onepassword.com/v1", None, "onepassworditems"))
        if items:
            self.vault.refresh()
        for item in items:
            md = meta(item)
            if self.seen.get(md["uid"]) == md.get("resourceVersion"):
                continue
            try:
                self.reconcile(item)
            except ApiError as error:
                log(f"1password: {md['namespace']}/{md['name']}: {error.message} (retrying)")
                continue
            self.seen[md["uid"]] = md.get("resourceVersion")
        live = {meta(item)["uid"] for item in items}
        self.seen = {uid: rv for uid, rv in self.seen.items() if uid in live}
        if time.monotonic() >= self.next_poll:
            self.next_poll = time.monotonic() + self.poll_interval
            self.poll()

    def reconcile(self, item: dict) -> None:
        md = meta(item)
        namespace, name = md["namespace"], md["name"]
        path = group_path("onepassword.com/v1", namespace, "onepassworditems", name)
        finalizers = md.get("finalizers") or []
        if md.get("deletionTimestamp"):
            if OP_FINALIZER in finalizers:
                self.kube.delete(core_path(namespace, "secrets", name))
                md["finalizers"] = [f for f in finalizers if f != OP_FINALIZER]
                self.kube.update(path, item)
                log(f"1password: {namespace}/{name} deleted: removed its Secret and the finalizer")
            return
        if OP_FINALIZER not in finalizers:
            md["finalizers"] = finalizers + [OP_FINALIZER]
            item = self.kube.update(path, item)
            md = meta(item)
        error = None
        try:
            self.write_secret(item)
        except ItemLookupError as failure:
            error = f"failed to retrieve item: {failure}"
        except ValueError as failure:
            error = str(failure)
        except ApiError as failure:
            error = failure.message
        self.update_status(item, error)

    def write_secret(self, item: dict) -> None:
        """handleOnePasswordItem and CreateKubernetesSecretFromItem."""
        md = meta(item)
        namespace, name = md["namespace"], md["name"]
        found = self.vault.item_by_path((item.get("spec") or {}).get("itemPath", ""))
        annotations = {OP_VERSION: str(found["version"]), OP_PATH: f"vaults/{found['vault_id']}/items/{found['id']}"}
        auto_restart = (md.get("annotations") or {}).get(OP_AUTO_RESTART, "")
        secret_name = secret_name_for(name)
        if auto_restart:
            try:
                parse_bool(auto_restart)
            except ValueError:
                raise ValueError(f"error parsing {OP_AUTO_RESTART} annotation on Secret {secret_name}. "
                                 "Must be true or false. Defaulting to false") from None
            annotations[OP_AUTO_RESTART] = auto_restart
        labels = md.get("labels") or None
        secret_type = item.get("type") or ""
        data = item_secret_data(found)
        current = self.kube.get(core_path(namespace, "secrets", secret_name))
        if current is None:
            secret = {"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": secret_name, "namespace": namespace, "annotations": annotations,
                                   "ownerReferences": [{"apiVersion": "onepassword.com/v1", "kind": "OnePasswordItem",
                                                        "name": name, "uid": md["uid"]}]},
                      "data": data}
            if labels:
                secret["metadata"]["labels"] = labels
            if secret_type:
                secret["type"] = secret_type
            self.kube.create(core_path(namespace, "secrets"), secret)
            log(f"1password: created Secret {namespace}/{secret_name} (version {found['version']})")
            return
        if (current.get("type") or "Opaque") != (secret_type or "Opaque"):
            raise ValueError(OP_TYPE_IMMUTABLE)
        cmd = meta(current)
        if (cmd.get("annotations") or {}) != annotations or (cmd.get("labels") or {}) != (labels or {}):
            cmd["annotations"], cmd["labels"] = annotations, labels
            current["data"] = data
            self.kube.update(core_path(namespace, "secrets", secret_name), current)
            log(f"1password: updated Secret {namespace}/{secret_name} (version {found['version']})")

    def update_status(self, item: dict, error: str | None) -> None:
        conditions = (item.get("status") or {}).get("conditions") or []
        existing = next((c for c in conditions if c.get("type") == "Ready"), {"type": "Ready", "status": "Unknown"})
        updated = {"type": "Ready", "status": "False" if error else "True"}
        if error:
            updated["message"] = error
        if existing.get("status") != updated["status"]:
            updated["lastTransitionTime"] = now_rfc3339()
        elif existing.get("lastTransitionTime"):
            updated["lastTransitionTime"] = existing["lastTransitionTime"]
        if conditions != [updated]:
            md = meta(item)
            self.kube.merge(group_path("onepassword.com/v1", md["namespace"], "onepassworditems", md["name"]) + "/status",
                            {"status": {"conditions": [updated]}})

    def poll(self) -> None:
        """UpdateKubernetesSecretsTask: Secrets follow their item's version; then the restarts."""
        self.vault.refresh()
        updated: dict[str, dict[str, dict]] = {}
        for secret in self.kube.list(core_path(None, "secrets"), fieldSelector="type!=helm.sh/release.v1"):
            md = meta(secret)
            annotations = md.get("annotations") or {}
            if not annotations.get(OP_PATH) or not annotations.get(OP_VERSION):
                continue
            owner = self.kube.get(group_path("onepassword.com/v1", md["namespace"], "onepassworditems", md["name"]))
            path = ((owner or {}).get("spec") or {}).get("itemPath") or annotations[OP_PATH]
            try:
                # An item removed from the vault stays removed: the poller does not create the default one.
                found = self.vault.item_by_path(path, create=False)
            except ItemLookupError as error:
                log(f"1password: failed to retrieve 1Password item at path {annotations[OP_PATH]} for secret "
                    f"{md['name']}: {error}")
                continue
            item_path = f"vaults/{found['vault_id']}/items/{found['id']}"
            if annotations[OP_VERSION] == str(found["version"]) and annotations[OP_PATH] == item_path:
                continue
            annotations[OP_VERSION], annotations[OP_PATH] = str(found["version"]), item_path
            md["annotations"] = annotations
            secret["data"] = item_secret_data(found)
            try:
                secret = self.kube.update(core_path(md["namespace"], "secrets", md["name"]), secret)
            except ApiError as error:
                log(f"1password: failed to update secret {md['name']} to version {found['version']}: {error.message}")
                continue
            log(f"1password: updating kubernetes secret {md['namespace']}/{md['name']} to version {found['version']}")
            updated.setdefault(md["namespace"], {})[md["name"]] = secret
        if updated:
            self.restart_workloads(updated)

    def restart_workloads(self, updated: dict[str, dict[str, dict]]) -> None:
        namespaces = {meta(ns)["name"]: (meta(ns).get("annotations") or {})
                      for ns in self.kube.list(core_path(None, "namespaces"))}
        for deployment in self.kube.list(group_path("apps/v1", None, "deployments")):
            md = meta(deployment)
            in_namespace = updated.get(md["namespace"])
            if not in_namespace:
                continue
            template = deployment["spec"]["template"]
            for secret in used_secrets(md.get("annotations") or {}, template, in_namespace):
                if self._auto_restart(secret, md, namespaces.get(md["namespace"], {})):
                    template.setdefault("metadata", {}).setdefault("annotations", {})[OP_LAST_RESTARTED] = now_rfc3339()
                    try:
                        self.kube.update(group_path("apps/v1", md["namespace"], "deployments", md["name"]), deployment)
                        log(f"1password: Deployment {md['namespace']}/{md['name']} references an updated secret. Restarting")
                    except ApiError as error:
                        log(f"1password: problem restarting workload {md['name']}: {error.message}")
                    break

    @staticmethod
    def _auto_restart(secret: dict, deployment_md: dict, namespace_annotations: dict) -> bool:
        for value in ((meta(secret).get("annotations") or {}).get(OP_AUTO_RESTART, ""),
                      (deployment_md.get("annotations") or {}).get(OP_AUTO_RESTART, ""),
                      namespace_annotations.get(OP_AUTO_RESTART, "")):
            if value:
                try:
                    return parse_bool(value)
                except ValueError:
                    return False
        return False  # the operator's global auto-restart is off by default


def used_secrets(annotations: dict, template: dict, secrets_by_name: dict[str, dict]) -> list[dict]:
    """getUpdatedSecretsForPodTemplate: the updated Secrets a pod template uses."""
    spec = template.get("spec") or {}
    names = [annotations.get(OP_NAME, "")]
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in container.get("env") or []:
            names.append((((env.get("valueFrom") or {}).get("secretKeyRef")) or {}).get("name", ""))
        for source in container.get("envFrom") or []:
            names.append((source.get("secretRef") or {}).get("name", ""))
    for volume in spec.get("volumes") or []:
        if volume.get("secret"):
            names.append(volume["secret"].get("secretName", ""))
        elif volume.get("projected"):
            projected = [(s.get("secret") or {}).get("name", "") for s in volume["projected"].get("sources") or []]
            names.append(next((n for n in projected if n in secrets_by_name), ""))
    seen, found = set(), []
    for name in names:
        if name in secrets_by_name and name not in seen:
            seen.add(name)
            found.append(secrets_by_name[name])
    return found


# --- PostgreSQL, as the instance manager reaches it --------------------------------------------------

class PgError(Exception):
    """A PostgreSQL error; its text is pgconn.PgError's, after the context the reconciler wraps it in."""

    def __init__(self, code: str, message: str, detail: str = ""):
        super().__init__(message)
        self.code, self.message, self.detail, self.context = code, message, detail, ""

    def __str__(self) -> str:
        text = f"ERROR: {self.message} (SQLSTATE {self.code})"
        return f"{self.context}: {text}" if self.context else text


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    quoted = value.replace("'", "''")
    return ("E'" + quoted.replace("\\", "\\\\") + "'") if "\\" in value else "'" + quoted + "'"


def scram_verifier(password: str) -> str:
    """SCRAM-SHA-256 as PostgreSQL stores it, for ASCII passwords (SASLprep leaves them as they are)."""
    salt, iterations = os.urandom(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


SCRAM_SHAPE = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")
MD5_SHAPE = re.compile(r"^md5[0-9a-f]{32}$")


def password_literal(password: str, passthrough: bool) -> str:
    """EnsureEncryptedPassword: encoded on this side unless already a verifier or passed through.

    A non-ASCII password is passed to PostgreSQL to encode (its SASLprep is exact; this one would not be).
    """
    if passthrough or SCRAM_SHAPE.match(password) or MD5_SHAPE.match(password) or not password.isascii():
        return quote_literal(password)
    return quote_literal(scram_verifier(password))


class Postgres:
    """psql as postgres over the test server's Unix socket; SQL on stdin, never in arguments."""

    def __init__(self, port: int):
        self.port = port
        self.socket_dir = f"/tmp/homelab-flyte-pg-{port}.socket"
        self.psql = shutil.which("psql") or "psql"

    def available(self) -> bool:
        return Path(self.socket_dir, f".s.PGSQL.{self.port}").exists()

    def run(self, sql: str, database: str = "postgres") -> list[list[str]]:
        """Run SQL (one transaction when it says so); the rows of the last statement, fields split on \\x1f."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        argv = [self.psql, "-X", "-A", "-t", "-q", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", database]
        result = subprocess.run(argv, input=sql, capture_output=True, text=True, env=env, timeout=30, check=False)
        if result.returncode != 0:
            raise self._error(result.stderr)
        return [line.split("\x1f") for line in result.stdout.splitlines() if line]

    @staticmethod
    def _error(stderr: str) -> PgError:
        match = re.search(r"(?:ERROR|FATAL):\s+([0-9A-Z]{5}):\s+(.*)", stderr)
        detail = re.search(r"DETAIL:\s+(.*)", stderr)
        if match:
            return PgError(match.group(1), match.group(2).strip(), detail.group(1).strip() if detail else "")
        return PgError("XX000", " ".join(stderr.split()) or "psql failed")

    def system_identifier(self) -> str:
        return self.run("SELECT system_identifier FROM pg_control_system()")[0][0]

    def suppressed(self, statement: str) -> str:
        """ExecWithSuppressedLogging: a statement that carries a password, kept out of the server log."""
        return ("BEGIN;\nSET LOCAL log_statement = 'none';\nSET LOCAL log_min_error_statement = 'PANIC';\n"
                f"{statement};\nCOMMIT;\n")

    def roles(self) -> dict[str, dict]:
        """roles.List: every role but pg_*, with what the reconciler compares."""
        rows = self.run(
            "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, "
            "rolconnlimit, coalesce(rolvaliduntil::text, ''), rolvaliduntil IS NOT NULL, rolbypassrls, "
            "coalesce(shobj_description(a.oid, 'pg_authid'), ''), a.xmin::text, "
            "coalesce((SELECT string_agg(pg_get_userbyid(m.roleid), ',' ORDER BY 1) FROM pg_auth_members m "
            "WHERE m.member = a.oid), '') "
            "FROM pg_authid a WHERE rolname NOT LIKE 'pg\\_%'")
        found = {}
        for row in rows:
            found[row[0]] = {
                "superuser": row[1] == "t", "inherit": row[2] == "t", "createrole": row[3] == "t",
                "createdb": row[4] == "t", "login": row[5] == "t", "replication": row[6] == "t",
                "connectionLimit": int(row[7]), "validUntil": row[8], "validUntilSet": row[9] == "t",
                "bypassrls": row[10] == "t", "comment": row[11], "xmin": int(row[12]),
                "inRoles": sorted(filter(None, row[13].split(","))),
            }
        return found


# --- the CloudNativePG instance manager --------------------------------------------------------------

def reserved_role(name: str) -> bool:
    """IsRoleReserved (pkg/postgres/roles.go)."""
    return name in ("postgres", "streaming_replica") or name.startswith(("cnpg_", "pg_"))


def role_options(spec: dict) -> str:
    """appendRoleOptions: every attribute, spelled out."""
    flags = [("bypassrls", "BYPASSRLS"), ("createdb", "CREATEDB"), ("createrole", "CREATEROLE"),
             ("inherit", "INHERIT"), ("login", "LOGIN"), ("replication", "REPLICATION"), ("superuser", "SUPERUSER")]
    text = "".join(f" {word}" if wanted(spec, key) else f" NO{word}" for key, word in flags)
    return text + f" CONNECTION LIMIT {int(spec.get('connectionLimit', -1))}"


def wanted(spec: dict, key: str) -> bool:
    return bool(spec.get(key, key == "inherit"))  # inherit defaults to true (GetRoleInherit)


def equivalent(role: dict, spec: dict) -> bool:
    """isEquivalentTo: the attributes, and VALID UNTIL."""
    same = all(role[key] == wanted(spec, key) for key in
               ("superuser", "createdb", "createrole", "inherit", "login", "replication", "bypassrls"))
    same = same and role["connectionLimit"] == int(spec.get("connectionLimit", -1))
    if spec.get("validUntil") is None:
        return same and (not role["validUntilSet"] or role["validUntil"] == "infinity")
    return same and role["validUntilSet"] and same_instant(role["validUntil"], spec["validUntil"])


def same_instant(pg_text: str, k8s_text: str) -> bool:
    try:
        pg = datetime.fromisoformat(pg_text.replace(" ", "T"))
        k8s = datetime.fromisoformat(k8s_text.replace("Z", "+00:00"))
        return pg == k8s if (pg.tzinfo and k8s.tzinfo) else pg.replace(tzinfo=None) == k8s.replace(tzinfo=None)
    except ValueError:
        return False


class SecretError(Exception):
    pass


class Instance:
    """The instance manager of one Cluster, against the test PostgreSQL."""

    def __init__(self, kube: Kube, pg: Postgres, cluster: dict):
        self.kube, self.pg = kube, pg
        self.uid = meta(cluster)["uid"]
        self.bootstrapped = False
        self.secret_versions: dict[str, str] = {}  # reconcileUser's cache: secret -> resourceVersion applied
        self.generation = None

    # -- Secrets --

    def secret(self, namespace: str, name: str) -> dict | None:
        return self.kube.get(core_path(namespace, "secrets", name))

    @staticmethod
    def user_password(secret: dict) -> tuple[str, str]:
        """GetUserPasswordFromSecret."""
        data = secret.get("data") or {}
        if "username" not in data:
            raise SecretError("username key doesn't exist inside the secret")
        if "password" not in data:
            raise SecretError("password key doesn't exist inside the secret")
        return base64.b64decode(data["username"]).decode(), base64.b64decode(data["password"]).decode()

    @staticmethod
    def passthrough(secret: dict) -> bool:
        return (meta(secret).get("annotations") or {}).get(CNPG_PASSTHROUGH, "") == "enabled"

    # -- one reconciliation of the Cluster --

    def reconcile(self, cluster: dict, databaseroles: list[dict]) -> None:
        md = meta(cluster)
        namespace, name = md["namespace"], md["name"]
        initdb = ((cluster.get("spec") or {}).get("bootstrap") or {}).get("initdb") or {}
        owner, database = initdb.get("owner") or initdb.get("database") or "app", initdb.get("database") or "app"
        secret_name = (initdb.get("secret") or {}).get("name") or f"{name}-app"
        spec_changed = self.generation != md.get("generation")
        self.generation = md.get("generation")
        if not self.bootstrapped:
            self.bootstrap(namespace, name, owner, database, secret_name)
            if not self.bootstrapped:
                return
        self.refresh_owner_password(cluster, owner, secret_name, spec_changed)
        self.managed_roles(cluster)
        for role in databaseroles:
            DatabaseRoleReconciler(self, cluster, role, databaseroles).reconcile()

    def bootstrap(self, namespace: str, cluster: str, owner: str, database: str, secret_name: str) -> None:
        """bootstrap.initdb: the owner and the database, the owner's password from the Secret."""
        secret = self.secret(namespace, secret_name)
        if secret is None:
            log(f"cnpg: {namespace}/{cluster}: waiting for the initdb secret {secret_name} to bootstrap")
            return
        try:
            username, password = self.user_password(secret)
        except SecretError as error:
            log(f"cnpg: {namespace}/{cluster}: initdb secret {secret_name}: {error}")
            return
        if username != owner:
            log(f"cnpg: {namespace}/{cluster}: wrong username '{username}' in secret, expected '{owner}'")
            return
        roles = self.pg.roles()
        if owner not in roles:
            self.pg.run(f"CREATE ROLE {quote_ident(owner)} LOGIN")
        if not self.pg.run(f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(database)}"):
            self.pg.run(f"CREATE DATABASE {quote_ident(database)} OWNER {quote_ident(owner)}")
        self.set_password(owner, password, self.passthrough(secret))
        self.secret_versions[secret_name] = meta(secret)["resourceVersion"]
        self.bootstrapped = True
        log(f"cnpg: {namespace}/{cluster}: bootstrapped database {database} owned by {owner}")

    def set_password(self, role: str, password: str, passthrough: bool) -> None:
        """SetUserPassword."""
        self.pg.run(self.pg.suppressed(f"ALTER ROLE {quote_ident(role)} WITH PASSWORD "
                                       f"{password_literal(password, passthrough)}"))

    def refresh_owner_password(self, cluster: dict, owner: str, secret_name: str, spec_changed: bool) -> None:
        """reconcileUser for the application owner, when the operator would have reconciled the Cluster."""
        md = meta(cluster)
        secret = self.secret(md["namespace"], secret_name)
        if secret is None or self.secret_versions.get(secret_name) == meta(secret)["resourceVersion"]:
            return
        smd = meta(secret)
        watched = CNPG_RELOAD_LABEL in (smd.get("labels") or {}) or any(
            ref.get("kind") == "Cluster" and ref.get("apiVersion") == CNPG_GROUP and ref.get("name") == md["name"]
            for ref in smd.get("ownerReferences") or [])
        if not (watched or spec_changed):
            return
        try:
            username, password = self.user_password(secret)
        except SecretError as error:
            log(f"cnpg: {md['namespace']}/{md['name']}: while updating database owner password: {error}")
            return
        if username != owner:
            log(f"cnpg: {md['namespace']}/{md['name']}: while updating database owner password: "
                f"wrong username '{username}' in secret, expected '{owner}'")
            return
        self.set_password(owner, password, self.passthrough(secret))
        self.secret_versions[secret_name] = smd["resourceVersion"]
        self.kube.merge(group_path(CNPG_GROUP, md["namespace"], "clusters", md["name"]) + "/status",
                        {"status": {"secretsResourceVersion": {"applicationSecretVersion": smd["resourceVersion"]}}})
        log(f"cnpg: {md['namespace']}/{md['name']}: applied the password of {secret_name} "
            f"(resourceVersion {smd['resourceVersion']}) to {owner}")

    # -- password of a role from its Secret --

    def role_password(self, namespace: str, spec: dict) -> tuple[str, str, bool]:
        """getPassword: (password, secret resourceVersion, passthrough); SecretError worded as upstream."""
        name = (spec.get("passwordSecret") or {}).get("name", "")
        secret = self.secret(namespace, name)
        if secret is None:
            raise SecretError(f"failed to get password secret {name}: secrets \"{name}\" not found")
        username, password = self.user_password(secret)
        if spec["name"].strip() != username.strip():
            raise SecretError(f"the username in secret \"{name}\" does not match role \"{spec['name']}\"")
        return password.strip(), meta(secret)["resourceVersion"], self.passthrough(secret)

    def password_clause(self, namespace: str, spec: dict, existing: dict | None) -> tuple[str, str]:
        """ApplyPassword + appendPasswordOption: the PASSWORD/VALID UNTIL text and the secret version."""
        secret_name = (spec.get("passwordSecret") or {}).get("name", "")
        version, text = "", ""
        if secret_name and spec.get("disablePassword"):
            raise SecretError(f"cannot reconcile: password both provided and disabled: {secret_name}")
        if secret_name:
            password, version, passthrough = self.role_password(namespace, spec)
            text = f" PASSWORD {password_literal(password, passthrough)}"
        elif spec.get("disablePassword"):
            text = " PASSWORD NULL"
        if spec.get("validUntil"):
            text += f" VALID UNTIL {quote_literal(spec['validUntil'])}"
        elif existing is not None and existing["validUntilSet"]:
            text += " VALID UNTIL 'infinity'"
        return text, version

    def create_or_update(self, namespace: str, spec: dict, existing: dict | None) -> str:
        """Create or Update, returning the password secret's resourceVersion."""
        password, version = self.password_clause(namespace, spec, existing)
        name = quote_ident(spec["name"])
        if existing is None:
            statement = f"CREATE ROLE {name}{role_options(spec)}"
            if spec.get("inRoles"):
                statement += " IN ROLE " + ",".join(quote_ident(r) for r in spec["inRoles"])
            what = f"while creating role {spec['name']} with role reconciler"
        else:
            statement = f"ALTER ROLE {name}{role_options(spec)}"
            what = f"while updating role {spec['name']} with role reconciler"
        statement += password
        try:
            self.pg.run(self.pg.suppressed(statement) if password else statement + ";")
            if existing is None and spec.get("comment"):
                self.pg.run(f"COMMENT ON ROLE {name} IS {quote_literal(spec['comment'])}")
        except PgError as error:
            error.context = what
            raise
        return version

    def update_memberships(self, spec: dict, existing: dict) -> None:
        desired = spec.get("inRoles") or []
        grants = [r for r in desired if r not in existing["inRoles"]]
        revokes = [r for r in existing["inRoles"] if r not in desired]
        if not grants and not revokes:
            return
        name = quote_ident(spec["name"])
        statements = [f"GRANT {quote_ident(r)} TO {name}" for r in grants]
        statements += [f"REVOKE {quote_ident(r)} FROM {name}" for r in revokes]
        self.pg.run("BEGIN;\n" + ";\n".join(statements) + ";\nCOMMIT;\n")

    def set_comment(self, spec: dict) -> None:
        self.pg.run(f"COMMENT ON ROLE {quote_ident(spec['name'])} IS {quote_literal(spec.get('comment', ''))}")

    def xmin(self, role: str) -> int:
        return int(self.pg.run(f"SELECT xmin::text FROM pg_authid WHERE rolname = {quote_literal(role)}")[0][0])

    # -- spec.managed.roles --

    def managed_roles(self, cluster: dict) -> None:
        """roles.Reconcile + RoleSynchronizer: the actions, applied; managedRolesStatus written."""
        md = meta(cluster)
        namespace = md["namespace"]
        specs = (((cluster.get("spec") or {}).get("managed") or {}).get("roles")) or []
        if not specs:
            return
        status = (cluster.get("status") or {}).get("managedRolesStatus") or {}
        stored = dict(status.get("passwordStatus") or {})
        latest = {}
        for spec in specs:
            if spec.get("passwordSecret") and not spec.get("disablePassword"):
                try:
                    latest[spec["name"]] = self.role_password(namespace, spec)[1]
                except SecretError:
                    pass
        in_db = self.pg.roles()
        by_name = {spec["name"]: spec for spec in specs}
        actions: dict[str, list[str]] = {}
        for name, role in in_db.items():
            spec = by_name.get(name)
            if reserved_role(name):
                action = "RESERVED"
            elif spec is not None and spec.get("ensure") == "absent":
                action = "DELETE"
            elif spec is not None and (not equivalent(role, spec) or password_outdated(name, role, stored, latest)
                                       or (spec.get("passwordSecret") and not spec.get("disablePassword")
                                           and name not in latest)):
                action = "UPDATE"
            elif spec is not None and role["comment"] != spec.get("comment", ""):
                action = "SET_COMMENT"
            elif spec is not None and role["inRoles"] != sorted(spec.get("inRoles") or []):
                action = "UPDATE_MEMBERSHIPS"
            elif spec is None:
                action = "IGNORE"
            else:
                action = "RECONCILED"
            actions.setdefault(action, []).append(name)
        for spec in specs:
            if spec["name"] not in in_db:
                actions.setdefault("CREATE" if spec.get("ensure", "present") == "present" else "RECONCILED",
                                   []).append(spec["name"])
        by_status: dict[str, list[str]] = {}
        for action, names in actions.items():
            key = {"RECONCILED": "reconciled", "IGNORE": "not-managed", "RESERVED": "reserved"}.get(
                action, "pending-reconciliation")
            by_status.setdefault(key, []).extend(names)
        cannot: dict[str, list[str]] = {}
        applied: dict[str, dict] = {}

        def failed(name: str, action: str, error: Exception) -> None:
            if isinstance(error, PgError) and error.code in ("2BP01", "42704", "0LP01"):
                cause = error.detail if error.code == "2BP01" else error.message
                text = f"could not perform {action} on role {name}: {cause}"
            else:
                text = str(error)
            cannot.setdefault(name, []).append(text)

        for action in ("CREATE", "UPDATE"):
            for name in actions.get(action, []):
                try:
                    version = self.create_or_update(namespace, by_name[name], in_db.get(name) if action == "UPDATE" else None)
                    applied[name] = {"transactionID": self.xmin(name)}
                    if version:
                        applied[name]["resourceVersion"] = version
                except (PgError, SecretError) as error:
                    failed(name, action, error)
        for name in actions.get("SET_COMMENT", []):
            try:
                self.set_comment(by_name[name])
            except PgError as error:
                failed(name, "SET_COMMENT", error)
        for name in actions.get("UPDATE_MEMBERSHIPS", []):
            try:
                self.update_memberships(by_name[name], in_db[name])
            except PgError as error:
                failed(name, "UPDATE_MEMBERSHIPS", error)
        for name in actions.get("DELETE", []):
            try:
                self.pg.run(f"DROP ROLE IF EXISTS {quote_ident(name)}")
            except PgError as error:
                error.context = f"while deleting role {name} with role reconciler"
                failed(name, "DELETE", error)
        for name in actions.get("CREATE", []) + actions.get("UPDATE", []):
            if name in applied:
                log(f"cnpg: {namespace}/{md['name']}: managed role {name} applied")
        stored.update(applied)
        patch = {"byStatus": replace_map(status.get("byStatus"), {k: sorted(v) for k, v in by_status.items()}),
                 "cannotReconcile": replace_map(status.get("cannotReconcile"), cannot),
                 "passwordStatus": stored}
        if not cannot and not status.get("cannotReconcile"):
            patch.pop("cannotReconcile")
        if (patch["byStatus"] != status.get("byStatus") or stored != (status.get("passwordStatus") or {})
                or "cannotReconcile" in patch and cannot != status.get("cannotReconcile")):
            self.kube.merge(group_path(CNPG_GROUP, namespace, "clusters", md["name"]) + "/status",
                            {"status": {"managedRolesStatus": patch}})


def password_outdated(name: str, role: dict, stored: dict, latest: dict) -> bool:
    """passwordNeedsUpdating: the Secret's version or the role's last transaction changed."""
    state = stored.get(name) or {}
    return state.get("resourceVersion", "") != latest.get(name, "") or int(state.get("transactionID", 0)) != role["xmin"]


class DatabaseRoleReconciler:
    """One DatabaseRole, by the operator (PasswordSecretChange) and the primary's instance manager."""

    retry_at: dict[str, float] = {}
    seen_role: dict[str, str] = {}
    seen_secret: dict[str, str] = {}

    def __init__(self, instance: Instance, cluster: dict, role: dict, all_roles: list[dict]):
        self.instance, self.cluster, self.role, self.all_roles = instance, cluster, role, all_roles
        self.md = meta(role)
        self.spec = role.get("spec") or {}
        self.status = role.get("status") or {}
        self.path = group_path(CNPG_GROUP, self.md["namespace"], "databaseroles", self.md["name"])

    def reconcile(self) -> None:
        if (self.spec.get("cluster") or {}).get("name") != meta(self.cluster)["name"]:
            return
        self.password_condition()
        uid = self.md["uid"]
        if self.md.get("deletionTimestamp"):
            self.delete()
            return
        if self.already_reconciled():
            if self.managed_inline():
                self.failed("database role is already managed by the CNPG cluster")
                return
            if self.status.get("applied") is True:
                return
        if time.monotonic() < self.retry_at.get(uid, 0) and self.seen_role.get(uid) == self.md["resourceVersion"]:
            return
        self.seen_role[uid] = self.md["resourceVersion"]
        if self.managed_inline():
            self.failed("database role is already managed by the CNPG cluster")
            return
        finalizers = self.md.get("finalizers") or []
        if CNPG_ROLE_FINALIZER not in finalizers:
            self.md["finalizers"] = finalizers + [CNPG_ROLE_FINALIZER]
            self.role = self.instance.kube.update(self.path, self.role)
            self.md = meta(self.role)
        if self.spec.get("ensure") == "absent":
            self.failed("ensure: absent is not supported for DatabaseRole; delete the resource with "
                        "databaseRoleReclaimPolicy: delete instead")
            return
        if not self.status.get("observedGeneration"):
            for other in self.all_roles:
                omd = meta(other)
                ospec = other.get("spec") or {}
                if (omd["name"] != self.md["name"] and (ospec.get("cluster") or {}).get("name") == self.spec["cluster"]["name"]
                        and (other.get("status") or {}).get("observedGeneration") and ospec.get("name") == self.spec["name"]):
                    self.failed(f"\"{self.spec['name']}\" is already managed by object \"{omd['name']}\"")
                    return
        secret_name = (self.spec.get("passwordSecret") or {}).get("name", "")
        if secret_name and self.instance.secret(self.md["namespace"], secret_name) is None:
            self.failed(f"secrets \"{secret_name}\" not found")
            return
        try:
            if reserved_role(self.spec["name"]):
                raise SecretError(f"role name \"{self.spec['name']}\" is reserved and cannot be managed via DatabaseRole")
            existing = self.instance.pg.roles().get(self.spec["name"])
            try:
                version = self.instance.create_or_update(self.md["namespace"], self.spec, existing)
            except SecretError as error:
                raise SecretError(f"while getting the role password: {error}") from None
            if existing is not None:
                self.instance.update_memberships(self.spec, existing)
                if existing["comment"] != self.spec.get("comment", ""):
                    self.instance.set_comment(self.spec)
        except (PgError, SecretError) as error:
            self.failed(str(error))
            return
        self.retry_at.pop(uid, None)
        self.patch_status({"applied": True, "message": None, "observedGeneration": self.md["generation"],
                           "secretResourceVersion": version or None})
        log(f"cnpg: DatabaseRole {self.md['namespace']}/{self.md['name']} applied role {self.spec['name']}")

    def managed_inline(self) -> bool:
        roles = (((self.cluster.get("spec") or {}).get("managed") or {}).get("roles")) or []
        return any(r.get("name") == self.spec.get("name") for r in roles)

    def already_reconciled(self) -> bool:
        """isAlreadyReconciled."""
        if self.md.get("generation") != self.status.get("observedGeneration"):
            return False
        if not (self.spec.get("passwordSecret") or {}).get("name"):
            return True
        condition = next((c for c in self.status.get("conditions") or [] if c.get("type") == "PasswordSecretChange"), None)
        return self.status.get("secretResourceVersion", "") == (condition or {}).get("message", "")

    def password_condition(self) -> None:
        """The operator's reconcilePasswordCondition, on the events that trigger it upstream."""
        secret_name = (self.spec.get("passwordSecret") or {}).get("name", "")
        conditions = self.status.get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "PasswordSecretChange"), None)
        if not secret_name:
            if current is not None:
                self.patch_status({"conditions": [c for c in conditions if c is not current]})
            return
        secret = self.instance.secret(self.md["namespace"], secret_name)
        if secret is None:
            return
        smd, uid = meta(secret), self.md["uid"]
        labelled = CNPG_RELOAD_LABEL in (smd.get("labels") or {})
        role_event = self.seen_secret.get(uid + "/role") != self.md["resourceVersion"]
        if not (role_event or (labelled and self.seen_secret.get(uid) != smd["resourceVersion"])):
            return
        self.seen_secret[uid], self.seen_secret[uid + "/role"] = smd["resourceVersion"], self.md["resourceVersion"]
        if current is not None and current.get("message") == smd["resourceVersion"] and current.get("status") == "True":
            return
        condition = {"type": "PasswordSecretChange", "status": "True", "reason": "ChangeDetected",
                     "message": smd["resourceVersion"],
                     "lastTransitionTime": current["lastTransitionTime"] if current and current.get("status") == "True"
                     else now_rfc3339()}
        # The operator's write: an event the instance manager reacts to.
        self.patch_status({"conditions": [c for c in conditions if c is not current] + [condition]}, by_instance=False)

    def patch_status(self, status: dict, by_instance: bool = True) -> None:
        self.role = self.instance.kube.merge(self.path + "/status", {"status": status})
        self.md, self.status = meta(self.role), self.role.get("status") or {}
        self.seen_secret[self.md["uid"] + "/role"] = self.md["resourceVersion"]
        if by_instance:
            self.seen_role[self.md["uid"]] = self.md["resourceVersion"]

    def failed(self, message: str) -> None:
        """SetAsFailed, then a retry after databaseRoleReconciliationInterval."""
        self.retry_at[self.md["uid"]] = time.monotonic() + DATABASEROLE_REQUEUE
        if self.status.get("applied") is not False or self.status.get("message") != message:
            self.patch_status({"applied": False, "message": message})
            log(f"cnpg: DatabaseRole {self.md['namespace']}/{self.md['name']}: {message}")

    def delete(self) -> None:
        """handleDeletion: DROP ROLE under reclaim policy delete, then the finalizer goes."""
        if CNPG_ROLE_FINALIZER not in (self.md.get("finalizers") or []):
            return
        if (self.spec.get("databaseRoleReclaimPolicy") == "delete" and self.status.get("observedGeneration")
                and not self.managed_inline()):
            try:
                self.instance.pg.run(f"DROP ROLE IF EXISTS {quote_ident(self.spec['name'])}")
            except PgError as error:
                self.failed(f"while deleting role {self.spec['name']} with role reconciler: {error}")
                return
        release_role_finalizer(self.instance.kube, self.role)


def release_role_finalizer(kube: Kube, role: dict) -> None:
    md = meta(role)
    md["finalizers"] = [f for f in md.get("finalizers") or [] if f != CNPG_ROLE_FINALIZER]
    kube.update(group_path(CNPG_GROUP, md["namespace"], "databaseroles", md["name"]), role)


class InstanceManagers:
    """One Instance per Cluster in an opted-in namespace, while the test PostgreSQL runs."""

    def __init__(self, kube: Kube, pg: Postgres):
        self.kube, self.pg = kube, pg
        self.instances: dict[tuple[str, str], Instance] = {}
        self.told_absent = False

    def step(self) -> None:
        namespaces = {meta(ns)["name"]: ns for ns in self.kube.list(core_path(None, "namespaces"))}

        def opted_in(name: str) -> bool:
            ns = namespaces.get(name) or {}
            return ((meta(ns).get("labels") or {}).get(TEST_POSTGRES_LABEL) == "true"
                    and (ns.get("status") or {}).get("phase") != "Terminating")

        clusters = [c for c in self.kube.list(group_path(CNPG_GROUP, None, "clusters")) if opted_in(meta(c)["namespace"])]
        all_roles = self.kube.list(group_path(CNPG_GROUP, None, "databaseroles"))
        live = {(meta(c)["namespace"], meta(c)["name"]) for c in clusters if not meta(c).get("deletionTimestamp")}
        for role in all_roles:  # the operator lets go of roles whose Cluster is gone
            key = (meta(role)["namespace"], ((role.get("spec") or {}).get("cluster") or {}).get("name", ""))
            if (key not in live and meta(role).get("deletionTimestamp")
                    and CNPG_ROLE_FINALIZER in (meta(role).get("finalizers") or [])):
                release_role_finalizer(self.kube, role)
        if not clusters:
            return
        if not self.pg.available():
            if not self.told_absent:
                log(f"cnpg: no test PostgreSQL at {self.pg.socket_dir}; Clusters in opted-in namespaces wait for it")
                self.told_absent = True
            return
        self.told_absent = False
        sysid = self.pg.system_identifier()
        for cluster in clusters:
            md = meta(cluster)
            if md.get("deletionTimestamp") or not (cluster.get("status") or {}).get("currentPrimary"):
                continue
            key = (md["uid"], sysid)
            instance = self.instances.setdefault(key, Instance(self.kube, self.pg, cluster))
            in_namespace = [r for r in all_roles if meta(r)["namespace"] == md["namespace"]]
            try:
                instance.reconcile(cluster, in_namespace)
            except (ApiError, PgError) as error:
                log(f"cnpg: {md['namespace']}/{md['name']}: {error} (retrying)")
        alive = {(meta(c)["uid"], sysid) for c in clusters}
        self.instances = {k: v for k, v in self.instances.items() if k in alive}


# --- main ------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("HOMELAB_FLYTE_PG_PORT", "25432")))
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--onepassword-poll", type=float, default=2.0)
    args = parser.parse_args(argv)
    kube = Kube(args.server, args.ca, args.cert, args.key)
    parts = [OnePasswordOperator(kube, Vault(kube), args.onepassword_poll), InstanceManagers(kube, Postgres(args.pg_port))]
    log(f"started: 1Password operator (poll every {args.onepassword_poll:g}s), CloudNativePG instance managers "
        f"(test PostgreSQL on port {args.pg_port}, namespaces labelled {TEST_POSTGRES_LABEL}=true)")
    while True:
        for part in parts:
            try:
                part.step()
            except (ApiError, PgError, urllib.error.URLError, OSError) as error:  # the API server or PostgreSQL away
                log(f"{type(part).__name__}: {error} (retrying)")
            except Exception:  # noqa: BLE001 - a simulation keeps running, and says what went wrong
                log(f"{type(part).__name__}: " + traceback.format_exc().strip().replace("\n", "\n    "))
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
