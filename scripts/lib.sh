# shellcheck shell=bash
# Shared by the scripts in this folder: where things live, and the environment every command runs in.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HOMELAB_FLYTE_CACHE=${HOMELAB_FLYTE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/homelab-flyte}
PYTHON=${PYTHON:-python3.11}
# The virtualenv is keyed by the Python version and the hash of requirements.txt, so a changed pin
# gets a fresh one and an unchanged one is reused by every clone on this machine.
VENV="$HOMELAB_FLYTE_CACHE/venv/$($PYTHON -c 'import sys; print("py%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)-$(sha256sum "$REPO/requirements.txt" | cut -c1-12)"
export ANSIBLE_CONFIG="$REPO/ansible.cfg"

say() { printf '\n== %s\n' "$*" >&2; }

activate() {
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  eval "$(python3 "$REPO/tests/platform/platform.py" env)"
}
