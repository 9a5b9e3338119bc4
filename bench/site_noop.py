"""Wall time of a no-op second run of playbooks/site.yml, against a floor measured in the same run.

The floor applies the same objects with a plain script: `helm upgrade --install` of the same chart
with the same values, and `kubectl apply --server-side` of the same manifests (rendered by
playbooks/render.yml from the same inventory, plus the deployment's Secrets, which a render never
writes). The ratio site/floor is what this bench reports; the target is 2.0 or less.

    python bench/site_noop.py [--rounds 3]

Needs the local platform (scripts/platform up) and the project's virtualenv on PATH (scripts/bench
sets both up). Converges the site first, so the timed runs are all second runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "tests" / "charts" / "flyte-core"
CHART_VARS = ["-e", "flyte_chart_source=local", "-e", f"flyte_chart_path={CHART}"]
NAMESPACE = "flyte-system"
SECRETS = ["flyte-secrets", "flyte-db-credentials", "flyte-s3-credentials", "flyte-secret-auth"]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, check=True, capture_output=True, text=True, **kwargs)


def timed(*args: str) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def site() -> float:
    start = time.perf_counter()
    result = run("ansible-playbook", "playbooks/site.yml", *CHART_VARS)
    elapsed = time.perf_counter() - start
    recap = result.stdout.rsplit("PLAY RECAP", 1)[-1]
    if "changed=0" not in recap:
        sys.exit(f"the site run was not a no-op:\n{recap}")
    return elapsed


def plain_script(rendered: Path, secrets_file: Path) -> float:
    start = time.perf_counter()
    run("helm", "upgrade", "--install", "flyte", str(CHART), "-n", NAMESPACE, "--atomic", "--wait",
        "-f", str(rendered / "50-flyte-values.yaml"))
    manifests = [p for p in sorted(rendered.glob("*.yaml")) if not p.name.startswith("5")]
    for path in [secrets_file, *manifests]:
        run("kubectl", "apply", "--server-side", "--force-conflicts", "--field-manager=bench-plain-script", "-f", str(path))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
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
        for round_number in range(options.rounds):
            # Alternate the order, so neither side always runs on a warmer machine.
            order = ["site_noop", "plain_script"] if round_number % 2 == 0 else ["plain_script", "site_noop"]
            for name in order:
                samples[name].append(site() if name == "site_noop" else plain_script(rendered, secrets_file))
                print(f"round {round_number + 1}: {name} {samples[name][-1]:.1f}s", file=sys.stderr)

    site_median = statistics.median(samples["site_noop"])
    floor_median = statistics.median(samples["plain_script"])
    result = {"bench": "site_noop", "rounds": options.rounds, "samples_s": samples,
              "median_s": {"site_noop": site_median, "plain_script": floor_median},
              "ratio": site_median / floor_median, "target_ratio": 2.0}
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "site_noop.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'':24}{'median':>10}\n{'site.yml no-op':24}{site_median:>9.1f}s\n{'plain script (floor)':24}{floor_median:>9.1f}s")
    print(f"ratio site/floor: {result['ratio']:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
