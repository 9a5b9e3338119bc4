"""The local platform behaves as a real cluster for what the collection relies on."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.dynamic.exceptions import NotFoundError

from conftest import run_playbook

PLAYBOOKS = "tests/integration/playbooks"


def test_deployment_with_wait_becomes_available(api, namespace):
    run = run_playbook(f"{PLAYBOOKS}/platform_deployment.yml", extra_vars={"test_namespace": namespace})
    assert run.rc == 0, run
    deployment = client.AppsV1Api(api).read_namespaced_deployment("probe", namespace)
    assert deployment.status.available_replicas == 3
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=probe").items
    assert {pod.spec.node_name for pod in pods} <= {"kwok-node-0", "kwok-node-1", "kwok-node-2"}
    assert all(pod.status.phase == "Running" for pod in pods)


def test_local_helm_chart_installs_with_wait_and_rerun_changes_nothing(api, namespace):
    first = run_playbook(f"{PLAYBOOKS}/platform_helm.yml", extra_vars={"test_namespace": namespace})
    assert first.rc == 0 and first.changed == 1, first
    assert client.AppsV1Api(api).read_namespaced_deployment("probe", namespace).status.ready_replicas == 2

    second = run_playbook(f"{PLAYBOOKS}/platform_helm.yml", extra_vars={"test_namespace": namespace})
    assert second.rc == 0 and second.changed == 0, second


def test_api_server_rejects_object_violating_real_crd_schema(k8s, namespace):
    run = run_playbook(f"{PLAYBOOKS}/platform_invalid_crd.yml", extra_vars={"test_namespace": namespace})
    assert run.rc != 0 and run.failed == 1, run
    assert "spec.instances" in run.output and "must be of type integer" in run.output, run
    clusters = k8s.resources.get(api_version="postgresql.cnpg.io/v1", kind="Cluster")
    with pytest.raises(NotFoundError):
        clusters.get(name="invalid", namespace=namespace)
