"""Wall time of a no-op second run of playbooks/site.yml, against a floor measured in the same run.

The floor applies the same objects with a plain script: `helm upgrade --install` of the same chart
with the same values, and `kubectl apply --server-side` of the same manifests (rendered by
playbooks/render.yml from the same inventory, plus the deployment's Secrets, which a render never
writes). The ratio site/floor is what this bench reports; the target is 4.0 or less.

Each site run is read through the ansible.posix.json callback, which gives every task's duration and
action: the bench counts the tasks of a no-op run that start a module process (every executed task
but those whose action runs on the controller only, such as set_fact, assert or include_role), and
--profile prints the 10 slowest tasks of the median run.

--first-converge also times a first converge: the deployment is torn down (volumes and namespace
included) before each side, then site.yml converges it against the floor's first install (namespace,
the same Secrets and manifests applied server-side, then `helm upgrade --install --wait`).

    python bench/site_noop.py [--rounds 3] [--profile] [--first-converge] [--mitogen]

Needs the local platform (scripts/platform up) and the project's virtualenv on PATH (scripts/bench
sets both up). Converges the site first, so the timed runs are all second runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "tests" / "charts" / "flyte-core"
CHART_VARS = ["-e", "flyte_chart_source=local", "-e", f"flyte_chart_path={CHART}"]
NAMESPACE = "flyte-system"
SECRETS = ["flyte-secrets", "flyte-db-credentials", "flyte-s3-credentials", "flyte-secret-auth"]


def run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, check=check, capture_output=True, text=True, **kwargs)


def timed(*args: str) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


TARGET_RATIO = 4.0
# Actions that run on the controller and start no module process on the target.
CONTROLLER_ONLY = {f"ansible.builtin.{name}" for name in (
    "add_host", "assert", "debug", "fail", "group_by", "import_role", "import_tasks", "include_role",
    "include_tasks", "include_vars", "meta", "pause", "set_fact", "set_stats", "validate_argument_spec")}
# The json callback as stdout callback; no other callback is enabled by ansible.cfg, nor by this environment.
JSON_CALLBACK = {**{key: value for key, value in os.environ.items() if key != "ANSIBLE_CALLBACKS_ENABLED"},
                 "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}


def mitogen_env() -> dict[str, str]:
    """JSON_CALLBACK plus Mitogen's linear strategy, from the ansible_mitogen package this Python can import."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("--mitogen: this Python cannot import ansible_mitogen (pip install mitogen, or put it on PYTHONPATH)")
    plugins = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    return {**JSON_CALLBACK, "ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(plugins.parent.parent.parent), os.environ.get("PYTHONPATH")]))}


def site(expect_no_op: bool = True, env: dict | None = None) -> tuple[float, list[dict]]:
    """One run of site.yml: its wall time and what each executed task did (name, action, seconds, changed)."""
    start = time.perf_counter()
    result = run("ansible-playbook", "playbooks/site.yml", *CHART_VARS, env=env or JSON_CALLBACK)
    elapsed = time.perf_counter() - start
    report = json.loads(result.stdout)
    changed = sum(stats.get("changed", 0) for stats in report["stats"].values())
    if expect_no_op and changed:
        sys.exit(f"the site run was not a no-op: changed={changed} {report['stats']}")
    return elapsed, executed_tasks(report)


def seconds_between(duration: dict) -> float:
    """The json callback's start and end stamps (ISO 8601, UTC) as a number of seconds."""
    return (datetime.fromisoformat(duration["end"]) - datetime.fromisoformat(duration["start"])).total_seconds()


def executed_tasks(report: dict) -> list[dict]:
    tasks = []
    for play in report["plays"]:
        for entry in play["tasks"]:
            for host_result in entry["hosts"].values():
                if host_result.get("skipped"):
                    continue
                action = host_result.get("action", "")
                tasks.append({"name": entry["task"]["name"], "action": action,
                              "seconds": seconds_between(entry["task"]["duration"]),
                              "module_process": action not in CONTROLLER_ONLY and f"ansible.builtin.{action}" not in CONTROLLER_ONLY,
                              "changed": bool(host_result.get("changed"))})
    return tasks


def teardown() -> None:
    run("ansible-playbook", "playbooks/teardown.yml", *CHART_VARS,
        "-e", "teardown_delete_volumes=true", "-e", "teardown_delete_namespace=true")
    for _attempt in range(120):
        if run("kubectl", "get", "namespace", NAMESPACE, check=False).returncode != 0:
            return
        time.sleep(1)
    sys.exit(f"namespace {NAMESPACE} still there two minutes after the teardown")


def plain_script(rendered: Path, secrets_file: Path, first_install: bool = False) -> float:
    """The floor: what a person's script would run. A first install creates the namespace and applies the
    manifests before the chart, whose pods mount their Secrets; a rerun applies everything again."""
    def apply_manifests():
        manifests = [p for p in sorted(rendered.glob("*.yaml")) if not p.name.startswith("5")]
        for path in [secrets_file, *manifests]:
            run("kubectl", "apply", "--server-side", "--force-conflicts", "--field-manager=bench-plain-script", "-f", str(path))

    def install_chart():
        run("helm", "upgrade", "--install", "flyte", str(CHART), "-n", NAMESPACE, "--atomic", "--wait",
            "-f", str(rendered / "50-flyte-values.yaml"))

    start = time.perf_counter()
    if first_install:
        run("kubectl", "create", "namespace", NAMESPACE)
        apply_manifests()
        install_chart()
    else:
        install_chart()
        apply_manifests()
    return time.perf_counter() - start


def slowest(tasks: list[dict], count: int = 10) -> list[dict]:
    return sorted(tasks, key=lambda task: task["seconds"], reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the 10 slowest tasks of the median no-op run")
    parser.add_argument("--mitogen", action="store_true",
                        help="also time the no-op run with Mitogen's mitogen_linear strategy (an optional accelerator)")
    parser.add_argument("--first-converge", action="store_true",
                        help="also time a first converge against the floor's first install (tears the deployment down)")
    options = parser.parse_args()

    print("converging the site once, so that every timed run is a second run", file=sys.stderr)
    run("ansible-playbook", "playbooks/site.yml", *CHART_VARS)
    with tempfile.TemporaryDirectory(prefix="bench-site-") as workdir:
        rendered = Path(workdir) / "rendered"
        # The Secrets, as they are: a plain script would apply them too. Removed with workdir.
        secrets_file = Path(workdir) / "secrets.json"
        listing = json.loads(run("kubectl", "get", "secret", "-n", NAMESPACE, *SECRETS, "-o", "json").stdout)
        client_id = next(base64.b64decode(s["data"]["oidc-client-id"]).decode()
                         for s in listing["items"] if s["metadata"]["name"] == "flyte-secrets")
        run("ansible-playbook", "playbooks/render.yml", *CHART_VARS, "-e", f"homelab_flyte_render_dir={rendered}",
            "-e", f"authentik_oidc_client_id={client_id}")
        for item in listing["items"]:
            for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "ownerReferences"):
                item["metadata"].pop(field, None)
        secrets_file.write_text(json.dumps(listing))
        os.chmod(secrets_file, 0o600)

        samples: dict[str, list[float]] = {"site_noop": [], "plain_script": []}
        accelerated = mitogen_env() if options.mitogen else None
        if accelerated:
            samples["site_noop_mitogen"] = []
        site_tasks: list[list[dict]] = []
        for round_number in range(options.rounds):
            # Alternate the order, so neither side always runs on a warmer machine.
            order = ["site_noop", "plain_script"] + (["site_noop_mitogen"] if accelerated else [])
            if round_number % 2:
                order.reverse()
            for name in order:
                if name == "site_noop":
                    elapsed, tasks = site()
                    site_tasks.append(tasks)
                elif name == "site_noop_mitogen":
                    elapsed = site(env=accelerated)[0]
                else:
                    elapsed = plain_script(rendered, secrets_file)
                samples[name].append(elapsed)
                print(f"round {round_number + 1}: {name} {samples[name][-1]:.1f}s", file=sys.stderr)

        first: dict[str, float] = {}
        if options.first_converge:
            for name in ("site_first", "plain_first"):
                print(f"tearing down for {name}", file=sys.stderr)
                teardown()
                first[name] = site(expect_no_op=False)[0] if name == "site_first" else \
                    plain_script(rendered, secrets_file, first_install=True)
                print(f"{name} {first[name]:.1f}s", file=sys.stderr)
            # Leave the deployment as the collection converges it.
            teardown()
            site(expect_no_op=False)

    site_median = statistics.median(samples["site_noop"])
    floor_median = statistics.median(samples["plain_script"])
    median_run = site_tasks[samples["site_noop"].index(sorted(samples["site_noop"])[len(site_tasks) // 2])]
    result = {"bench": "site_noop", "rounds": options.rounds, "samples_s": samples,
              "median_s": {"site_noop": site_median, "plain_script": floor_median},
              "ratio": site_median / floor_median, "target_ratio": TARGET_RATIO,
              "noop_tasks": {"executed": len(median_run), "module_processes": sum(t["module_process"] for t in median_run)},
              "slowest_tasks": slowest(median_run)}
    if "site_noop_mitogen" in samples:
        result["median_s"]["site_noop_mitogen"] = statistics.median(samples["site_noop_mitogen"])
        result["mitogen_ratio"] = {"to_floor": result["median_s"]["site_noop_mitogen"] / floor_median,
                                   "to_site_noop": result["median_s"]["site_noop_mitogen"] / site_median}
    if first:
        result["first_converge_s"] = first
        result["first_converge_ratio"] = first["site_first"] / first["plain_first"]
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "site_noop.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'':24}{'median':>10}\n{'site.yml no-op':24}{site_median:>9.1f}s\n{'plain script (floor)':24}{floor_median:>9.1f}s")
    print(f"ratio site/floor: {result['ratio']:.2f} (target <= {TARGET_RATIO})")
    print(f"no-op run: {result['noop_tasks']['executed']} tasks executed, "
          f"{result['noop_tasks']['module_processes']} of them start a module process")
    if "mitogen_ratio" in result:
        print(f"with Mitogen (mitogen_linear): {result['median_s']['site_noop_mitogen']:.1f}s, ratio to the floor "
              f"{result['mitogen_ratio']['to_floor']:.2f}, to the plain no-op run {result['mitogen_ratio']['to_site_noop']:.2f}")
    if first:
        print(f"first converge: site {first['site_first']:.1f}s, floor {first['plain_first']:.1f}s, "
              f"ratio {result['first_converge_ratio']:.2f}")
    if options.profile:
        print("\nthe 10 slowest tasks of the median no-op run:")
        for task in result["slowest_tasks"]:
            print(f"{task['seconds']:>7.2f}s  {task['action']:<32} {task['name']}")


if __name__ == "__main__":
    main()
