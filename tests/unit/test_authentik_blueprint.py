"""The authentik role's blueprint is valid for Authentik's schema and creates the clients Flyte needs.

The blueprint is rendered by the role's own tasks/blueprint.yml in a tiny playbook, with the role's
defaults and vars, so what is validated here is the text the role puts into the ConfigMap.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.homelab.flyte.tests.blueprint_schema import SCHEMA_PATH, Tag, load, load_schema, problems

REPO = Path(__file__).resolve().parents[2]
RENDER = """\
- name: Render the authentik role's blueprint
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Render it with the role's defaults and vars
      ansible.builtin.include_role:
        name: homelab.flyte.authentik
        tasks_from: blueprint
    - name: Write it out
      ansible.builtin.copy:
        content: "{{ authentik_blueprint }}"
        dest: "{{ blueprint_out }}"
        mode: "0644"
"""
SCOPES = ["openid", "profile", "email", "offline_access"]
PROVIDER, APPLICATION = "authentik_providers_oauth2.oauth2provider", "authentik_core.application"
SCOPE_MAPPING = "authentik_providers_oauth2.scopemapping"


def render(directory: Path, extra_vars: dict) -> str:
    (directory / "render.yml").write_text(RENDER)
    (directory / "vars.json").write_text(json.dumps({**extra_vars, "blueprint_out": str(directory / "blueprint.yaml")}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run(["ansible-playbook", str(directory / "render.yml"), "-e", f"@{directory / 'vars.json'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return (directory / "blueprint.yaml").read_text()


@pytest.fixture(scope="module")
def schema() -> dict:
    loaded = load_schema()
    if loaded is None:
        pytest.skip(f"Authentik's blueprint schema is not on this machine ({SCHEMA_PATH})")
    return loaded


@pytest.fixture(scope="module")
def default_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The defaults, with the client id published by the secrets role."""
    return render(tmp_path_factory.mktemp("default"), {
        "homelab_flyte_hostname": "flyte.example.com",
        "secrets_flyte": {"oidc_client_id": "flyte-web", "namespace": "flyte-system", "secret_name": "flyte-secrets"},
    })


@pytest.fixture(scope="module")
def custom_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every knob turned; no secrets role, and another host name."""
    return render(tmp_path_factory.mktemp("custom"), {
        "homelab_flyte_hostname": "flyte.lab.internal",
        "authentik_application_slug": "flyte-prod",
        "authentik_flytectl_client_id": "pyflyte-cli",
        "authentik_flytectl_redirect_uri": "http://localhost:8089/callback",
        "authentik_authorization_flow": "default-provider-authorization-explicit-consent",
        "authentik_invalidation_flow": "homelab-logout",
        "authentik_signing_key_name": "homelab \"signing\" key: 2025",
        "authentik_sub_mode": "hashed_user_id",
        "authentik_client_secret_env": "HOMELAB_FLYTE_SECRET",
        "authentik_blueprint_configmap": "flyte-blueprint",
    })


def entry(doc: dict, model: str, **identifiers) -> dict:
    found = [e for e in doc["entries"] if e["model"] == model and e["identifiers"] == identifiers]
    assert len(found) == 1, f"expected one {model} {identifiers}, found {len(found)}"
    return found[0]


def find(model: str, field: str, value: str) -> Tag:
    return Tag("!Find", [model, [field, value]])


def test_rendered_blueprints_are_valid(schema, default_text, custom_text):
    assert problems(default_text, schema) == []
    assert problems(custom_text, schema) == []


def test_confidential_provider_for_flyte(default_text):
    doc = load(default_text)
    assert doc["version"] == 1 and doc["metadata"]["name"] == "homelab-flyte-oidc"
    attrs = entry(doc, PROVIDER, name="flyte-oidc-provider")["attrs"]
    assert attrs["client_type"] == "confidential"
    assert attrs["client_id"] == "flyte-web"  # from the secrets role's fact
    # The secret is read by the worker from its environment; the blueprint never holds it.
    assert attrs["client_secret"] == Tag("!Env", "FLYTE_OIDC_CLIENT_SECRET")
    assert attrs["redirect_uris"] == [{"matching_mode": "strict", "url": "https://flyte.example.com/callback"}]
    assert attrs["signing_key"] == find("authentik_crypto.certificatekeypair", "name", "authentik Self-signed Certificate")
    assert attrs["authorization_flow"] == find("authentik_flows.flow", "slug", "default-provider-authorization-implicit-consent")
    assert attrs["invalidation_flow"] == find("authentik_flows.flow", "slug", "default-provider-invalidation-flow")
    assert attrs["property_mappings"] == [
        find(SCOPE_MAPPING, "managed", f"goauthentik.io/providers/oauth2/scope-{scope}") for scope in SCOPES
    ] + [Tag("!KeyOf", "flyte-scope-all")]
    assert attrs["issuer_mode"] == "per_provider"
    assert attrs["sub_mode"] == "user_username"


def test_scope_all_puts_scp_into_the_tokens(default_text):
    """FlyteAdmin reads scp (tests/unit/test_flyteadmin_tokens.py runs the tokens through its checks)."""
    doc = load(default_text)
    mapping = entry(doc, SCOPE_MAPPING, name="homelab.flyte: Flyte scope 'all' (scp claim for FlyteAdmin)")
    assert mapping["id"] == "flyte-scope-all" and doc["entries"][0] is mapping  # before the providers that !KeyOf it
    assert mapping["attrs"]["scope_name"] == "all"
    assert mapping["attrs"]["expression"].strip() == 'return {"scp": ["all"]}'
    for name in ("flyte-oidc-provider", "flytectl-oidc-provider"):
        attrs = entry(doc, PROVIDER, name=name)["attrs"]
        # The access token is built from the ID token: only with the mappings' claims in it does it carry scp.
        assert attrs["include_claims_in_id_token"] is True
        assert Tag("!KeyOf", "flyte-scope-all") in attrs["property_mappings"]


def test_flyte_application(default_text):
    doc = load(default_text)
    provider_id = entry(doc, PROVIDER, name="flyte-oidc-provider")["id"]
    attrs = entry(doc, APPLICATION, slug="flyte")["attrs"]
    assert attrs["provider"] == Tag("!KeyOf", provider_id)
    assert attrs["meta_launch_url"] == "https://flyte.example.com/console"


def test_public_flytectl_client_signs_with_the_same_key(default_text):
    doc = load(default_text)
    flyte = entry(doc, PROVIDER, name="flyte-oidc-provider")["attrs"]
    provider = entry(doc, PROVIDER, name="flytectl-oidc-provider")
    attrs = provider["attrs"]
    assert attrs["client_type"] == "public" and attrs["client_id"] == "flytectl"
    assert "client_secret" not in attrs
    assert attrs["redirect_uris"] == [{"matching_mode": "strict", "url": "http://localhost:53593/callback"}]
    assert attrs["signing_key"] == flyte["signing_key"]
    assert attrs["property_mappings"] == flyte["property_mappings"]
    assert entry(doc, APPLICATION, slug="flytectl")["attrs"]["provider"] == Tag("!KeyOf", provider["id"])


def test_variables_reach_the_blueprint(custom_text):
    doc = load(custom_text)
    flyte = entry(doc, PROVIDER, name="flyte-oidc-provider")["attrs"]
    assert flyte["client_id"] == "flyte"  # the default without the secrets role
    assert flyte["client_secret"] == Tag("!Env", "HOMELAB_FLYTE_SECRET")
    assert flyte["redirect_uris"] == [{"matching_mode": "strict", "url": "https://flyte.lab.internal/callback"}]
    assert flyte["authorization_flow"] == find("authentik_flows.flow", "slug", "default-provider-authorization-explicit-consent")
    assert flyte["invalidation_flow"] == find("authentik_flows.flow", "slug", "homelab-logout")
    # A quote and a colon in a value stay data, not YAML syntax.
    assert flyte["signing_key"] == find("authentik_crypto.certificatekeypair", "name", "homelab \"signing\" key: 2025")
    assert flyte["sub_mode"] == "hashed_user_id"
    entry(doc, APPLICATION, slug="flyte-prod")
    flytectl = entry(doc, PROVIDER, name="flytectl-oidc-provider")["attrs"]
    assert flytectl["client_id"] == "pyflyte-cli"
    assert flytectl["redirect_uris"] == [{"matching_mode": "strict", "url": "http://localhost:8089/callback"}]
    assert flytectl["signing_key"] == flyte["signing_key"]
    assert "/blueprints/mounted/cm-flyte-blueprint/flyte.yaml" in custom_text


def _set(path: list, value):
    """A mutation that sets doc[path...] = value."""
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _rename(path: list, old: str, new: str):
    def mutate(doc):
        target = doc
        for key in path:
            target = target[key]
        target[new] = target.pop(old)
    return mutate


FLYTE_ATTRS = ["entries", 1, "attrs"]
MUTATIONS = {
    "redirect_uris as a string": (_set(FLYTE_ATTRS + ["redirect_uris"], "https://flyte.example.com/callback"),
                                  "$.entries[1].attrs.redirect_uris: 'https://flyte.example.com/callback' is not of type 'array'"),
    "redirect_uris as a list of strings": (_set(FLYTE_ATTRS + ["redirect_uris"], ["https://flyte.example.com/callback"]),
                                           "$.entries[1].attrs.redirect_uris[0]: 'https://flyte.example.com/callback' is not of type 'object'"),
    "redirect_uris from a string tag": (_set(FLYTE_ATTRS + ["redirect_uris"], Tag("!Format", ["https://%s/callback", "flyte.example.com"])),
                                        "$.entries[1].attrs.redirect_uris: !Format"),
    "matching_mode outside its enum": (_set(FLYTE_ATTRS + ["redirect_uris", 0, "matching_mode"], "exact"),
                                       "matching_mode: 'exact' is not one of ['strict', 'regex']"),
    "client_type outside its enum": (_set(["entries", 3, "attrs", "client_type"], "Public"),
                                     "$.entries[3].attrs.client_type: 'Public' is not one of ['confidential', 'public']"),
    "flow as a literal slug": (_set(FLYTE_ATTRS + ["authorization_flow"], "default-provider-authorization-implicit-consent"),
                               "$.entries[1].attrs.authorization_flow: 'default-provider-authorization-implicit-consent' is not a 'uuid'"),
    "unknown model": (_set(["entries", 1, "model"], "authentik_providers_oauth2.oauth2provide"),
                      "$.entries[1].model: unknown model 'authentik_providers_oauth2.oauth2provide'"),
    "misspelt field": (_rename(FLYTE_ATTRS, "redirect_uris", "redirect_uri"),
                       "$.entries[1].attrs.redirect_uri: not a field of authentik_providers_oauth2.oauth2provider"),
    "!KeyOf of an unknown id": (_set(["entries", 2, "attrs", "provider"], Tag("!KeyOf", "flyte-providr")),
                                "$.entries[2]: !KeyOf flyte-providr names no earlier entry's id"),
    "!KeyOf of a later entry": (_set(["entries", 2, "attrs", "provider"], Tag("!KeyOf", "flytectl-provider")),
                                "$.entries[2]: !KeyOf flytectl-provider names no earlier entry's id"),
    "provider without invalidation flow": (lambda doc: doc["entries"][1]["attrs"].pop("invalidation_flow"),
                                           "$.entries[1]: authentik_providers_oauth2.oauth2provider needs invalidation_flow"),
    "scope mapping without its expression": (lambda doc: doc["entries"][0]["attrs"].pop("expression"),
                                             "$.entries[0]: authentik_providers_oauth2.scopemapping needs expression"),
    "!Env with a scalar default": (_set(FLYTE_ATTRS + ["client_secret"], Tag("!Env", "FLYTE_OIDC_CLIENT_SECRET, changeme")),
                                   "!Env FLYTE_OIDC_CLIENT_SECRET, changeme is read as one name"),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_validation_rejects_broken_blueprints(schema, default_text, mutation):
    doc = load(default_text)
    assert problems(doc, schema) == []
    mutate, expected = MUTATIONS[mutation]
    broken = copy.deepcopy(doc)
    mutate(broken)
    found = problems(broken, schema)
    assert any(expected in message for message in found), found


def test_an_unknown_tag_does_not_load(default_text):
    text = default_text.replace("client_secret: !Env", "client_secret: !Secret")
    assert text != default_text
    with pytest.raises(yaml.constructor.ConstructorError, match="!Secret"):
        load(text)
