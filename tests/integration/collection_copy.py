"""The collection as a release sees it: what git would commit, copied out of the checkout, and an
environment for ansible-galaxy, ansible-builder and ansible-playbook that no setting of the caller's leaks into."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def export_repo(destination: Path) -> Path:
    """Copy what git would commit (tracked and untracked files, ignored ones left out) to destination."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() or source.is_symlink():  # files deleted in the work tree stay listed in the index
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return destination


def ansible_env(**extra: str) -> dict[str, str]:
    """The caller's environment without Ansible, Kubernetes, 1Password and AWX settings, colour off, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "K8S_AUTH_", "OP_CONNECT_", "CONTROLLER_", "TOWER_"))}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **extra)
    return env
