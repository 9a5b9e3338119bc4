"""The Kubernetes client the platform's Python simulations share (gateway_controller.py, cluster_network.py).

List-then-watch caches (informers) and plain HTTPS calls with the platform's admin certificate.
Only the standard library: tests/platform/platform.py starts the simulations before any virtualenv exists.
"""

from __future__ import annotations

import datetime
import http.client
import json
import ssl
import threading
import time
import urllib.parse


def log(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    print(f"{stamp} {message}", flush=True)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """A minimal client: one HTTPS connection per call."""

    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        parsed = urllib.parse.urlsplit(server)
        self.host, self.port = parsed.hostname, parsed.port or 443
        self.context = ssl.create_default_context(cafile=ca)
        self.context.load_cert_chain(cert, key)

    def connect(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
        connection = self.connect(30)
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            text = response.read()
            try:
                return response.status, json.loads(text) if text else {}
            except ValueError:
                return response.status, {"message": text.decode(errors="replace")}
        finally:
            connection.close()


def add_arguments(parser) -> None:
    """The command-line options every simulation takes: where the API server is, and its credentials."""
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)


def api_from(args) -> Api:
    return Api(args.server, args.ca, args.cert, args.key)


def key_of(obj: dict) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Informer(threading.Thread):
    """List, then watch one collection into cache[kind]; every change sets `changed`.

    `keep` maps each object to what the cache holds (for example a Secret without its values)."""

    def __init__(self, api: Api, kind: str, path: str, cache: dict, lock: threading.Lock, changed: threading.Event,
                 keep=None) -> None:
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.api, self.kind, self.path = api, kind, path
        self.cache, self.lock, self.changed = cache, lock, changed
        self.keep = keep or (lambda obj: obj)
        self.synced = threading.Event()
        cache.setdefault(kind, {})

    def run(self) -> None:
        while True:
            try:
                version = self.relist()
                while version:
                    version = self.watch(version)
            except Exception as error:  # noqa: BLE001 - any failure: list again
                log(f"{self.kind}: {error}; listing again")
                time.sleep(1)

    def relist(self) -> str:
        status, listing = self.api.call("GET", self.path)
        if status != 200:
            raise RuntimeError(f"list answered {status}: {listing.get('message')}")
        with self.lock:
            self.cache[self.kind] = {key_of(item): self.keep(item) for item in listing.get("items") or []}
        self.synced.set()
        self.changed.set()
        return listing["metadata"]["resourceVersion"]

    def watch(self, version: str) -> str | None:
        """Watch from version; the version to go on from, or None to list again (410 Gone)."""
        query = urllib.parse.urlencode({"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                                        "timeoutSeconds": "240"})
        connection = self.api.connect(300)
        try:
            connection.request("GET", f"{self.path}?{query}", headers={"Accept": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"watch answered {response.status}")
            while True:
                line = response.readline()
                if not line:
                    return version
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if event.get("type") == "BOOKMARK":
                    continue
                with self.lock:
                    if event["type"] == "DELETED":
                        self.cache[self.kind].pop(key_of(obj), None)
                    else:
                        self.cache[self.kind][key_of(obj)] = self.keep(obj)
                self.changed.set()
        finally:
            connection.close()


def start_informers(api: Api, paths: dict[str, str], keep: dict | None = None) -> tuple[dict, threading.Lock, threading.Event]:
    """One informer per kind; returns once every cache is filled: (cache, its lock, the change event)."""
    cache: dict = {}
    lock, changed = threading.Lock(), threading.Event()
    informers = [Informer(api, kind, path, cache, lock, changed, (keep or {}).get(kind)) for kind, path in paths.items()]
    for informer in informers:
        informer.start()
    for informer in informers:
        informer.synced.wait()
    return cache, lock, changed


def snapshot(cache: dict, lock: threading.Lock) -> dict:
    with lock:
        return {kind: dict(objects) for kind, objects in cache.items()}
