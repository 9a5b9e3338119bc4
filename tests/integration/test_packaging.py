"""The collection tarball: built from a clean export, free of test material, installable and documented.

The tarball is built the way a release is, from what git would commit (tracked and new files,
nothing ignored), with `ansible-galaxy collection build`. It is then installed with --no-deps
into an empty collections path (its dependencies come from the `ansible` community package of
the virtualenv, as Galaxy may be unreachable) and used from there only: ansible-doc on every
module and ansible-playbook --syntax-check on every playbook it ships.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from collection_copy import ansible_env, export_repo

REPO = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
# The list of what never ships; galaxy.yml's build_ignore is checked on top of it.
TEST_ONLY = ["tests", "bench", "molecule", ".ci", "scripts"]


def isolated_env(collections_path: Path) -> dict[str, str]:
    """An environment that finds homelab.flyte only in collections_path (the repository's ansible.cfg is not read)."""
    return ansible_env(ANSIBLE_COLLECTIONS_PATH=str(collections_path))


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    export = export_repo(tmp_path_factory.mktemp("export"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", str(dist), str(export)],
                   check=True, capture_output=True, env=isolated_env(dist))
    built = list(dist.glob("*.tar.gz"))
    assert [p.name for p in built] == [f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"]
    return built[0]


@pytest.fixture(scope="module")
def members(tarball) -> list[str]:
    with tarfile.open(tarball) as archive:
        return [m.name.removeprefix("./") for m in archive.getmembers()]


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory) -> Path:
    """A clean collections path holding only the tarball's homelab.flyte."""
    path = tmp_path_factory.mktemp("collections")
    result = subprocess.run(["ansible-galaxy", "collection", "install", str(tarball), "-p", str(path), "--no-deps"],
                            capture_output=True, text=True, check=False, env=isolated_env(path))
    assert result.returncode == 0, result.stdout + result.stderr
    root = path / "ansible_collections" / "homelab" / "flyte"
    assert (root / "MANIFEST.json").is_file()
    return path


@pytest.mark.parametrize("top", TEST_ONLY)
def test_test_material_is_not_shipped(members, top):
    assert not [m for m in members if m == top or m.startswith(top + "/")], f"{top}/ is in the tarball"


def test_every_build_ignore_entry_is_honoured(members):
    for pattern in GALAXY["build_ignore"]:
        if "*" in pattern:
            continue  # globs: the tarball itself, checked by the name test below
        assert not [m for m in members if m == pattern or m.startswith(pattern + "/")], pattern
    assert not [m for m in members if m.endswith(".tar.gz")]


def test_the_collection_content_is_shipped(members):
    wanted = ["MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml", "playbooks/site.yml",
              "meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt"]
    wanted += [f"plugins/modules/{m}.py" for m in MODULES]
    wanted += [str(p.relative_to(REPO)) for p in REPO.glob("roles/*/meta/argument_specs.yml")]
    wanted += [str(p.relative_to(REPO)) for p in (REPO / "plugins" / "module_utils").glob("*.py")]
    missing = [w for w in wanted if w not in members]
    assert not missing


def test_manifest_declares_the_dependencies(tarball):
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["dependencies"] == GALAXY["dependencies"]
    assert manifest["collection_info"]["version"] == GALAXY["version"]


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_of_every_module_from_the_installed_tarball(installed, module, tmp_path):
    result = subprocess.run(["ansible-doc", "--json", "-t", "module", f"homelab.flyte.{module}"], cwd=tmp_path,
                            capture_output=True, text=True, check=False, env=isolated_env(installed))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)[f"homelab.flyte.{module}"]
    # The documentation came from the installed copy, not from the work tree.
    assert Path(doc["doc"]["filename"]).resolve().is_relative_to(installed.resolve())
    assert doc["doc"]["short_description"]
    assert doc["doc"].get("options") is not None
    assert doc.get("examples")


def test_site_playbook_syntax_from_the_installed_tarball(installed, tmp_path):
    result = subprocess.run(["ansible-playbook", "homelab.flyte.site", "--syntax-check"], cwd=tmp_path,
                            capture_output=True, text=True, check=False, env=isolated_env(installed))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shipped_playbook_syntax_from_the_installed_tarball(installed, members, tmp_path):
    playbooks = sorted(m for m in members if re.fullmatch(r"playbooks/[^/]+\.ya?ml", m))
    assert "playbooks/site.yml" in playbooks
    for playbook in playbooks:
        name = "homelab.flyte." + Path(playbook).stem
        result = subprocess.run(["ansible-playbook", name, "--syntax-check"], cwd=tmp_path,
                                capture_output=True, text=True, check=False, env=isolated_env(installed))
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


# The execution environment's Python dependencies (meta/ee-requirements.txt) against the pins of
# requirements.txt and the imports of the collection's plugins.

def requirements(path: Path) -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    parsed = [Requirement(line) for line in lines if line]
    return {r.name.lower(): r for r in parsed}


def test_ee_requirements_use_the_pins_of_requirements_txt():
    pinned, ee = requirements(REPO / "requirements.txt"), requirements(REPO / "meta" / "ee-requirements.txt")
    for name, requirement in ee.items():
        if name in pinned:
            assert str(requirement) == str(pinned[name]), f"{name}: {requirement} in meta/ee-requirements.txt, {pinned[name]} in requirements.txt"
    for name in ("kubernetes", "psycopg", "onepasswordconnectsdk"):
        assert name in ee


def third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by the collection's plugins, with the files importing them."""
    found: dict[str, set[str]] = {}
    pattern = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w]*)[\w.]*\s+import|import\s+([A-Za-z_][\w]*))", re.MULTILINE)
    for path in (REPO / "plugins").rglob("*.py"):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            top = match.group(1) or match.group(2)
            if top in sys.stdlib_module_names or top in ("ansible", "ansible_collections", "__future__"):
                continue
            found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_of_the_plugins_is_an_ee_requirement():
    ee = requirements(REPO / "meta" / "ee-requirements.txt")
    # ansible-core's own requirements (PyYAML, Jinja2, cryptography, ...) are in every EE already.
    core = {Requirement(r).name.lower() for r in importlib.metadata.requires("ansible-core") or [] if "extra ==" not in r}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for top, files in third_party_imports().items():
        names = {d.lower() for d in distributions.get(top, [top])}
        if not names & (set(ee) | core):
            missing[top] = sorted(files)
    assert not missing, f"imported by the plugins but not in meta/ee-requirements.txt: {missing}"
