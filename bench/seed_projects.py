"""Seeding 500 Flyte projects with homelab.flyte.flyte_project: the time, and that a rerun changes nothing.

It needs a real FlyteAdmin, which the local platform does not have (no Flyte process runs on kwok's
simulated pods, and FlyteAdmin's Go module is not served by the module proxy, so it cannot be built
here by a committed recipe). Give its URL; without one the bench says so and exits 0.

    python bench/seed_projects.py --url http://127.0.0.1:8088 [--count 500] [--prefix bench]

The baseline measured in the same run is one ListProjects request with curl-like urllib, so the
result reads as "seeding N projects costs X requests and Y times a single API round trip".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - homelab.flyte.flyte_project:
        url: "{{ url }}"
        projects: "{{ projects }}"
      register: seeded
    - ansible.builtin.debug:
        msg: "BENCH changed={{ seeded.changed }} requests={{ seeded.requests }}"
"""


def seed(url: str, projects_file: Path, playbook: Path) -> tuple[float, bool, int]:
    start = time.perf_counter()
    result = subprocess.run(["ansible-playbook", str(playbook), "-e", f"url={url}", "-e", f"@{projects_file}"],
                            cwd=REPO, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    match = re.search(r"BENCH changed=(\w+) requests=(\d+)", result.stdout)
    if not match:
        sys.exit(result.stdout[-3000:])
    return elapsed, match.group(1) == "True", int(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("FLYTEADMIN_URL", ""))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--prefix", default="bench")
    options, _unknown = parser.parse_known_args()
    if not options.url:
        print("seed_projects: no FlyteAdmin URL (--url or FLYTEADMIN_URL); nothing measured", file=sys.stderr)
        return

    start = time.perf_counter()
    with urllib.request.urlopen(f"{options.url}/api/v1/projects?limit=1", timeout=10) as response:
        response.read()
    round_trip = time.perf_counter() - start

    projects = [{"id": f"{options.prefix}-{i:04d}", "name": f"Bench project {i}", "description": "seeded by bench",
                 "labels": {"bench": options.prefix}} for i in range(options.count)]
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as workdir:
        projects_file = Path(workdir) / "projects.json"
        projects_file.write_text(json.dumps({"projects": projects}))
        playbook = Path(workdir) / "seed.yml"
        playbook.write_text(PLAYBOOK)
        first = seed(options.url, projects_file, playbook)
        rerun = seed(options.url, projects_file, playbook)

    result = {"bench": "seed_projects", "count": options.count, "round_trip_s": round_trip,
              "seed": {"seconds": first[0], "changed": first[1], "requests": first[2]},
              "rerun": {"seconds": rerun[0], "changed": rerun[1], "requests": rerun[2]},
              "seed_over_round_trip": first[0] / round_trip, "rerun_over_seed": rerun[0] / first[0]}
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "seed_projects.json").write_text(json.dumps(result, indent=2))
    print(f"seed {options.count} projects: {first[0]:.1f}s, {first[2]} requests, changed={first[1]}")
    print(f"rerun: {rerun[0]:.1f}s, {rerun[2]} requests, changed={rerun[1]} (rerun/seed {result['rerun_over_seed']:.2f})")


if __name__ == "__main__":
    main()
