"""meta/runtime.yml's action groups hold exactly the modules that share kubernetes.core's connection options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Our group, the kubernetes.core group it extends, and the doc fragment of the options its members share.
GROUPS = {"k8s": ("kubernetes.core.k8s", "kubernetes.core.k8s_auth_options"),
          "helm": ("kubernetes.core.helm", "kubernetes.core.helm_common_options")}


def documented_fragments(module: Path) -> list[str]:
    source = module.read_text(encoding="utf-8")
    documentation = source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
    return yaml.safe_load(documentation).get("extends_documentation_fragment", [])


def action_groups() -> dict:
    return yaml.safe_load((REPO / "meta" / "runtime.yml").read_text(encoding="utf-8"))["action_groups"]


def test_there_is_one_group_per_shared_set_of_connection_options():
    assert set(action_groups()) == set(GROUPS)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_group_is_the_modules_with_its_connection_options(group):
    extended, fragment = GROUPS[group]
    entries = action_groups()[group]
    assert [entry for entry in entries if isinstance(entry, dict)] == [{"metadata": {"extend_group": [extended]}}]
    members = sorted(entry for entry in entries if isinstance(entry, str))
    with_options = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py")
                          if p.stem != "__init__" and fragment in documented_fragments(p))
    assert members == with_options
