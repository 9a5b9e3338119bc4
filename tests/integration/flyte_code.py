"""Flyte's own code in the tests: the programs of tests/platform/flyte (built by tests/platform/build
from the Flyte 1.16.8 modules), and the files a Flyte component reads, laid out as its Deployment
mounts them.

A Deployment's container names its config with `--config <glob>` (flyte-core 1.16.8 passes
`/etc/flyte/config/*.yaml` and the like); the files are the ConfigMaps its volumes mount there.
`config_files` lays those files out under a folder of the test's own and returns the glob to
hand to `flyte-config` or `flytepropeller`, rewritten to that folder and otherwise unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path, PurePosixPath


REPO = Path(__file__).resolve().parents[2]
CONFIG_FLAG = re.compile(r"--config[= ](\S+)")


def containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_search_path(container: dict) -> str | None:
    """The value of the container's --config flag, in `--config X`, `--config=X` or a shell line."""
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if match := CONFIG_FLAG.search(arg):
            return match.group(1)
    return None


def config_files(deployment: dict, container: dict, configmaps: dict[str, dict], folder: Path) -> str:
    """Writes the files the container finds under its --config glob into `folder` (at the same
    paths below it) and returns the glob rewritten to `folder`."""
    search = PurePosixPath(config_search_path(container))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    mounts = [m for m in container.get("volumeMounts", []) if search.parent.is_relative_to(m["mountPath"])]
    assert mounts, f"{container['name']}: no volume mounted at {search.parent}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = volumes[mount["name"]]
    sources = [s["configMap"] for s in volume.get("projected", {}).get("sources", [])] if "projected" in volume \
        else [volume["configMap"]]
    assert all(sources), f"{container['name']}: volume {mount['name']} holds more than ConfigMaps: {volume}"
    target = folder / mount["mountPath"].lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        data = configmaps[source["name"]]
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            (target / item["path"]).write_text(data[item["key"]])
    return str(folder / str(search).lstrip("/"))


def effective_config(program: str, search_path: str, *, strict: bool = False) -> dict:
    """What flytestdlib's loader makes of the files (see tests/platform/flyte/flyte-config)."""
    argv = [program, "--config", search_path, *(["--strict"] if strict else [])]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 0 or strict, run.stderr
    return {**json.loads(run.stdout), "rc": run.returncode}
