"""Property: a value of a role variable that the API server would reject later is refused by the role's
preflight, before the first write, with a message naming the variable.

hypothesis generates one value for every variable of every role's argument spec (roles/*/meta/argument_specs.yml),
from the variable's type: strings shaped like names, host names, URLs, quantities and paths, with the edges the
API server cares about (length 63/64/253/254, case, '_', '.', unicode, blanks), integers around the limits of
ports, int32 and int64, lists and mappings of those. Each value is one case: the baseline below (a valid
deployment) with that one variable changed. All the cases of one example run in a single ansible-playbook call
(tests/integration/playbooks/preflight_cases.yml, one host per case): every role's preflight in site order, then
the render of the roles the variable reaches. The oracle is the platform's real API server: every object a
case renders is applied with a server-side dry run (its real OpenAPI and CRD schemas, CEL rules included).

A finding is one of:
- slipped: the preflight passed and the API server refused a rendered object;
- late: the preflight passed and a later task of the role failed (a deploy would have written by then);
- unnamed: the preflight refused the value without naming the variable.

Bounded and deterministic: derandomize=True, no example database, no shrinking (a failing example is shown
whole: one value per variable is already small), max_examples below. Variables whose preflight is another
change's to fix are listed in OWNED_ELSEWHERE with what slips; the test checks that the rest stay clean.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st
from kubernetes import client

from conftest import REPO

ROLES = ["secrets", "storage", "database", "authentik", "flyte", "networking"]
PLAYBOOK = REPO / "tests" / "integration" / "playbooks" / "preflight_cases.yml"
RUN = uuid.uuid4().hex[:6]
NAMESPACE, AUTHENTIK_NAMESPACE = f"pbt-{RUN}", f"pbt-{RUN}-authentik"

# A valid deployment: what test_render.py renders, with inline secrets (no cluster is read by a render).
BASELINE = {
    "flyte_namespace": NAMESPACE, "authentik_namespace": AUTHENTIK_NAMESPACE, "authentik_oidc_client_id": "flyte",
    "authentik_url": "https://authentik.platform.test", "homelab_flyte_hostname": "flyte.platform.test",
    "networking_parent_refs": [{"name": "platform-gateway", "namespace": "gateway-system", "sectionName": "https"}],
    "flyte_chart_source": "local", "flyte_chart_path": str(REPO / "tests/charts/flyte-core"),
    "flyte_values_overrides": {"flytepropeller": {"createCRDs": False}},
    "secrets_backend": "inline",
    "secrets_inline": {"username": "flyte", "password": "pbt-password", "oidc-client-id": "flyte", "oidc-client-secret": "pbt-secret"},
}
# Variables a case cannot vary here, and why.
SKIPPED = {
    "secrets_inline": "secret values, never rendered",
    "secrets_connect_token": "a secret, used only against 1Password Connect",
    "authentik_api_token": "a secret, used only against Authentik's API",
    "flyte_chart_path": "a path on the controller; the preflight checks that it exists",
    "flyte_values_overrides": "checked against flyte-core's keys by the flyte role's preflight (another change)",
    "flyte_database": "another role's fact", "flyte_object_store": "another role's fact",
    "flyte_secrets": "another role's fact", "flyte_oidc": "another role's fact",
    "secrets_connect_host": "used only by the onepassword_connect backend, which a render does not contact",
}
# The other settings a variable needs to be used at all.
CONTEXT = {
    "storage_s3_endpoint": {"storage_object_store": "external"},
    "storage_s3_access_key_id": {"storage_object_store": "external", "storage_s3_secret_access_key": "pbt-key",
                                 "storage_s3_endpoint": "https://s3.example.com"},
    "storage_s3_secret_access_key": {"storage_object_store": "external", "storage_s3_access_key_id": "pbt-id",
                                     "storage_s3_endpoint": "https://s3.example.com"},
    "networking_kube_apiserver_cidrs": {"networking_policy_engine": "kubernetes"},
    "networking_object_store_cidrs": {"networking_policy_engine": "kubernetes"},
    "networking_oidc_issuer_cidrs": {"networking_policy_engine": "kubernetes"},
    "flyte_chart_repo_url": {"flyte_chart_source": "repo"},
    "flyte_chart_oci_ref": {"flyte_chart_source": "oci"},
    # The OnePasswordItem is rendered for the operator backend only.
    "secrets_onepassword_vault": {"secrets_backend": "onepassword_operator"},
    "secrets_onepassword_item": {"secrets_backend": "onepassword_operator"},
}
# Slips in preflights that other changes own (roles/flyte/tasks/preflight.yml, roles/networking): reported, not
# fixed here. Each entry names what the API server refuses that the preflight lets through.
OWNED_ELSEWHERE: dict[str, str] = {
    "flyte_helm_timeout": "helm refuses --timeout beyond 9223372036s (a Go duration: int64 nanoseconds); the preflight only "
                          "checks that it is positive",
    "networking_dns_selector": "label keys and values are not checked: the render fails on some, and the API server refuses "
                               "a CiliumNetworkPolicy or NetworkPolicy selector with an invalid label",
}


def argument_specs() -> dict[str, dict]:
    options = {}
    for role in ROLES:
        specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
        # A variable several roles read (homelab_flyte_hostname) is declared by each of them.
        for name, spec in specs["argument_specs"]["main"]["options"].items():
            options.setdefault(name, dict(spec, roles=[]))["roles"].append(role)
    return options


SPECS = argument_specs()


def reached_roles(name: str) -> list[str]:
    """The roles declaring the variable, and every role whose defaults refer to it (flyte_namespace reaches all of them)."""
    roles = set(SPECS[name]["roles"])
    for role in ROLES:
        defaults = (REPO / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8")
        if re.search(rf"\b{re.escape(name)}\b", defaults):
            roles.add(role)
    return [role for role in ROLES if role in roles]


# --------------------------------------------------------------------------------------------------
# Values, by argument spec type

EDGE_STRINGS = [
    "", " ", "-", "a", "A", "a-", "-a", "a_b", "a.b", "a..b", ".a", "a.", "a" * 50, "a" * 51, "a" * 53, "a" * 54,
    "a" * 63, "a" * 64, "a" * 253, "a" * 254, "Flyte", "flyte system", "flyte\n", "1", "0", "-1", "007", "1e3", "0x1F",
    "50Gi", "0Gi", "-5Gi", "1.5Gi", "50GB", "Gi", "1e400", "http://", "https://", "https://example.com",
    "https://ex ample.com", "ftp://example.com", "https://example.com:99999", "https://example.com:0", "example.com",
    "EXAMPLE.com", "exa_mple.com", "a/b", "/a", "a:b", "é", "日本", "null", "true", "{}", "[]", "*", "%2F", "a b c",
]
STRINGS = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    # Label- and subdomain-like, often too long for one or the other.
    st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,70}[a-z0-9])?\Z"),
    st.from_regex(r"\A[A-Za-z0-9_.:/@ -]{1,80}\Z"),
    st.text(max_size=80).filter(lambda s: "{{" not in s and "{%" not in s and "{#" not in s),
)
INTEGERS = st.one_of(st.sampled_from([-1, 0, 1, 80, 1023, 1024, 65535, 65536, 2**31 - 1, 2**31, 2**53, 2**63]),
                     st.integers(min_value=-100, max_value=10**7))
SCALARS = st.one_of(STRINGS, INTEGERS)


def values_for(spec: dict):
    kind = spec.get("type", "str")
    if kind == "str":
        # Now and then a number where a string is expected: the argument spec lets it through unconverted.
        return st.one_of(STRINGS, STRINGS, STRINGS, INTEGERS)
    if kind == "int":
        return INTEGERS
    if kind == "list":
        element = spec.get("elements", "str")
        if element == "int":
            return st.lists(INTEGERS, max_size=3)
        if element == "dict":
            return st.lists(st.dictionaries(STRINGS, SCALARS, max_size=3), max_size=3)
        return st.lists(STRINGS, max_size=3)
    if kind == "dict":
        return st.dictionaries(STRINGS, SCALARS, max_size=3)
    return None


VARIABLES = sorted(name for name, spec in SPECS.items()
                   if name not in SKIPPED and "choices" not in spec and spec.get("type", "str") not in ("bool", "raw"))
# To look at some variables only while working on them: HOMELAB_FLYTE_PBT_ONLY=<regular expression>.
GENERATED = [name for name in VARIABLES if re.search(os.environ.get("HOMELAB_FLYTE_PBT_ONLY", ""), name)]


def confused(spec: dict):
    """A value of the wrong type for the spec's type, which role argument validation lets through unconverted."""
    kind, element = spec.get("type", "str"), spec.get("elements", "str")
    if kind == "str":
        return 80
    if kind == "int":
        return 2**63
    if kind == "list":
        return [{"name": 80}] if element != "dict" else ["gateway"]
    return {"requests": [1]}


# Always run first (hypothesis' explicit phase): every variable with a value of the wrong type.
TYPE_CONFUSION = {name: confused(SPECS[name]) for name in GENERATED}


def helm_duration_problem(value) -> str | None:
    """flyte_helm_timeout reaches helm as --timeout <value>s: helm's own flag parsing is the oracle."""
    result = subprocess.run(["helm", "template", "probe", str(REPO / "tests/charts/platform-probe"), f"--timeout={value}s"],
                            capture_output=True, text=True, check=False)
    return None if result.returncode == 0 else f"helm --timeout={value}s: {result.stderr.strip()[:300]}"


# Variables that reach a program rather than a rendered object: that program is their oracle.
CONSUMERS = {"flyte_helm_timeout": helm_duration_problem}


def test_every_variable_is_generated_or_skipped_with_a_reason():
    for name, spec in SPECS.items():
        assert name in VARIABLES or name in SKIPPED or "choices" in spec or spec.get("type") in ("bool", "raw"), name
        if name in VARIABLES:
            assert values_for(spec) is not None, name
    assert set(CONTEXT) <= set(VARIABLES) and set(OWNED_ELSEWHERE) <= set(VARIABLES)


# --------------------------------------------------------------------------------------------------
# The harness: one ansible-playbook run for a batch of cases

class Unsafe(str):
    """A string Ansible must not template: written with the !unsafe tag."""


def _unsafe_representer(dumper, data):
    return dumper.represent_scalar("!unsafe", str(data), style="'")


yaml.SafeDumper.add_representer(Unsafe, _unsafe_representer)


def unsafe(value):
    if isinstance(value, str):
        # ansible-core 2.19 loads !unsafe '' as None: an empty string holds no template anyway.
        return Unsafe(value) if value else value
    if isinstance(value, list):
        return [unsafe(v) for v in value]
    if isinstance(value, dict):
        return {unsafe(k): unsafe(v) for k, v in value.items()}
    return value


def run_cases(cases: dict[str, dict], workdir: Path) -> dict[str, dict]:
    """{host: {"failed_task", "preflight", "messages"}} for each case that failed; rendered folders under workdir."""
    hosts = {}
    for host, case in cases.items():
        variables = {**BASELINE, **CONTEXT.get(case["name"], {}), case["name"]: case["value"],
                     "homelab_flyte_render_dir": str(workdir / host), "case_render_roles": reached_roles(case["name"]),
                     "ansible_python_interpreter": sys.executable}
        hosts[host] = unsafe(variables)
        (workdir / host).mkdir()
    inventory = workdir / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"cases": {"hosts": hosts}}, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_DEPRECATION_WARNINGS": "0"}
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(PLAYBOOK), "--forks", "4"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=False)
    report = json.loads(result.stdout[result.stdout.index("{"):])
    outcome = {}
    for play in report["plays"]:
        in_preflight = True
        for task in play["tasks"]:
            if task["task"]["name"] == "Mark the end of the preflight":
                in_preflight = False
            for host, res in task["hosts"].items():
                if res.get("failed") and host not in outcome:
                    outcome[host] = {"failed_task": task["task"]["name"], "preflight": in_preflight,
                                     "messages": json.dumps(res, default=str)}
    unreachable = [h for h, s in report["stats"].items() if s.get("unreachable")]
    assert not unreachable, unreachable
    return outcome


def rendered_objects(folder: Path) -> list[dict]:
    objects = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "50-flyte-values.yaml":
            continue
        objects += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return objects


class Oracle:
    """The platform's API server: server-side dry runs of what a case rendered."""

    def __init__(self, api, k8s):
        self.core, self.k8s = client.CoreV1Api(api), k8s
        self.known: set[str] = set()
        self.created: list[str] = []

    def namespace_problem(self, name: str) -> str | None:
        if name in self.known:
            return None
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            self.core.create_namespace(body, dry_run="All")
        except client.ApiException as error:
            if error.status == 409:
                self.known.add(name)
                return None
            return f"Namespace {name!r}: {error.status} {json.loads(error.body).get('message')}"
        self.core.create_namespace(body)  # the objects' dry runs need it to exist
        self.known.add(name)
        self.created.append(name)
        return None

    @staticmethod
    def pods_of(obj: dict) -> list[dict]:
        """The Pod a workload's controller would create from its template: the API server checks a template less
        than a Pod (an empty image passes in a Deployment and fails in each of its Pods)."""
        spec = obj.get("spec") or {}
        template = {"Deployment": spec.get("template"), "StatefulSet": spec.get("template"), "DaemonSet": spec.get("template"),
                    "ReplicaSet": spec.get("template"), "Job": spec.get("template"),
                    "CronJob": ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")}.get(obj.get("kind"))
        if not template:
            return []
        pod_spec = {k: v for k, v in (template.get("spec") or {}).items() if k not in ("serviceAccountName", "serviceAccount")}
        metadata = {"name": f"{obj['metadata']['name']}-pbt-probe"[:253], "labels": (template.get("metadata") or {}).get("labels") or {}}
        if obj["metadata"].get("namespace"):
            metadata["namespace"] = obj["metadata"]["namespace"]
        return [{"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}]

    def problems(self, objects: list[dict], default_namespace: str) -> list[str]:
        found = []
        for obj in [o for obj in objects for o in [obj, *self.pods_of(obj)]]:
            if obj.get("kind") == "CustomResourceDefinition":
                continue
            resource = self.k8s.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            namespace = None
            if resource.namespaced:
                namespace = obj.get("metadata", {}).get("namespace") or default_namespace
                problem = self.namespace_problem(namespace)
                if problem:
                    found.append(problem)
                    continue
            try:
                self.k8s.server_side_apply(resource, body=obj, namespace=namespace, field_manager="homelab-flyte-pbt",
                                           force_conflicts=True, dry_run="All")
            except client.ApiException as error:
                message = json.loads(error.body).get("message") if error.body else error.reason
                # A value of the wrong type fails server-side apply's typed patch with a 500.
                if error.status not in (400, 422) and "failed to create typed patch object" not in (message or ""):
                    raise
                found.append(f"{obj['kind']} {obj.get('metadata', {}).get('name')!r}: {error.status} {message}")
        return found


@pytest.fixture(scope="module")
def oracle(api, k8s):
    oracle = Oracle(api, k8s)
    yield oracle
    for name in oracle.created:
        client.CoreV1Api(api).delete_namespace(name)


def findings_of(cases: dict[str, dict], outcome: dict[str, dict], workdir: Path, oracle: Oracle) -> list[dict]:
    findings = []
    for host, case in cases.items():
        name, value = case["name"], case["value"]
        failure = outcome.get(host)
        if failure and failure["preflight"]:
            if name not in failure["messages"]:
                findings.append({"variable": name, "value": value, "kind": "unnamed",
                                 "detail": f"{failure['failed_task']}: {failure['messages'][:400]}"})
            continue
        if failure:
            findings.append({"variable": name, "value": value, "kind": "late",
                             "detail": f"{failure['failed_task']}: {failure['messages'][:400]}"})
            continue
        folder = workdir / host
        namespace = value if name == "flyte_namespace" and isinstance(value, str) else NAMESPACE
        problems = oracle.problems(rendered_objects(folder), namespace) if folder.is_dir() else []
        if name in CONSUMERS and CONSUMERS[name](value):
            problems.append(CONSUMERS[name](value))
        if problems:
            findings.append({"variable": name, "value": value, "kind": "slipped", "detail": "; ".join(problems)[:600]})
    return findings


def test_the_preflight_refuses_what_the_api_server_would_refuse(oracle, tmp_path_factory):
    findings: list[dict] = []

    # Findings are collected, not raised inside hypothesis, which would otherwise run the failing batch again to
    # report it: a batch is one ansible-playbook run of every case.
    @settings(max_examples=int(os.environ.get("HOMELAB_FLYTE_PBT_EXAMPLES", "1")), deadline=None, derandomize=True,
              database=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(batch=st.fixed_dictionaries({name: values_for(SPECS[name]) for name in GENERATED}))
    @example(batch=TYPE_CONFUSION)
    def explore(batch):
        workdir = tmp_path_factory.mktemp("cases")
        cases = {f"case{index}": {"name": name, "value": value} for index, (name, value) in enumerate(sorted(batch.items()))}
        outcome = run_cases(cases, workdir)
        found = findings_of(cases, outcome, workdir, oracle)
        findings.extend(found)
        if os.environ.get("HOMELAB_FLYTE_PBT_REPORT"):  # every case and what became of it, for a closer look
            with open(os.environ["HOMELAB_FLYTE_PBT_REPORT"], "a", encoding="utf-8") as report:
                for host, case in cases.items():
                    failure = outcome.get(host) or {}
                    report.write(json.dumps({"variable": case["name"], "value": case["value"],
                                             "refused": bool(failure.get("preflight")), "failed_task": failure.get("failed_task"),
                                             "findings": [f for f in found if f["variable"] == case["name"]]},
                                            default=str, ensure_ascii=False) + "\n")

    explore()
    elsewhere = sorted({f["variable"] for f in findings if f["variable"] in OWNED_ELSEWHERE})
    if elsewhere:
        warnings.warn(f"slips in preflights other changes own: {', '.join(elsewhere)}")
    ours = [f for f in findings if f["variable"] not in OWNED_ELSEWHERE]
    assert not ours, "\n".join(f"{f['kind']}: {f['variable']}={f['value']!r}: {f['detail']}" for f in ours)


# --------------------------------------------------------------------------------------------------
# The label selector test (authentik_worker_selector) against the API server's own parser

SELECTOR_PARTS = st.sampled_from(["app", "a.b/c", "app.kubernetes.io/name", "-x", "X/y", "k" * 64, "", " ", "=", "==", "!=",
                                  "!", ",", "(", ")", " in ", " notin ", ">", "<", "1", "-2", "worker", "v" * 64, "a b", "é"])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(selector=st.one_of(st.lists(SELECTOR_PARTS, min_size=1, max_size=7).map("".join), st.text(max_size=20)))
def test_the_label_selector_test_agrees_with_the_api_server(api, selector):
    from ansible_collections.homelab.flyte.plugins.module_utils.validation import is_label_selector

    try:
        client.CoreV1Api(api).list_namespaced_pod("default", label_selector=selector, limit=1)
        accepted = True
    except client.ApiException as error:
        if error.status != 400:
            raise
        accepted = False
    # An empty selector selects everything, which the role must not do: the test refuses it on purpose.
    assert is_label_selector(selector) == (accepted and bool(selector.strip())), selector
