# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Helm values keys a new chart version no longer has: pure functions over plain data.

A chart's values.yaml is the list of keys its templates read. A key the user (or the collection)
sets that the chart does not read is silently ignored by helm, unless the chart has a schema. So
before an upgrade, every key path that will be given to the new chart is walked down the new
chart's values.yaml and, where known, the installed chart's:

* its first segment is missing from the new chart's values: refused (a component the chart dropped
  or renamed, such as flyte-core 1.16 renaming flyteagent to flyteconnector);
* it is in the installed chart's values but not in the new chart's: refused (a key removed or renamed
  deeper down);
* it walks into a new value that is a scalar or a list where the installed chart had a mapping:
  refused (a changed type; a scalar or list default that was one before is simply replaced);
* otherwise accepted: below an empty or missing mapping of the installed chart lie free-form
  values (Flyte's configuration sections, for one), which the chart passes on as they are.
"""

from __future__ import annotations

import base64
import gzip
import json

# Renames of flyte-core's top-level values, by the chart version that made them: hints only.
KNOWN_RENAMES = {"flyteagent": "flyteconnector"}


class Missing:  # pylint: disable=too-few-public-methods
    """A path segment a values tree does not have."""


MISSING = Missing()


def leaf_paths(values, prefix=()):
    """Every key path of a values tree down to its leaves (scalars, lists, empty mappings), in order."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaf_paths(value, prefix + (str(key),))
    elif prefix:
        yield prefix


def lookup(tree, path):
    """(value at path or MISSING, the longest prefix that exists)."""
    node = tree
    for depth, segment in enumerate(path):
        if not isinstance(node, dict) or segment not in node:
            return MISSING, path[:depth]
        node = node[segment]
    return node, path


def dotted(path):
    return ".".join(path)


def has_path(tree, path):
    value, _found = lookup(tree, path)
    return value is not MISSING


def judge(path, new, old=None):
    """None when the new chart reads `path`, else (the first missing or changed segment's path, reason)."""
    if path[0] not in new:
        return path[:1], "missing"
    node_new, node_old = new, old
    for depth, segment in enumerate(path):
        if node_new is None:
            return None  # a null default: whatever is set below is passed on as it is
        if not isinstance(node_new, dict):
            # A scalar or list default is replaced by what is set (helm merges only mappings), unless the
            # installed chart had a mapping here: then the new chart reads something else at this place.
            if isinstance(node_old, dict):
                return path[:depth], "type"
            return None
        if segment not in node_new:
            if isinstance(node_old, dict) and segment in node_old:
                return path[:depth + 1], "removed"
            return None  # free-form below a mapping the chart passes on
        node_new = node_new[segment]
        node_old = node_old.get(segment, MISSING) if isinstance(node_old, dict) else MISSING
    return None


def replacement_hint(missing, new, old=None):
    """A likely new name for a missing segment: a known rename, or a sibling key the new chart added."""
    key, parent = missing[-1], missing[:-1]
    if not parent and key in KNOWN_RENAMES and KNOWN_RENAMES[key] in new:
        return dotted((KNOWN_RENAMES[key],))
    if old is None:
        return None
    siblings_new, _found = lookup(new, parent)
    siblings_old, _found = lookup(old, parent)
    if isinstance(siblings_new, dict) and isinstance(siblings_old, dict):
        added = [name for name in siblings_new if name not in siblings_old]
        if len(added) == 1:
            return dotted(parent + (added[0],))
    return None


def incompatible_keys(values, new, old=None, overrides=None):
    """Every key path of `values` the new chart would ignore: [{key, missing, reason, set_by, replacement}].

    values: what will be given to the new chart (the collection's values with the overrides merged).
    new/old: the new and (when known) installed chart's default values. overrides: to say who set a key.
    """
    found = []
    for path in leaf_paths(values):
        verdict = judge(path, new, old)
        if verdict is None:
            continue
        missing, reason = verdict
        found.append({
            "key": dotted(path),
            "missing": dotted(missing),
            "reason": reason,
            "set_by": "flyte_values_overrides" if overrides and has_path(overrides, path) else "the flyte role",
            "replacement": replacement_hint(missing, new, old) if reason != "type" else None,
        })
    return found


def describe(entry, new_chart):
    """One line naming the key, why it is refused, and what to do."""
    if entry["reason"] == "type":
        why = f"the new chart ({new_chart}) has a scalar or list at {entry['missing']} where a mapping was"
    elif entry["reason"] == "removed":
        why = f"the new chart ({new_chart}) no longer has {entry['missing']}"
    else:
        why = f"the new chart ({new_chart}) has no top-level key {entry['missing']}"
    hint = f"; renamed to {entry['replacement']}?" if entry.get("replacement") else ""
    return f"{entry['key']} (set by {entry['set_by']}): {why}{hint}"


def decode_release(data):
    """The Helm release JSON from the `release` field of a Helm storage Secret's data (as the API returns it)."""
    raw = base64.b64decode(base64.b64decode(data))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def latest_release(secrets):
    """Of Helm storage Secrets [{labels, data}], the release JSON of the newest deployed revision (or None)."""
    deployed = [secret for secret in secrets if (secret.get("labels") or {}).get("status") == "deployed"]
    if not deployed:
        return None
    newest = max(deployed, key=lambda secret: int((secret.get("labels") or {}).get("version", "0")))
    return decode_release(newest["data"]["release"])
