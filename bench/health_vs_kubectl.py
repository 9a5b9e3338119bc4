"""How long one flyte_health call takes next to the reference's troubleshooting and health-check commands.

    python bench/health_vs_kubectl.py [--repeat 5] [--namespace flyte-system] [--no-converge]

On the local platform (tests/platform, started when it is not running) and the deployment playbooks/site.yml
converges there (converged first when FlyteAdmin's ConfigMap or the CloudNativePG Cluster is missing), each round
times, in turn:

  a   the reference's commands, one after another, with the platform's kubectl (BASELINE below lists them);
  b1  one flyte_health call through ansible-playbook (a play of that one task, results by the json callback);
  b2  the same checks with the module's code called in this process (health.run, a fresh API client each time).

It prints a table of medians with the ratios b1/a and b2/a (the target is 0.5 or less), and writes every
sample to bench/results/health_vs_kubectl-<time>.json. See bench/README.md for what is and is not compared.
Not a test: it asserts nothing and always exits 0 once it has measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform as host_platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / ".ansible" / "collections"), str(REPO / "tests" / "integration")]

COMPONENTS = ["flyteadmin", "flytepropeller", "datacatalog", "flyteconsole"]
# Checks both sides make a network request for that is not to the API server: left out on both sides.
SKIPPED = ["admin_healthcheck", "oidc_discovery", "blueprint_instance"]


def baseline(ns: str, authentik_ns: str, pod: str, user: str, database: str) -> list[tuple[str, list[str] | str]]:
    """The reference's commands (Troubleshooting 1-2, Health Checks), as run by hand, minus -it."""
    commands = [
        ("get cluster", ["get", "cluster", "flyte-postgres", "-n", ns]),
        ("exec psql", ["-n", ns, "exec", pod, "-c", "postgres", "--", "psql", "-U", user, "-d", database, "-c", "select 1"]),
        ("get blueprint configmap", ["-n", authentik_ns, "get", "configmap", "authentik-blueprint-flyte"]),
        ("get httproute -o yaml", ["-n", ns, "get", "httproute", "flyte", "-o", "yaml"]),
        ("get admin config | grep auth", f"kubectl -n {ns} get configmap flyte-admin-base-config -o yaml | grep -A 20 \"auth:\""),
        ("get pods,svc,pvc", ["-n", ns, "get", "pods,svc,pvc"]),
    ]
    commands += [(f"get pods {c}", ["-n", ns, "get", "pods", "-l", f"app.kubernetes.io/name={c}"]) for c in COMPONENTS]
    return commands


def platform_env() -> None:
    """Start the platform when needed and take its KUBECONFIG and PATH, as tests/integration/conftest.py does."""
    script = REPO / "tests" / "platform" / "platform.py"
    if subprocess.run([sys.executable, str(script), "status"], capture_output=True, check=False).returncode != 0:
        subprocess.run([sys.executable, str(script), "up"], check=True)
    exports = subprocess.run([sys.executable, str(script), "env"], check=True, capture_output=True, text=True).stdout
    for line in exports.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        os.environ[key] = os.path.expandvars(value)
    os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    os.environ.update({"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"})


def kubectl(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, check=check)


def converged(ns: str) -> bool:
    return (kubectl("-n", ns, "get", "configmap", "flyte-admin-base-config").returncode == 0
            and kubectl("-n", ns, "get", "cluster", "flyte-postgres").returncode == 0)


def converge() -> None:
    print("converging playbooks/site.yml on the local platform (the deployment is not there yet)...", file=sys.stderr)
    chart = REPO / "tests" / "charts" / "flyte-core"
    subprocess.run(["ansible-playbook", "playbooks/site.yml", "-e", "flyte_chart_source=local", "-e", f"flyte_chart_path={chart}"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)


class Database:
    """The database psql asks for: on the test PostgreSQL of tests/postgres.py when it can start (a database of
    the bench's own, as its superuser, the one user the exec simulation can log in as), else the reference's
    user and database, whose exec then fails just as fast."""

    def __init__(self) -> None:
        self.user, self.name, self.note, self._manager, self._server = "flyte", "flyteadmin", "", None, None
        try:
            from ansible_collections.homelab.flyte.tests.postgres import running_postgres
            self._manager = running_postgres()
            self._server = self._manager.__enter__()
        except Exception as error:  # noqa: BLE001 - no harness, no binaries, port taken
            self._manager = None
            self.note = f"no test PostgreSQL ({error}): psql -U flyte -d flyteadmin fails on both sides"
            return
        self.user, self.name = "postgres", f"bench_flyteadmin_{os.getpid()}"
        self._server.sql(f'CREATE DATABASE "{self.name}"')
        self.note = f"test PostgreSQL of tests/postgres.py, database {self.name} as postgres"

    def close(self) -> None:
        if self._manager is not None:
            self._server.drop(databases=[self.name])
            self._manager.__exit__(None, None, None)


def health_params(ns: str, authentik_ns: str, database: Database) -> dict:
    return {"namespace": ns, "authentik": {"namespace": authentik_ns}, "database": {"user": database.user, "name": database.name},
            "skip_checks": SKIPPED, "fail_on_unhealthy": False, "check_timeout": 30}


def time_baseline(commands) -> tuple[float, dict[str, float], list[str]]:
    per, failures = {}, []
    started = time.perf_counter()
    for label, command in commands:
        t0 = time.perf_counter()
        if isinstance(command, str):
            done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True, check=False)
        else:
            done = kubectl(*command)
        per[label] = time.perf_counter() - t0
        if done.returncode != 0:
            failures.append(f"{label}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}")
    return time.perf_counter() - started, per, failures


HEALTH_PLAYBOOK = """---
- name: One flyte_health call
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check the deployment
      homelab.flyte.flyte_health: "{{ health_args }}"
"""


def time_playbook(params: dict, workdir: Path) -> tuple[float, dict]:
    """One task, like the no-op play; the json callback hands back the result without a second task."""
    playbook = workdir / "health.yml"
    playbook.write_text(HEALTH_PLAYBOOK)
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    t0 = time.perf_counter()
    done = subprocess.run(["ansible-playbook", str(playbook), "-e", json.dumps({"health_args": params})],
                          cwd=REPO, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - t0
    try:
        result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        result = None
    if done.returncode != 0 or result is None:
        raise SystemExit(f"ansible-playbook failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return elapsed, result


NOOP_PLAYBOOK = """---
- name: Ansible's own start-up, for comparison
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Do nothing
      ansible.builtin.debug:
        msg: nothing
"""


def time_noop_playbook(workdir: Path) -> float:
    playbook = workdir / "noop.yml"
    playbook.write_text(NOOP_PLAYBOOK)
    t0 = time.perf_counter()
    subprocess.run(["ansible-playbook", str(playbook)], cwd=REPO, capture_output=True, check=True)
    return time.perf_counter() - t0


def time_in_process(params: dict) -> tuple[float, dict]:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from kubernetes import config

    from ansible_collections.homelab.flyte.plugins.module_utils import health

    validated = ArgumentSpecValidator(health.argument_spec()).validate(params)
    if validated.error_messages:
        raise SystemExit(f"bad parameters: {validated.error_messages}")
    t0 = time.perf_counter()
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    outcome = health.run(validated.validated_parameters, api)
    return time.perf_counter() - t0, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", "--rounds", type=int, default=5, help="rounds (default 5); --rounds as bench/site_noop.py names it")
    parser.add_argument("--namespace", default="flyte-system")
    parser.add_argument("--authentik-namespace", default="authentik")
    parser.add_argument("--no-converge", action="store_true", help="do not run playbooks/site.yml when the deployment is missing")
    options = parser.parse_args()

    platform_env()
    ns = options.namespace
    if not converged(ns):
        if options.no_converge:
            raise SystemExit(f"no converged deployment in {ns}: run `make deploy` or leave out --no-converge")
        converge()
    pods = kubectl("-n", ns, "get", "pods", "-l", "cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary",
                   "-o", "jsonpath={.items[0].metadata.name}").stdout.strip() or "flyte-postgres-1"
    database = Database()
    commands = baseline(ns, options.authentik_namespace, pods, database.user, database.name)
    params = health_params(ns, options.authentik_namespace, database)
    samples = {"a": [], "b1": [], "b2": [], "noop_playbook": []}
    per_command: dict[str, list[float]] = {label: [] for label, unused in commands}
    notes, last = [], {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # One unmeasured round of each warms the discovery caches, as a person's second look would.
            time_baseline(commands)
            time_playbook(params, Path(tmp))
            time_in_process(params)
            for unused in range(options.repeat):
                elapsed, per, failures = time_baseline(commands)
                samples["a"].append(elapsed)
                for label, seconds in per.items():
                    per_command[label].append(seconds)
                notes += [f for f in failures if f not in notes]
                elapsed, last["b1"] = time_playbook(params, Path(tmp))
                samples["b1"].append(elapsed)
                elapsed, last["b2"] = time_in_process(params)
                samples["b2"].append(elapsed)
                samples["noop_playbook"].append(time_noop_playbook(Path(tmp)))
    finally:
        database.close()

    median = {key: statistics.median(values) for key, values in samples.items()}
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": host_platform.machine(), "cpus": os.cpu_count(), "python": host_platform.python_version()},
        "namespace": ns, "repeat": options.repeat, "database": database.note,
        "baseline_commands": [" ".join(c) if isinstance(c, list) else c for unused, c in commands],
        "baseline_failures": notes,
        "health_params": params,
        "checks_run": [c["name"] for c in last["b2"]["checks"] if c["status"] != "skipped"],
        "health_summary": {"playbook": last["b1"].get("summary"), "in_process": last["b2"]["summary"]},
        "samples_seconds": samples, "median_seconds": median,
        "per_command_median_seconds": {label: statistics.median(v) for label, v in per_command.items()},
        "ratio": {"b1/a": median["b1"] / median["a"], "b2/a": median["b2"] / median["a"]}, "target_ratio": 0.5,
    }
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"health_vs_kubectl-{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nflyte_health vs the reference's kubectl commands - {ns}, {options.repeat} rounds, medians")
    print(f"  {'what':<58} {'seconds':>8} {'ratio':>7}")
    print(f"  {'a   ' + str(len(commands)) + ' kubectl commands, one after another':<58} {median['a']:>8.3f} {'1.00':>7}")
    for key, label in (("b1", "b1  flyte_health via ansible-playbook"), ("b2", "b2  flyte_health in-process (health.run)")):
        ratio = median[key] / median["a"]
        print(f"  {label:<58} {median[key]:>8.3f} {ratio:>7.2f} {'<= 0.5 target' if ratio <= 0.5 else '> 0.5 target'}")
    print(f"  {'    for scale: ansible-playbook with one debug task':<58} {median['noop_playbook']:>8.3f} "
          f"{median['noop_playbook'] / median['a']:>7.2f}")
    print(f"  checks run by b: {len(report['checks_run'])} ({', '.join(report['checks_run'])}); skipped on both sides: {', '.join(SKIPPED)}")
    print(f"  last module summary: {report['health_summary']['in_process']}")
    print(f"  database: {database.note}")
    for note in notes:
        print(f"  baseline command failed (timed all the same): {note}")
    print("  slowest baseline commands: " + ", ".join(
        f"{label} {seconds:.3f}s" for label, seconds in sorted(report["per_command_median_seconds"].items(), key=lambda kv: -kv[1])[:3]))
    print(f"  written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
