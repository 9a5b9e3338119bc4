"""meta/runtime.yml's action group holds exactly the modules that share kubernetes.core's connection options."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def documented_fragments(module: Path) -> list[str]:
    source = module.read_text(encoding="utf-8")
    documentation = source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
    return yaml.safe_load(documentation).get("extends_documentation_fragment", [])


def test_the_k8s_group_is_the_modules_with_kubernetes_cores_auth_options():
    groups = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text(encoding="utf-8"))["action_groups"]
    assert set(groups) == {"k8s"}
    metadata = [entry for entry in groups["k8s"] if isinstance(entry, dict)]
    assert metadata == [{"metadata": {"extend_group": ["kubernetes.core.k8s"]}}]
    members = sorted(entry for entry in groups["k8s"] if isinstance(entry, str))
    with_auth = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py")
                       if p.stem != "__init__" and "kubernetes.core.k8s_auth_options" in documented_fragments(p))
    assert members == with_auth
