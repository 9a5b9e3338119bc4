#!/usr/bin/env python
"""Generate the role variables reference from the roles' argument specs.

Reads the entry point ``main`` of every ``roles/*/meta/argument_specs.yml`` and writes one Markdown
table per role (variable, type, default, choices, description) between the markers
``<!-- BEGIN VARIABLES REFERENCE -->`` and ``<!-- END VARIABLES REFERENCE -->`` of README.md.
Ansible's documentation markup (O(), V(), C(), E(), I(), B(), U(), L(), M(), ...) is parsed with
antsibull-docs-parser and rendered as Markdown.

    scripts/gen_variables_reference.py            rewrite the region in README.md
    scripts/gen_variables_reference.py --check    exit 1 when README.md differs from a fresh generation
    scripts/gen_variables_reference.py --stdout   print the reference only

tests/unit/test_variables_reference.py fails when the committed reference is stale.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

import yaml
from antsibull_docs_parser import dom
from antsibull_docs_parser.parser import Context, parse

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN VARIABLES REFERENCE -->"
END = "<!-- END VARIABLES REFERENCE -->"
NAMESPACE = "homelab.flyte"
ENTRY_POINT = "main"


class MarkupError(ValueError):
    """An argument spec's text has documentation markup that does not parse."""


def code(text: str) -> str:
    """A Markdown code span holding text exactly, safe inside a table cell."""
    text = " ".join(str(text).split("\n"))
    fence = "`"
    while fence in text:
        fence += "`"
    padded = f" {text} " if text.startswith("`") or text.endswith("`") or (fence != "`") else text
    # GitHub splits table cells at every unescaped pipe, even inside code spans.
    return f"{fence}{padded}{fence}".replace("|", "\\|")


def plain(text: str) -> str:
    """Plain text for a table cell: no raw HTML, no cell breaks, no line breaks."""
    return " ".join(text.split("\n")).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_part(part: dom.AnyPart, where: str) -> str:  # pylint: disable=too-many-return-statements
    """One parsed markup element as Markdown."""
    if isinstance(part, dom.TextPart):
        return plain(part.text)
    if isinstance(part, dom.OptionNamePart):
        return code(part.name if part.value is None else f"{part.name}={part.value}")
    if isinstance(part, dom.CodePart):
        return code(part.text)
    if isinstance(part, dom.OptionValuePart):
        return code(part.value)
    if isinstance(part, dom.EnvVariablePart):
        return code(part.name)
    if isinstance(part, dom.ReturnValuePart):
        return code(part.name if part.value is None else f"{part.name}={part.value}")
    if isinstance(part, dom.ItalicPart):
        return f"*{plain(part.text)}*"
    if isinstance(part, dom.BoldPart):
        return f"**{plain(part.text)}**"
    if isinstance(part, dom.URLPart):
        return f"<{part.url}>"
    if isinstance(part, dom.LinkPart):
        return f"[{plain(part.text)}]({part.url})"
    if isinstance(part, dom.ModulePart):
        return code(part.fqcn)
    if isinstance(part, dom.PluginPart):
        return code(part.plugin.fqcn)
    if isinstance(part, dom.RSTRefPart):
        return plain(part.text)
    if isinstance(part, dom.HorizontalLinePart):
        return ""
    if isinstance(part, dom.ErrorPart):
        raise MarkupError(f"{where}: {part.message}")
    raise MarkupError(f"{where}: unsupported markup element {part!r}")


def render_markup(text: str | list[str], where: str) -> str:
    """Ansible documentation markup (a string or a list of paragraphs) as one table cell."""
    paragraphs = parse(text, Context(), errors="message", strict=True)
    return "<br>".join("".join(render_part(part, where) for part in paragraph).strip() for paragraph in paragraphs)


def render_value(value) -> str:
    """A default or a choice as it would be written in YAML, in a code span."""
    if isinstance(value, str):
        return code(value) if value else code('""')
    return code(json.dumps(value, separators=(", ", ": ")))


def render_type(spec: dict) -> str:
    kind = spec.get("type", "str")
    if kind == "list" and "elements" in spec:
        kind = f"list of {spec['elements']}"
    notes = (["required"] if spec.get("required") else []) + (["secret, not logged"] if spec.get("no_log") else [])
    return kind + (f" ({', '.join(notes)})" if notes else "")


def render_default(spec: dict) -> str:
    if "default" in spec:
        return render_value(spec["default"])
    return "*required*" if spec.get("required") else "*none*"


def role_section(role: str, spec_file: Path) -> str:
    """The reference of one role: its short description and a table of its variables."""
    specs = yaml.safe_load(spec_file.read_text(encoding="utf-8"))["argument_specs"]
    if ENTRY_POINT not in specs:
        raise KeyError(f"{spec_file.relative_to(REPO)} has no entry point {ENTRY_POINT!r}")
    entry = specs[ENTRY_POINT]
    where = f"{spec_file.relative_to(REPO)} ({ENTRY_POINT})"
    lines = [f"### `{NAMESPACE}.{role}`", ""]
    if entry.get("short_description"):
        lines += [render_markup(entry["short_description"], where).rstrip(".") + ".", ""]
    lines += ["| Variable | Type | Default | Choices | Description |", "| --- | --- | --- | --- | --- |"]
    for name, option in (entry.get("options") or {}).items():
        choices = ", ".join(render_value(choice) for choice in option.get("choices", []))
        description = render_markup(option.get("description", ""), f"{where} option {name}")
        lines.append(f"| {code(name)} | {render_type(option)} | {render_default(option)} | {choices} | {description} |")
    return "\n".join(lines)


def generate(repo: Path = REPO) -> str:
    """The whole reference, as it belongs between the markers."""
    spec_files = sorted(repo.glob("roles/*/meta/argument_specs.yml"))
    sections = [role_section(spec_file.parents[1].name, spec_file) for spec_file in spec_files]
    header = [
        "<!-- Generated from roles/*/meta/argument_specs.yml by scripts/gen_variables_reference.py: do not edit by hand. -->",
        "",
        "## Role variables",
        "",
        "Every variable of every role's `main` entry point, with its type and default. Defaults written as",
        "templates are computed from other variables when the role runs.",
    ]
    return "\n".join(header + [""] + "\n\n".join(sections).split("\n"))


def splice(document: str, reference: str) -> str:
    """The document with the region between the markers replaced by the reference."""
    if document.count(BEGIN) != 1 or document.count(END) != 1 or document.index(BEGIN) > document.index(END):
        raise ValueError(f"the document needs exactly one {BEGIN} followed by one {END}")
    head, rest = document.split(BEGIN)
    tail = rest.split(END)[1]
    return f"{head}{BEGIN}\n{reference}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--file", type=Path, default=REPO / "README.md", help="document with the markers (default: README.md)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when the document's reference is stale")
    mode.add_argument("--stdout", action="store_true", help="print the reference instead of writing it")
    args = parser.parse_args(argv)

    reference = generate()
    if args.stdout:
        sys.stdout.write(reference + "\n")
        return 0
    current = args.file.read_text(encoding="utf-8")
    wanted = splice(current, reference)
    if args.check:
        if current == wanted:
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True), str(args.file), "generated"))
        print(f"\n{args.file} is stale: run scripts/gen_variables_reference.py", file=sys.stderr)
        return 1
    if current != wanted:
        args.file.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
