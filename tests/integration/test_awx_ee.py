"""The execution environment of execution-environment.yml: `ansible-builder create` writes a build context
that holds every dependency, and ansible-builder's own introspection script, run on the collection
installed from the tarball, finds them too. No container runtime here: the image is not built."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from collection_copy import ansible_env, export_repo
from conftest import REPO

GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))


def requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def ee_context(tmp_path_factory) -> Path:
    """The build context of execution-environment.yml, made as docs/awx.md says: tarball in dist/, then create."""
    source = export_repo(tmp_path_factory.mktemp("source"))
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", "dist"], cwd=source, check=True,
                   capture_output=True, env=ansible_env())
    context = tmp_path_factory.mktemp("context")
    result = subprocess.run(["ansible-builder", "create", "-f", "execution-environment.yml", "-c", str(context),
                             "--output-filename", "Containerfile"], cwd=source, capture_output=True, text=True,
                            check=False, env=ansible_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No matches" not in result.stdout + result.stderr, "additional_build_files found no collection tarball"
    return context


@pytest.fixture(scope="module")
def containerfile(ee_context) -> str:
    return (ee_context / "Containerfile").read_text(encoding="utf-8")


def stage(containerfile: str, name: str) -> str:
    """The instructions of one build stage of the Containerfile."""
    parts = re.split(r"^FROM ", containerfile, flags=re.MULTILINE)
    matches = [p for p in parts if re.match(rf"\S+ AS {name}\b", p)]
    assert len(matches) == 1, f"no single stage {name}"
    return matches[0]


def test_context_holds_every_python_requirement(ee_context):
    built = requirement_lines(ee_context / "_build" / "requirements.txt")
    wanted = requirement_lines(REPO / "meta" / "ee-requirements.txt")
    assert wanted and built == wanted
    for name in ("kubernetes", "psycopg", "onepasswordconnectsdk"):
        assert any(Requirement(line).name == name for line in built), name


def test_ee_pins_are_those_of_requirements_txt(containerfile):
    pins = {Requirement(line).name: str(Requirement(line)) for line in requirement_lines(REPO / "requirements.txt")}
    for line in requirement_lines(REPO / "meta" / "ee-requirements.txt"):
        requirement = Requirement(line)
        if requirement.name in pins:
            assert str(requirement) == pins[requirement.name]
    assert pins["ansible-core"] in containerfile, "the EE's ansible-core differs from requirements.txt's"


def test_context_holds_every_system_package(ee_context):
    built = requirement_lines(ee_context / "_build" / "bindep.txt")
    assert built == requirement_lines(REPO / "meta" / "ee-bindep.txt")
    assert {line.split()[0] for line in built} >= {"ca-certificates", "tar", "gzip"}


def test_context_holds_the_galaxy_requirements_of_galaxy_yml(ee_context):
    collections = yaml.safe_load((ee_context / "_build" / "requirements.yml").read_text(encoding="utf-8"))["collections"]
    assert {c["name"]: c["version"] for c in collections} == GALAXY["dependencies"]


def test_context_holds_the_collection_and_installs_it_in_the_galaxy_stage(ee_context, containerfile):
    tarballs = list((ee_context / "_build" / "homelab-flyte").glob("*.tar.gz"))
    assert [t.name for t in tarballs] == [f"homelab-flyte-{GALAXY['version']}.tar.gz"]
    galaxy = stage(containerfile, "galaxy")
    assert "COPY _build /build" in galaxy
    install = [line for line in galaxy.splitlines() if "/build/homelab-flyte/homelab-flyte-*.tar.gz" in line]
    assert install and "ansible-galaxy collection install --offline" in install[0]
    # After the Galaxy requirements, so that --offline finds kubernetes.core and community.general.
    assert galaxy.index("-r requirements.yml --collections-path") < galaxy.index(install[0])


def test_containerfile_installs_a_pinned_verified_helm_in_the_final_image(containerfile):
    final = stage(containerfile, "final")
    steps = [line for line in final.splitlines() if "helm" in line and line.startswith("RUN ")]
    assert len(steps) == 1
    step = steps[0]
    versions = dict(line.split("=", 1) for line in (REPO / "tests/platform/versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    # The helm the local platform's tests run is the helm the EE ships.
    assert f"helm_version={versions['HELM_VERSION']};" in step
    sums = dict(re.findall(r"helm_arch=(amd64|arm64); helm_sha256=([0-9a-f]{64});", step))
    assert set(sums) == {"amd64", "arm64"}
    assert re.search(r'echo "\$helm_sha256  /tmp/helm.tar.gz" \| sha256sum -c -;', step)
    assert step.index("sha256sum -c") < step.index("tar -xzf") < step.index("install -m 0755")
    assert "/usr/local/bin/helm" in step and step.rstrip().endswith("helm version --short")
    assert "ARG HELM_MIRROR=https://get.helm.sh" in final
    # Installed as root, before the image switches to its unprivileged user.
    assert final.index(step) < final.index("USER 1000")


def test_builder_introspection_finds_the_collections_dependencies(ee_context, tmp_path):
    """Run ansible-builder's own introspect.py, as the builder stage does, on the collection installed from the tarball."""
    tarball = next((ee_context / "_build" / "homelab-flyte").glob("*.tar.gz"))
    subprocess.run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(tmp_path), str(tarball)],
                   check=True, capture_output=True, env=ansible_env(ANSIBLE_COLLECTIONS_PATH=str(tmp_path)))
    pip, bindep = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    subprocess.run([sys.executable, str(ee_context / "_build" / "scripts" / "introspect.py"), "introspect",
                    f"--write-pip={pip}", f"--write-bindep={bindep}", str(tmp_path)], check=True, capture_output=True)
    found_pip = [line.split("  #")[0] for line in pip.read_text().splitlines() if line.endswith("# from collection homelab.flyte")]
    found_sys = [line.split("  #")[0] for line in bindep.read_text().splitlines() if line.endswith("# from collection homelab.flyte")]
    assert found_pip == requirement_lines(REPO / "meta" / "ee-requirements.txt")
    assert found_sys == requirement_lines(REPO / "meta" / "ee-bindep.txt")
