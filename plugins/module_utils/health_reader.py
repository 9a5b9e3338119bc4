# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The I/O of the health checks, kept apart so that the check functions (health_checks) stay pure.

``Reader`` does every read a check needs: Kubernetes GETs through the API server (raw paths, no
discovery), ``kubectl exec``-style commands in a pod, GETs through the API server's service proxy,
HTTP GETs, and a direct PostgreSQL query. ``reader_factory`` gives each round a fresh Reader, whose
cache then holds that round's reads only. A read that fails for a reason other than absence raises
``ReadError``, worded for the person running the check; the runner (health) reports it as that
check's failure.

No result ever holds a secret value: Secrets are reduced to their key names as soon as they are read.
"""

from __future__ import annotations

import copy
import json
import threading

# One place decides whether psycopg is usable: the database module_utils.
from ansible_collections.homelab.flyte.plugins.module_utils.database import HAS_PSYCOPG

if HAS_PSYCOPG:
    import psycopg


class ReadError(Exception):
    """A read that failed for a reason other than absence, worded for the person running the check."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def api_path(api_version: str, kind_plural: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{kind_plural}" + (f"/{name}" if name else "")


class Reader:
    """The I/O of the checks: Kubernetes reads through one ApiClient, exec through another (the
    client's stream() swaps the ApiClient's request method while it runs, so it must not share
    one with concurrent reads), HTTP through Ansible's open_url, SQL through psycopg.

    Reads are cached for the round, so two checks needing the same object read it once.
    """

    def __init__(self, api, exec_api=None, request_timeout: float = 10, open_url=None) -> None:
        self.api, self.exec_api, self.request_timeout = api, exec_api, request_timeout
        self._open_url = open_url
        self._cache: dict = {}
        self._lock = threading.Lock()
        self._pending: dict = {}

    # Kubernetes
    def _get_json(self, path: str, query: list | None = None):
        key = (path, tuple(query or ()))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            event = self._pending.get(key)
            owner = event is None
            if owner:
                event = self._pending[key] = threading.Event()
        if not owner:
            event.wait(self.request_timeout + 1)
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            # The first reader failed: read again for this check, which then reports its own error.
        try:
            value = self._fetch_json(path, query)
        except Exception:
            with self._lock:
                self._pending.pop(key, None)
            event.set()
            raise
        with self._lock:
            self._cache[key] = value
            self._pending.pop(key, None)
        event.set()
        return value

    def _fetch_json(self, path: str, query: list | None):
        from kubernetes.client.exceptions import ApiException
        try:
            response = self.api.call_api(path, "GET", query_params=list(query or []), header_params={"Accept": "application/json"},
                                         auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                                         _request_timeout=self.request_timeout)
        except ApiException as error:
            if error.status == 404 and _names_an_object(error):
                return None
            raise _api_error(error, path) from error
        except Exception as error:  # urllib3 errors: refused, timed out, TLS
            raise ReadError(f"cannot reach the API server for GET {path}: {error}",
                            "check the kubeconfig or K8S_AUTH_* options, and that the API server answers") from error
        return json.loads(response.data)

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict | None:
        return self._get_json(api_path(api_version, plural, namespace, name))

    def list(self, api_version: str, plural: str, namespace: str, label_selector: str | None = None) -> list[dict]:
        query = [("labelSelector", label_selector)] if label_selector else []
        answer = self._get_json(api_path(api_version, plural, namespace), query)
        return (answer or {}).get("items") or []

    def secret_keys(self, namespace: str, name: str) -> list[str] | None:
        """The names of the Secret's keys that hold a value; the values are dropped here."""
        secret = self._fetch_json(api_path("v1", "secrets", namespace, name), None)
        if secret is None:
            return None
        return sorted(k for k, v in (secret.get("data") or {}).items() if v)

    def exec(self, namespace: str, pod: str, container: str, command: list[str], timeout: float):
        from ansible_collections.homelab.flyte.plugins.module_utils.kube import exec_in_pod
        return exec_in_pod(self.exec_api or self.api, namespace, pod, container, command, timeout=timeout)

    def proxy_get(self, namespace: str, service: str, port: str, path: str) -> dict:
        """GET through the API server's service proxy, as `kubectl get --raw` would."""
        from kubernetes.client.exceptions import ApiException
        url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        try:
            response = self.api.call_api(url, "GET", auth_settings=["BearerToken"], _preload_content=False,
                                         _return_http_data_only=True, _request_timeout=self.request_timeout)
        except ApiException as error:
            return {"status": error.status, "body": error.body if isinstance(error.body, str) else (error.body or b"").decode("utf-8", "replace")}
        except Exception as error:  # noqa: BLE001
            return {"error": f"{type(error).__name__}: {error}"}
        return {"status": response.status, "body": response.data.decode("utf-8", "replace")}

    # HTTP
    def http_get(self, url: str, headers: dict | None = None, validate_certs: bool = True) -> dict:
        from urllib.error import HTTPError

        from ansible.module_utils.urls import open_url as ansible_open_url
        opener = self._open_url or ansible_open_url
        try:
            response = opener(url, headers=headers or {}, validate_certs=validate_certs, timeout=self.request_timeout,
                              follow_redirects="safe")
            return {"status": response.getcode(), "body": response.read().decode("utf-8", "replace")}
        except HTTPError as error:
            try:
                body = error.read().decode("utf-8", "replace")
            except Exception:  # noqa: BLE001
                body = ""
            return {"status": error.code, "body": body}
        except Exception as error:  # noqa: BLE001 - refused, DNS, TLS, timeout: all are the answer
            return {"error": f"{getattr(error, 'reason', None) or error}"}

    # SQL
    def sql_select_1(self, host: str, port: int, user: str, password: str | None, database: str, sslmode: str) -> None:
        if not HAS_PSYCOPG:
            raise ReadError("psycopg is not installed on the host running the module, so database.host cannot be used",
                            "pip install 'psycopg[binary]', or leave database.host empty to check through kubectl exec")
        connection = psycopg.connect(host=host, port=port, user=user, password=password, dbname=database, sslmode=sslmode,
                                     connect_timeout=max(1, int(self.request_timeout)))
        try:
            connection.execute("select 1").fetchone()
        finally:
            connection.close()


def _names_an_object(error) -> bool:
    """Whether a 404 says the object is absent (its Status names it), not that the API server lacks the resource type."""
    try:
        return bool((json.loads(error.body).get("details") or {}).get("name"))
    except Exception:  # noqa: BLE001
        return False


def _api_error(error, path: str) -> ReadError:
    try:
        message = json.loads(error.body).get("message")
    except Exception:  # noqa: BLE001
        message = None
    message = message or error.reason
    if error.status == 403:
        return ReadError(f"the API server forbids GET {path}: {message}",
                         "give the credentials the module uses get/list on pods, secrets, configmaps, clusters.postgresql.cnpg.io, "
                         "onepassworditems.onepassword.com, httproutes and grpcroutes in the namespaces checked "
                         "(kubectl auth can-i get <resource> -n <namespace>)")
    if error.status == 401:
        return ReadError(f"the API server does not accept the credentials: {message}", "check the kubeconfig or K8S_AUTH_* options")
    if error.status == 404:
        return ReadError(f"the API server does not serve {path.rsplit('/', 1)[0]}: {message}",
                         "is the CRD (or operator) installed? `kubectl api-resources` lists what the API server serves")
    return ReadError(f"GET {path} answered HTTP {error.status}: {message}", "")


def reader_factory(api, request_timeout: float):
    """A function giving each round a fresh Reader over copies of api (one for reads, one for exec)."""
    from kubernetes.client import ApiClient

    def client():
        configuration = copy.copy(api.configuration)
        # Every check may read at once: a pool smaller than that logs "Connection pool is full".
        configuration.connection_pool_maxsize = max(getattr(configuration, "connection_pool_maxsize", 0) or 0, 32)
        new = ApiClient(configuration)
        for header, value in getattr(api, "default_headers", {}).items():
            new.set_default_header(header, value)
        return new

    reads, execs = client(), client()
    return lambda: Reader(reads, execs, request_timeout=request_timeout)
