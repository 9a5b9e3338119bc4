"""Static facts of the flyte role that its integration tests cannot see on their own.

- The preflight renders the chart before the other roles publish their facts, with stand-ins of the same
  shape (flyte_preflight_facts in vars/main.yml); when a role changes what its fact holds, the stand-in
  must follow, or the preflight renders values the real run never sees.
- Names flyte-core fixes are not offered as variables.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "flyte"
# flyte_* variable: the role and the fact it stands for.
PUBLISHED = {"flyte_database": ("database", "database_connection"), "flyte_object_store": ("storage", "storage_flyte"),
             "flyte_oidc": ("authentik", "authentik_flyte")}


def read(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def shape(value):
    """The keys of a mapping, recursively; anything else (an empty mapping, a template of one) is a leaf."""
    return {key: shape(item) for key, item in value.items()} if isinstance(value, dict) and value else None


def published_fact(role: str, fact: str) -> dict:
    tasks = read(REPO / "roles" / role / "tasks" / "facts.yml")
    found = [task["ansible.builtin.set_fact"][fact] for task in tasks
             if fact in task.get("ansible.builtin.set_fact", {})]
    assert len(found) == 1, f"{role}: one set_fact of {fact} expected in tasks/facts.yml"
    return found[0]


@pytest.mark.parametrize("variable", sorted(PUBLISHED))
def test_the_preflight_stand_ins_have_the_shape_of_the_published_facts(variable):
    role, fact = PUBLISHED[variable]
    stand_in = read(ROLE / "vars" / "main.yml")["flyte_preflight_facts"][variable]
    assert shape(stand_in) == shape(published_fact(role, fact)), (
        f"roles/{role}/tasks/facts.yml publishes {fact} in another shape than flyte_preflight_facts.{variable} "
        "in roles/flyte/vars/main.yml: make them agree")


def test_the_preflight_stands_in_for_every_fact_the_values_template_reads():
    template = (ROLE / "templates" / "values.yml.j2").read_text(encoding="utf-8")
    for variable in ("flyte_database", "flyte_object_store", "flyte_secrets", "flyte_oidc"):
        if variable in template:
            assert variable in read(ROLE / "vars" / "main.yml")["flyte_preflight_facts"], variable


@pytest.mark.parametrize("name,value", [("flyte_admin_secret_name", "flyte-admin-secrets"),
                                        ("flyte_client_secret_name", "flyte-secret-auth")])
def test_secret_names_the_chart_fixes_are_not_variables(name, value):
    """flyte-core mounts flyte-admin-secrets in flyteadmin and flyte-secret-auth in the scheduler, whatever the values
    say."""
    specs = read(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    for entry_point, spec in specs.items():
        assert name not in (spec.get("options") or {}), entry_point
    assert name not in (read(ROLE / "defaults" / "main.yml") or {})
    assert read(ROLE / "vars" / "main.yml")[name] == value
    assert f"`{name}`" not in (REPO / "README.md").read_text(encoding="utf-8")
