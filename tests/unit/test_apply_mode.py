"""Every object a role or playbook writes goes through server-side apply under one field manager.

The apply options are written out on each task (kubernetes.core has no way for a role to set them once),
so this test is what keeps them from drifting: a new write task without them, or with another field
manager, fails here."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"field_manager": "homelab.flyte", "force_conflicts": True}
# Creates a missing Namespace and leaves an existing one alone: see roles/namespace/tasks/main.yml.
CREATE_ONLY = {("roles/namespace/tasks/main.yml", "Ensure namespace {{ namespace_name }}")}


def tasks(node):
    """Every task of a task file or playbook, blocks and plays opened."""
    if isinstance(node, list):
        for item in node:
            yield from tasks(item)
    elif isinstance(node, dict):
        if "kubernetes.core.k8s" in node:
            yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            yield from tasks(node.get(key))


def writes():
    for path in sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml")]):
        for task in tasks(yaml.safe_load(path.read_text())):
            options = task["kubernetes.core.k8s"]
            if options.get("state", "present") == "present":
                yield str(path.relative_to(REPO)), task.get("name"), options


def test_every_write_is_a_server_side_apply_under_the_collections_field_manager():
    found = list(writes())
    assert len(found) >= 15  # the walk reaches the tasks (a broken walk would find none and pass)
    wrong = [(path, name) for path, name, options in found if (path, name) not in CREATE_ONLY
             and (options.get("apply") is not True or options.get("server_side_apply") != EXPECTED)]
    assert wrong == []


def test_the_create_only_exception_is_still_there_and_not_an_apply():
    found = {(path, name): options for path, name, options in writes()}
    for key in CREATE_ONLY:
        assert key in found and "server_side_apply" not in found[key]
