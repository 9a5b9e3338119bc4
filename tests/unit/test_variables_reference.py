"""The role variables reference in README.md is generated from the roles' argument specs and kept in sync.

When test_readme_reference_is_current fails, a role's meta/argument_specs.yml changed: run
scripts/gen_variables_reference.py and commit README.md with it.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_variables_reference.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_variables_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_generator()


def readme_region() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split(gen.BEGIN, 1)[1].split(gen.END, 1)[0]


def test_readme_reference_is_current():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    wanted = gen.splice(readme, gen.generate())
    assert readme == wanted, "README.md's variables reference is stale: run scripts/gen_variables_reference.py"


def test_check_mode_of_the_script_agrees():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_option_of_every_role_is_a_row():
    region = readme_region()
    spec_files = sorted(REPO.glob("roles/*/meta/argument_specs.yml"))
    assert spec_files
    for spec_file in spec_files:
        role = spec_file.parents[1].name
        assert f"### `homelab.flyte.{role}`" in region
        options = yaml.safe_load(spec_file.read_text(encoding="utf-8"))["argument_specs"]["main"].get("options") or {}
        for name in options:
            assert re.search(rf"^\| `{re.escape(name)}` \|", region, re.MULTILINE), f"{role}: {name} has no row"


def test_rows_have_five_cells():
    # A pipe left unescaped in a default or a description would split a row into more cells.
    rows = [line for line in readme_region().splitlines() if line.startswith("| `")]
    assert rows
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == 5, row


def test_no_ansible_markup_is_left():
    assert not re.search(r"\b[OCVEIBUMLP]\([^)]*\)", readme_region())


@pytest.mark.parametrize(
    ("markup", "markdown"),
    [
        ("O(flyte_chart_source=repo) and O(flyte_namespace)", "`flyte_chart_source=repo` and `flyte_namespace`"),
        ("C(https://<host>/callback)", "`https://<host>/callback`"),
        ("V(cilium), E(OP_CONNECT_HOST), RV(fields)", "`cilium`, `OP_CONNECT_HOST`, `fields`"),
        ("I(never) B(always)", "*never* **always**"),
        ("U(https://flyte.org) L(Flyte, https://flyte.org)", "<https://flyte.org> [Flyte](https://flyte.org)"),
        ("M(kubernetes.core.helm)", "`kubernetes.core.helm`"),
        ("O(kubernetes.core.helm#module:chart_ref)", "`chart_ref`"),
        ("C(a|b) or c|d", "`a\\|b` or c\\|d"),
        ("C(uses `ticks`)", "`` uses `ticks` ``"),
        ("a <b> tag", "a &lt;b&gt; tag"),
        (["first paragraph", "second"], "first paragraph<br>second"),
    ],
)
def test_markup_rendering(markup, markdown):
    assert gen.render_markup(markup, "test") == markdown


def test_broken_markup_names_its_place():
    with pytest.raises(gen.MarkupError, match="roles/x option y"):
        gen.render_markup("C(unclosed", "roles/x option y")


@pytest.mark.parametrize(
    ("spec", "type_cell", "default_cell"),
    [
        ({"type": "str", "default": ""}, "str", '`""`'),
        ({"type": "list", "elements": "str", "default": ["a"]}, "list of str", '`["a"]`'),
        ({"type": "bool", "default": True}, "bool", "`true`"),
        ({"type": "str", "required": True}, "str (required)", "*required*"),
        ({"type": "str"}, "str", "*none*"),
        ({"type": "str", "no_log": True, "default": "{{ lookup('env', 'X') | default('') }}"},
         "str (secret, not logged)", "`{{ lookup('env', 'X') \\| default('') }}`"),
    ],
)
def test_type_and_default_cells(spec, type_cell, default_cell):
    assert gen.render_type(spec) == type_cell
    assert gen.render_default(spec) == default_cell


def test_splice_replaces_only_the_region():
    document = f"before\n{gen.BEGIN}\nold\n{gen.END}\nafter\n"
    assert gen.splice(document, "new") == f"before\n{gen.BEGIN}\nnew\n{gen.END}\nafter\n"
    with pytest.raises(ValueError):
        gen.splice("no markers here", "new")


def test_check_mode_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n{gen.BEGIN}\nold\n{gen.END}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(SCRIPT), "--check", "--file", str(stale)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "is stale" in result.stderr
    # Without --check, the script brings it up to date, and then --check passes.
    subprocess.run([sys.executable, str(SCRIPT), "--file", str(stale)], check=True)
    assert subprocess.run([sys.executable, str(SCRIPT), "--check", "--file", str(stale)], check=False).returncode == 0
