"""module_defaults through the action group of meta/runtime.yml: one entry for group/homelab.flyte.k8s, which
extends kubernetes.core's k8s group, gives the collection's Kubernetes modules and kubernetes.core's their
kubeconfig, with no KUBECONFIG, K8S_AUTH_* or ~/.kube/config to fall back on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PLAY = """\
- name: The kubeconfig comes from module_defaults alone
  hosts: localhost
  gather_facts: false
  module_defaults:
    {group}:
      kubeconfig: "{{{{ group_kubeconfig }}}}"
  tasks:
    - name: Take the lock in check mode (reads the Lease, writes nothing)
      homelab.flyte.flyte_lock:
        namespace: default
        holder: action-group-test
    - name: Read a namespace with kubernetes.core
      kubernetes.core.k8s_info:
        kind: Namespace
        name: default
"""


def test_module_defaults_of_the_group_reach_the_collections_and_kubernetes_cores_modules(kubeconfig, tmp_path):
    group = "group/homelab.flyte.k8s"
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(group=group), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K8S_AUTH_", "KUBECONFIG"))}
    # No ~/.kube/config either: a bare HOME.
    (tmp_path / "home").mkdir()
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), HOME=str(tmp_path / "home"))

    def run(play: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["ansible-playbook", "--check", "-i", "localhost,", "-c", "local", str(play),
                               "-e", json.dumps({"group_kubeconfig": kubeconfig, "ansible_python_interpreter": sys.executable})],
                              cwd=REPO, env=env, capture_output=True, text=True, check=False)

    with_group = run(playbook)
    assert with_group.returncode == 0, with_group.stdout + with_group.stderr
    assert "ok=2" in with_group.stdout
    # The control: the same defaults for another module only, and the tasks find no cluster.
    without = tmp_path / "without.yml"
    without.write_text(PLAY.format(group=group).replace(f"    {group}:", "    kubernetes.core.helm_info:"), encoding="utf-8")
    control = run(without)
    assert control.returncode != 0 and "Could not create API client" in control.stdout, control.stdout
