"""AWX's Kubernetes credential gives a job K8S_AUTH_* variables and no kubeconfig: kubernetes.core's modules, its
lookup and helm work with those alone, against the local platform's real API server."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from conftest import REPO

K8S_AUTH_PROBE = """\
- name: Kubernetes access the way an AWX job has it
  hosts: cluster
  gather_facts: false
  tasks:
    - name: Read the namespace with kubernetes.core.k8s_info
      kubernetes.core.k8s_info:
        kind: Namespace
        name: "{{ probe_namespace }}"
      register: probe_info
      failed_when: probe_info.resources | length != 1
    - name: List namespaces with the kubernetes.core.k8s lookup
      ansible.builtin.assert:
        that: probe_namespace in query('kubernetes.core.k8s', api_version='v1', kind='Namespace') | map(attribute='metadata.name')
    - name: Write a ConfigMap with kubernetes.core.k8s
      kubernetes.core.k8s:
        definition:
          apiVersion: v1
          kind: ConfigMap
          metadata: {name: awx-probe, namespace: "{{ probe_namespace }}"}
          data: {written-by: kubernetes.core.k8s}
    - name: Run helm as the flyte role's preflight does
      ansible.builtin.command: helm version --short
      changed_when: false
    - name: Install a chart with kubernetes.core.helm, as the flyte role does
      kubernetes.core.helm:
        name: awx-probe
        chart_ref: "{{ probe_chart }}"
        release_namespace: "{{ probe_namespace }}"
        atomic: true
        wait: true
        timeout: 120s
        values: {replicas: 1}
"""


def kubectl(*args: str, kubeconfig: str) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, check=True).stdout


def test_kubernetes_core_and_helm_work_with_k8s_auth_env_only(tmp_path, kubeconfig):
    config = json.loads(Path(kubeconfig).read_text()) if Path(kubeconfig).read_text().lstrip().startswith("{") \
        else yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    ca_cert = tmp_path / "ca.crt"
    ca_cert.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    namespace = f"awx-auth-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace, kubeconfig=kubeconfig)
    try:
        kubectl("-n", namespace, "create", "serviceaccount", "awx", kubeconfig=kubeconfig)
        kubectl("create", "clusterrolebinding", f"{namespace}-awx", "--clusterrole=cluster-admin",
                f"--serviceaccount={namespace}:awx", kubeconfig=kubeconfig)
        token = kubectl("-n", namespace, "create", "token", "awx", "--duration=10m", kubeconfig=kubeconfig).strip()
        (tmp_path / "hosts.yml").write_text("cluster:\n  hosts:\n    cluster:\n      ansible_connection: local\n", encoding="utf-8")
        (tmp_path / "probe.yml").write_text(K8S_AUTH_PROBE, encoding="utf-8")
        (tmp_path / "home").mkdir()
        helm_dir = str(Path(shutil.which("helm")).parent)
        # What an AWX job's environment has: the credential's K8S_AUTH_* variables, no kubeconfig, a bare HOME.
        env = {"PATH": f"{Path(sys.executable).parent}:{helm_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
               "K8S_AUTH_HOST": cluster["server"], "K8S_AUTH_API_KEY": token, "K8S_AUTH_VERIFY_SSL": "True",
               "K8S_AUTH_SSL_CA_CERT": str(ca_cert), "ANSIBLE_NOCOLOR": "1"}
        result = subprocess.run(
            ["ansible-playbook", "-i", "hosts.yml", "probe.yml", "-e",
             json.dumps({"probe_namespace": namespace, "probe_chart": str(REPO / "tests/charts/platform-probe"),
                         "ansible_python_interpreter": sys.executable})],
            cwd=tmp_path, capture_output=True, text=True, check=False, env=env)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        # Read back with the platform's admin kubeconfig, not with the code under test.
        assert "written-by" in kubectl("-n", namespace, "get", "configmap", "awx-probe", "-o", "yaml", kubeconfig=kubeconfig)
        assert "owner=helm" in kubectl("-n", namespace, "get", "secrets", "--show-labels", kubeconfig=kubeconfig)
    finally:
        subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "delete", "clusterrolebinding", f"{namespace}-awx",
                        "--ignore-not-found"], capture_output=True, check=False)
        subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "delete", "namespace", namespace, "--wait=false"],
                       capture_output=True, check=False)
