# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes access for this collection's modules, on kubernetes.core's client and auth options.

Modules add AUTH_ARG_SPEC to their argument spec and `kubernetes.core.k8s_auth_options` to their
documentation, so kubeconfig, context, K8S_AUTH_* environment variables (as AWX injects them) and
in-cluster credentials work exactly as in kubernetes.core's own modules.
"""

from __future__ import annotations

import copy
import json
import time

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client

try:
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream
except ImportError:  # kubernetes.core's client reports the missing library itself
    pass


def auth_argument_spec() -> dict:
    """A fresh copy of kubernetes.core's authentication options, to extend with a module's own."""
    return copy.deepcopy(AUTH_ARG_SPEC)


def api_client(module):
    """The kubernetes ApiClient for the module's authentication options."""
    return get_api_client(module).client.client


def dynamic_client(module):
    """The kubernetes DynamicClient for the module's authentication options."""
    return get_api_client(module).client


def exec_in_pod(api, namespace: str, pod: str, container: str, command: list[str],
                timeout: float = 60) -> tuple[int, str, str]:
    """Run a command in a container through the API server, as `kubectl exec` does.

    Returns (exit code, stdout, stderr); the exit code comes from the API server's status channel.
    No stdin: the Python client cannot half-close it, so input goes in the command's arguments.
    """
    response = stream(CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace, container=container,
                      command=command, stdin=False, stdout=True, stderr=True, tty=False,
                      _preload_content=False, _request_timeout=timeout)
    out, err = [], []
    while response.is_open():
        response.update(timeout=1)
        if response.peek_stdout():
            out.append(response.read_stdout())
        if response.peek_stderr():
            err.append(response.read_stderr())
    status = json.loads(response.read_channel(3) or "{}")
    response.close()
    if status.get("status") == "Success":
        return 0, "".join(out), "".join(err)
    causes = (status.get("details") or {}).get("causes") or []
    exit_code = next((int(c["message"]) for c in causes if c.get("reason") == "ExitCode"), 1)
    return exit_code, "".join(out), "".join(err) or status.get("message", "")


def exec_in_pod_streaming(api, namespace: str, pod: str, container: str, command: list[str], *,
                          sink=None, source: str | None = None, timeout: float = 3600,
                          chunk: int = 256 * 1024) -> tuple[int, str]:
    """Run a command in a container with binary stdout passed to `sink(bytes)` as it arrives, and the file
    `source` (when given) sent as its stdin; returns (exit code, stderr).

    Unlike exec_in_pod, nothing is held in memory: a dump of any size streams to disk. stdin is sent
    from a thread while this one reads, so a command that writes while it reads cannot stall the
    stream; it is half-closed afterwards where the API server speaks v5.channel.k8s.io, and commands
    should not depend on that (read a known number of bytes, e.g. with head -c).
    """
    import threading  # pylint: disable=import-outside-toplevel
    from kubernetes.stream import ws_client  # pylint: disable=import-outside-toplevel

    response = stream(CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace, container=container,
                      command=command, stdin=source is not None, stdout=True, stderr=True, tty=False,
                      _preload_content=False, binary=True, _request_timeout=timeout)
    # The client also copies every frame into a buffer for read_all(), which this never calls.
    if hasattr(ws_client, "_IgnoredIO"):
        response._all = ws_client._IgnoredIO()  # pylint: disable=protected-access
    failure = []

    def send():
        try:
            with open(source, "rb") as handle:
                for block in iter(lambda: handle.read(chunk), b""):
                    response.write_stdin(block)
            if hasattr(response, "close_channel"):
                response.close_channel(0)
        except Exception as error:  # noqa: BLE001 - reported after the command ends
            failure.append(error)

    sender = threading.Thread(target=send, daemon=True) if source is not None else None
    if sender:
        sender.start()
    err = []
    deadline = time.monotonic() + timeout
    while response.is_open():
        if time.monotonic() > deadline:
            response.close()
            raise TimeoutError(f"{command[0]} in pod {namespace}/{pod} did not finish within {timeout:.0f}s")
        response.update(timeout=1)
        out = response.read_channel(1)
        if out and sink is not None:
            sink(out)
        error_bytes = response.read_channel(2)
        if error_bytes:
            err.append(error_bytes)
    if sender:
        sender.join(timeout=5)
    status_raw = response.read_channel(3) or b"{}"
    response.close()
    stderr = b"".join(err).decode("utf-8", "replace")
    status = json.loads(status_raw)
    if failure and status.get("status") == "Success":
        raise failure[0]
    if status.get("status") == "Success":
        return 0, stderr
    causes = (status.get("details") or {}).get("causes") or []
    exit_code = next((int(c["message"]) for c in causes if c.get("reason") == "ExitCode"), 1)
    return exit_code, stderr or status.get("message", "")
