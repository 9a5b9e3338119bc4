"""Validate Authentik blueprints against Authentik's own JSON schema, for the tests.

Blueprints use custom YAML tags (``!Find``, ``!KeyOf``, ``!Env``, ...) that Authentik resolves when it
applies them, with its database and the worker's environment. Offline they stay unresolved:

* ``load`` reads a blueprint with a SafeLoader that knows Authentik's 14 tags (an unknown tag is a
  load error, as in Authentik) and turns each tagged node into a ``Tag(name, args)``.
* ``problems`` validates the document with the draft-07 validator of the schema, extended so that a
  tag passes the ``type`` keyword when one of the JSON types it can resolve to is allowed (``!Find``
  gives a primary key or null, ``!Format`` a string, ...), ``!If`` is checked branch by branch, and
  value keywords (enum, format, minLength, ...) wait for the resolved value. So ``redirect_uris: !Format
  [...]`` still fails (a string is never an array) while ``provider: !KeyOf app`` passes. Format
  assertions are on: the schema marks foreign keys ``format: uuid``, so a literal flow slug fails.
* It adds what the schema cannot say: ``!KeyOf`` must name the ``id`` of an earlier entry; ``!Env NAME,
  default`` is no default (Authentik reads one odd name); a provider, application or scope mapping must carry the
  fields Authentik needs to create it; ``attrs``/``identifiers`` keys must be fields of the model (the
  schema allows any key and Authentik silently drops unknown ones, so a misspelt ``redirect_uri``
  would otherwise vanish without a trace).

The schema is read from ``../shared`` next to the repository, as the project's CI provides it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from jsonschema import FormatChecker, ValidationError, validators

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "authentik-blueprint.schema.json"

ANY = None  # the tag may resolve to any JSON type
TAG_TYPES: dict[str, set[str] | None] = {
    "!KeyOf": {"integer", "string"},  # primary key: int for providers, UUID for most other models
    "!Find": {"integer", "string", "null"},  # primary key of the first match, or None
    "!FindObject": {"object", "null"},
    "!Format": {"string"},
    "!Condition": {"boolean"},
    "!Env": {"string", "null"},  # plus the type of a default: !Env [NAME, default]
    "!File": {"string", "null"},
    "!Enumerate": {"array", "object"},
    "!Index": {"integer", "string"},
    "!If": ANY,  # validated branch by branch instead
    "!Context": ANY, "!Value": ANY, "!AtIndex": ANY, "!ParseJSON": ANY,
}
# Fields Authentik's serializers need to create these objects (the schema marks none required).
REQUIRED_ON_CREATE = {
    "authentik_providers_oauth2.oauth2provider": ("name", "authorization_flow", "invalidation_flow"),
    "authentik_core.application": ("name", "slug"),
    "authentik_providers_oauth2.scopemapping": ("name", "scope_name", "expression"),
}


@dataclass(frozen=True)
class Tag:
    """An unresolved Authentik tag: ``!Env X`` is ``Tag("!Env", "X")``, ``!Find [m, [k, v]]`` is ``Tag("!Find", ["m", ["k", "v"]])``."""

    name: str
    args: Any

    def types(self) -> set[str] | None:
        if self.name in ("!Env", "!File", "!Context") and isinstance(self.args, list) and len(self.args) == 2:
            default = json_types(self.args[1])
            return ANY if default is ANY or TAG_TYPES[self.name] is ANY else TAG_TYPES[self.name] | default
        return TAG_TYPES[self.name]

    def branches(self) -> list[Any]:
        """The values an ``!If [condition, a, b]`` may take."""
        return list(self.args[1:3]) if len(self.args) == 3 else [True, False]


def json_types(value: Any) -> set[str] | None:
    if isinstance(value, Tag):
        return value.types()
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    names = {type(None): "null", float: "number", str: "string", list: "array", dict: "object"}
    return {names.get(type(value), type(value).__name__)}


class BlueprintLoader(yaml.SafeLoader):
    """SafeLoader with Authentik's tags, kept unresolved as Tag objects."""


def _construct_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.ScalarNode):
        return Tag(node.tag, loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return Tag(node.tag, loader.construct_sequence(node, deep=True))
    return Tag(node.tag, loader.construct_mapping(node, deep=True))


for _tag in TAG_TYPES:
    BlueprintLoader.add_constructor(_tag, _construct_tag)


def load(text: str) -> Any:
    return yaml.load(text, Loader=BlueprintLoader)  # noqa: S506 - a SafeLoader subclass


def load_schema(path: Path = SCHEMA_PATH) -> dict | None:
    """The schema, or None when this machine does not have it."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _tag_aware_validator(schema: dict):
    base = validators.validator_for(schema)  # draft-07, from "$schema"
    base.check_schema(schema)
    any_of = base.VALIDATORS["anyOf"]

    def wrap(keyword, check):
        def validate(validator, value, instance, subschema):
            if not isinstance(instance, Tag):
                yield from check(validator, value, instance, subschema)
            elif instance.name == "!If":
                for branch in instance.branches():
                    yield from validate(validator, value, branch, subschema)
            elif keyword == "type":
                wanted = {value} if isinstance(value, str) else set(value)
                possible = instance.types()
                if possible is not ANY and not possible & (wanted | ({"integer"} if "number" in wanted else set())):
                    yield ValidationError(f"{instance.name} {instance.args!r} resolves to {'/'.join(sorted(possible))}, "
                                          f"the schema expects {'/'.join(sorted(wanted))}")
            elif keyword in ("$ref", "allOf", "anyOf"):
                yield from check(validator, value, instance, subschema)
            elif keyword == "oneOf":  # a tag may well match several branches
                yield from any_of(validator, value, instance, subschema)
            # any other keyword constrains the resolved value, unknown until Authentik applies the blueprint
        return validate

    extended = validators.extend(base, {keyword: wrap(keyword, check) for keyword, check in base.VALIDATORS.items()})
    return extended(schema, format_checker=FormatChecker())


def _path(error: ValidationError) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _explain(error: ValidationError, models: dict[str, int]) -> Iterator[str]:
    """The messages that matter from an error, picking the relevant branch of anyOf/oneOf."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        yield f"{_path(error)}: {error.message}"
        return
    model = error.instance.get("model") if isinstance(error.instance, dict) else None
    if error.validator == "oneOf" and isinstance(model, str):  # a blueprint entry: its model picks the branch
        if model not in models:
            yield f"{_path(error)}.model: unknown model {model!r}"
            return
        branch = models[model]
    else:  # prefer a branch whose top-level type fits the instance
        misfits = {e.relative_schema_path[0] for e in error.context if e.validator == "type" and not e.relative_path}
        branch = next((e.relative_schema_path[0] for e in error.context if e.relative_schema_path[0] not in misfits),
                      error.context[0].relative_schema_path[0])
    for sub in error.context:
        if sub.relative_schema_path[0] == branch:
            yield from _explain(sub, models)


def _walk(value: Any) -> Iterator[Any]:
    yield value
    children = value.args if isinstance(value, Tag) else value
    if isinstance(children, dict):
        children = list(children.values())
    if isinstance(children, list):
        for child in children:
            yield from _walk(child)


def _lint(doc: dict, schema: dict) -> Iterator[str]:
    if doc.get("version", 1) != 1:
        yield f"$.version: Authentik only applies version 1, got {doc.get('version')!r}"
    entries = doc.get("entries")
    ids: set[str] = set()
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        where = f"$.entries[{i}]"
        for node in _walk(entry):
            if isinstance(node, Tag) and node.name == "!KeyOf" and node.args not in ids:
                yield f"{where}: !KeyOf {node.args} names no earlier entry's id (known: {sorted(ids) or 'none'})"
            if isinstance(node, Tag) and node.name in ("!Env", "!File", "!Context") and ", " in str(node.args):
                yield f"{where}: {node.name} {node.args} is read as one name; a default needs {node.name} [name, default]"
        if isinstance(entry.get("id"), str):
            ids.add(entry["id"])
        model = entry.get("model") if isinstance(entry.get("model"), str) else ""
        attrs, identifiers = (entry.get(part) if isinstance(entry.get(part), dict) else {} for part in ("attrs", "identifiers"))
        if entry.get("state", "present") != "absent":
            missing = [f for f in REQUIRED_ON_CREATE.get(model, ()) if f not in attrs and f not in identifiers]
            if missing:
                yield f"{where}: {model} needs {', '.join(missing)} to be created"
        fields = schema["$defs"].get(f"model_{model}", {}).get("properties")
        for part, keys in (("attrs", attrs), ("identifiers", identifiers)):
            for key in keys if fields else ():
                if key not in fields and key != "pk":
                    yield f"{where}.{part}.{key}: not a field of {model} (Authentik would drop it silently)"


def problems(blueprint: str | dict, schema: dict) -> list[str]:
    """Everything wrong with a blueprint (YAML text or loaded document); empty when it is valid."""
    doc = load(blueprint) if isinstance(blueprint, str) else blueprint
    if not isinstance(doc, dict):
        return [f"$: a blueprint is a mapping, got {type(doc).__name__}"]
    models = {branch["properties"]["model"]["const"]: i for i, branch in enumerate(schema["$defs"]["blueprint_entry"]["oneOf"])}
    found = [message for error in _tag_aware_validator(schema).iter_errors(doc) for message in _explain(error, models)]
    return found + list(_lint(doc, schema))
