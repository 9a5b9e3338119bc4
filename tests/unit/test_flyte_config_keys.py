"""The key sets the collection ships (plugins/module_utils/flyte_config_keys.py) are the binaries' own.

When test_shipped_key_sets_are_current fails, ../shared/flyte-config-keys changed: run
scripts/gen_flyte_config_keys.py and commit plugins/module_utils/flyte_config_keys.py with it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import flyte_config_keys

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_flyte_config_keys.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_flyte_config_keys", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_generator()


@pytest.fixture(scope="module")
def upstream() -> dict[str, list[str]]:
    assert gen.KEYS_DIR.is_dir(), f"the binaries' key sets are not at {gen.KEYS_DIR} (../shared beside the checkout)"
    return {binary: json.loads((gen.KEYS_DIR / f"{binary}.json").read_text(encoding="utf-8"))
            for binary in gen.BINARIES}


def test_shipped_key_sets_are_current(upstream):
    shipped = (REPO / "plugins" / "module_utils" / "flyte_config_keys.py").read_text(encoding="utf-8")
    assert shipped == gen.generate(), "flyte_config_keys.py is stale: run scripts/gen_flyte_config_keys.py"


def test_check_mode_of_the_script_agrees(upstream):
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_mode_fails_on_a_stale_module(upstream, tmp_path):
    stale = tmp_path / "flyte_config_keys.py"
    stale.write_text(gen.generate().replace("        admin.endpoint\n", ""), encoding="utf-8")
    result = subprocess.run([sys.executable, str(SCRIPT), "--check", "--file", str(stale)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "-        admin.endpoint" not in result.stdout
    assert "+        admin.endpoint" in result.stdout and "is stale" in result.stderr


def test_every_binary_has_exactly_its_keys_lower_cased(upstream):
    binaries = {"flyteadmin", "datacatalog", "flytepropeller", "flytescheduler"}
    assert set(flyte_config_keys.KEYS) == set(upstream) == binaries
    for binary, keys in upstream.items():
        assert flyte_config_keys.KEYS[binary] == {key.lower() for key in keys}, binary
    assert flyte_config_keys.FLYTE_VERSION == "1.16.8"


def test_each_key_sits_in_one_group_that_names_exactly_its_binaries(upstream):
    seen = {}
    for names, keys in flyte_config_keys.GROUPS:
        for key in keys.split():
            assert key not in seen, key
            seen[key] = set(names)
    every_key = set().union(*map(set, upstream.values()))
    assert seen == {key: {b for b in upstream if key in upstream[b]} for key in every_key}
