# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strict keys: every key of every Flyte config file flyte-core renders must be one its binary accepts.

A Flyte binary ignores a key it does not know (its loader, viper, only warns under strict validation),
so a misspelt key in the values silently leaves a setting at its default. The flyte role's preflight
renders the chart and hands the manifests to ``unknown_config_keys``, which checks each config file of
the ConfigMaps in READERS against the key sets of flyte_config_keys (the keys the v1.16.8 binaries
accept), case-insensitively. A listed key is a leaf: what lies below it is data of a map-typed key
(``plugins.k8s.default-env-vars``, ``cluster_resources.templateData``, ...), or a value of the wrong
type, which is not a key question. ``x[]`` in a path is a list of objects.
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core, on the controller that runs the filter, requires PyYAML
    yaml = None

from ansible_collections.homelab.flyte.plugins.module_utils.flyte_config_keys import KEYS

# The Flyte ConfigMaps of flyte-core 1.16.8 and the binaries that load them: the --config flags and
# the config volumes of the chart's Deployments (templates/*/deployment.yaml, propeller/webhook.yaml).
READERS = {
    "flyte-admin-base-config": (
        ("flyteadmin", "Deployment flyteadmin (serve, and its run-migrations, seed-projects and generate-secrets "
                       "init containers)"),),
    "flyte-admin-clusters-config": (
        ("flyteadmin", "Deployment flyteadmin (serve, and its sync-cluster-resources init container)"),),
    "flyte-clusterresourcesync-config": (
        ("flyteadmin", "Deployment syncresources (flyteadmin clusterresource run)"),),
    "datacatalog-config": (
        ("datacatalog", "Deployment datacatalog (serve, and its run-migrations init container)"),),
    "flyte-propeller-config": (
        ("flytepropeller", "Deployments flytepropeller and flyte-pod-webhook"),),
    "flyte-scheduler-config": (
        ("flytescheduler", "Deployment flytescheduler (run, and its flytescheduler-check init container)"),),
}

# Keys flyte-core's own defaults put into a config file although the binary reading it rejects them.
# Tolerated there (with everything below them), nowhere else; each with why. Keep this list minimal:
# tests/unit/plugins/module_utils/test_flyte_config.py fails for an entry the binary accepts.
TOLERATED = {
    ("flyte-admin-base-config", "server.yaml", "flyteadmin.testing"): (
        "configmap.adminServer.flyteadmin.testing.host is a default of the chart that FlyteAdmin 1.16.8 does "
        "not read (its application config, the flyteadmin section, has no testing field)"),
    ("flyte-scheduler-config", "server.yaml", "scheduler.metricsScope"): (
        "configmap.schedulerConfig.scheduler.metricsScope is a default of the chart; the scheduler section has no "
        "such field (flytescheduler takes its metrics scope from flyteadmin.metricsScope, which this file lacks)"),
    ("flyte-propeller-config", "core.yaml", "manager"): (
        "configmap.core.manager is read by flytepropeller-manager (flytepropeller/manager/config), which the "
        "chart runs instead of flytepropeller when flytepropeller.manager is true; flytepropeller does not know it"),
}


def config_paths(document, prefix: tuple[str, ...] = ()):
    """Yield the path (a tuple of keys) of every leaf of a config document.

    A mapping is walked into; a non-empty list whose items are all mappings is a list of objects, its
    key marked ``[]`` and each item walked into; anything else (a scalar, an empty mapping or list, a
    list of scalars) is a leaf.
    """
    if isinstance(document, Mapping) and document:
        for key, value in document.items():
            yield from config_paths(value, prefix + (str(key),))
    elif isinstance(document, list) and document and prefix and all(isinstance(i, Mapping) for i in document):
        marked = prefix[:-1] + (prefix[-1] + "[]",)
        for item in document:
            yield from config_paths(item, marked)
    elif prefix:
        yield prefix


def _unmark(key: str) -> str:
    """key without the list mark of its last part."""
    return key[:-2] if key.endswith("[]") else key


def _sections(keys: frozenset[str]) -> frozenset[str]:
    """Every proper prefix of a key, with and without a list mark: an empty value may stand there."""
    found = set()
    for key in keys:
        parts = key.split(".")
        for end in range(1, len(parts)):
            prefix = ".".join(parts[:end])
            found.update((prefix, _unmark(prefix)))
    return frozenset(found)


_SECTIONS = {binary: _sections(keys) for binary, keys in KEYS.items()}


def is_accepted(path: tuple[str, ...], binary: str) -> bool:
    """Whether the binary accepts the leaf at path: the path or one of its prefixes is a key, or it is a section."""
    keys = KEYS[binary]
    for end in range(1, len(path) + 1):
        prefix = ".".join(path[:end]).lower()
        if prefix in keys or _unmark(prefix) in keys:
            return True
    whole = ".".join(path).lower()
    return whole in _SECTIONS[binary] or _unmark(whole) in _SECTIONS[binary]


def _tolerated(configmap: str, filename: str, path: tuple[str, ...], tolerated: Mapping) -> bool:
    for (cm, name, key), _why in tolerated.items():
        parts = tuple(key.lower().split("."))
        if cm == configmap and name == filename and tuple(p.lower() for p in path[:len(parts)]) == parts:
            return True
    return False


def unknown_config_keys(manifests, tolerated: Mapping | None = None) -> list[dict]:
    """The keys of the Flyte config files in manifests that the binaries reading them do not accept.

    manifests is the output of ``helm template`` (multi-document YAML) or a list of objects. Only the
    ConfigMaps named in READERS are read, and in them every data entry whose name ends in ``.yaml``.
    tolerated (TOLERATED when None) maps (ConfigMap, file, key) to why the key is let through.
    Each problem: configmap, file, key (the dotted path in the file), binaries and readers (who loads the file),
    and msg, a sentence naming all of them.
    """
    if yaml is None:  # pragma: no cover
        raise RuntimeError("the Flyte config key check needs PyYAML")
    tolerated = TOLERATED if tolerated is None else tolerated
    objects = list(yaml.safe_load_all(manifests)) if isinstance(manifests, str) else list(manifests or [])
    problems = []
    for obj in objects:
        if not isinstance(obj, Mapping) or obj.get("kind") != "ConfigMap":
            continue
        name = (obj.get("metadata") or {}).get("name")
        if name not in READERS:
            continue
        binaries = [binary for binary, _description in READERS[name]]
        readers = "; ".join(f"{binary} in {where}" for binary, where in READERS[name])
        for filename, text in sorted((obj.get("data") or {}).items()):
            if not filename.endswith(".yaml"):
                continue
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError as error:
                problems.append({"configmap": name, "file": filename, "key": None, "binaries": binaries,
                                 "readers": readers,
                                 "msg": f"{name}/{filename} is not YAML ({error}); read by {readers}"})
                continue
            for path in config_paths(document):
                if any(is_accepted(path, binary) for binary in binaries) or _tolerated(name, filename, path, tolerated):
                    continue
                key = ".".join(path)
                problems.append({
                    "configmap": name, "file": filename, "key": key, "binaries": binaries, "readers": readers,
                    "msg": f"{key} in ConfigMap {name}, file {filename}, is not a configuration key Flyte "
                           f"{' or '.join(binaries)} accepts (read by {readers})"})
    return problems
