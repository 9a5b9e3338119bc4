"""Do the tokens Authentik issues to Flyte's clients pass FlyteAdmin 1.16.8's checks?

The blueprint and the flyte-core values are rendered by the roles' own task files (the authentik role's
blueprint and published fact, then the flyte role's values from that fact), so what is checked here is what
the collection deploys. Two small stand-ins, for this test only, do the rest:

* ``authentik_token`` builds the claims of a token the way Authentik builds them (goauthentik/authentik,
  ``authentik/providers/oauth2/id_token.py`` ``IDToken.new``/``to_dict``/``to_access_token``, with the scope
  handling of ``views/authorize.py`` ``check_scope`` and ``views/token.py`` ``TokenParams.__check_scopes`` and the
  claims of ``views/userinfo.py`` ``get_claims``; the default scope mappings of
  ``blueprints/system/providers-oauth2.yaml``). An access token is the ID token's claims plus ``azp`` (the
  client id) and ``uid``; with ``include_claims_in_id_token`` the scope mappings' claims are in both. Authentik
  sets no ``client_id`` claim, no ``scope`` and no ``scp``: ``aud`` is the client id.
* ``verify_claims`` and ``blanket_authorization`` port FlyteAdmin's checks of a bearer access token
  (flyteorg/flyte v1.16.8, ``flyteadmin/auth/authzserver/claims_verifier.go`` ``verifyClaims``,
  ``flyteadmin/auth/interceptor.go`` ``BlanketAuthorization``), ``identity_from_id_token`` the console's path
  (``flyteadmin/auth/token.go`` ``IdentityContextFromIDTokenToken``: the ID token from FlyteAdmin's cookie always
  gets the scope ``all``).

FlyteAdmin reads the scopes from ``scp`` only and grants ``all`` by itself only to a token without ``client_id``
and without scopes. Authentik's tokens pass that rule today only because they lack ``client_id``; an Authentik that
adds it (RFC 9068 ``client_id``, requested in goauthentik/authentik#22070 and confirmed there) would be refused
unless the token carries ``scp`` with ``all``. Hence both shapes below.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from ansible_collections.homelab.flyte.tests.blueprint_schema import Tag, load

REPO = Path(__file__).resolve().parents[2]
AUTHENTIK = "https://auth.example.com"
RENDER = """\
- name: Render the blueprint and the flyte-core values the way the roles do
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The authentik role's blueprint
      ansible.builtin.include_role:
        name: homelab.flyte.authentik
        tasks_from: blueprint
    - name: The authentik role's published fact
      ansible.builtin.include_role:
        name: homelab.flyte.authentik
        tasks_from: facts
    - name: The flyte role's values, from that fact
      ansible.builtin.include_role:
        name: homelab.flyte.flyte
        tasks_from: values
    - name: Write both out
      ansible.builtin.copy:
        content: "{{ {'blueprint': authentik_blueprint, 'values': flyte_helm_values} | to_json }}"
        dest: "{{ render_out }}"
        mode: "0600"
"""
FACTS = {
    "authentik_url": AUTHENTIK, "homelab_flyte_hostname": "flyte.example.com",
    "secrets_flyte": {"oidc_client_id": "flyte", "namespace": "flyte-system", "secret_name": "flyte-secrets"},
    "database_connection": {"host": "flyte-postgres-rw", "port": 5432, "username": "flyte",
                            "databases": {"admin": "flyteadmin", "datacatalog": "datacatalog"},
                            "password_secret": {"name": "flyte-db-credentials", "key": "password"}},
    "storage_flyte": {"endpoint": "http://flyte-s3:7070", "bucket": "flyte-data", "region": "us-east-1",
                      "credentials_secret": "flyte-s3-credentials", "access_key_id_key": "AWS_ACCESS_KEY_ID",
                      "secret_access_key_key": "AWS_SECRET_ACCESS_KEY"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("tokens")
    (directory / "render.yml").write_text(RENDER)
    (directory / "vars.json").write_text(json.dumps({**FACTS, "render_out": str(directory / "out.json")}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run(["ansible-playbook", str(directory / "render.yml"), "-e", f"@{directory / 'vars.json'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads((directory / "out.json").read_text())
    return {"blueprint": load(out["blueprint"]), "values": out["values"]}


# --- Authentik ---------------------------------------------------------------------------------------

# The claims of Authentik's default scope mappings, blueprints/system/providers-oauth2.yaml (scope-openid and
# scope-offline_access return nothing; email_verified is False there).
SYSTEM_MAPPINGS = {
    "goauthentik.io/providers/oauth2/scope-openid": ("openid", lambda user: {}),
    "goauthentik.io/providers/oauth2/scope-email": ("email", lambda user: {"email": user.email,
                                                                           "email_verified": False}),
    "goauthentik.io/providers/oauth2/scope-profile": ("profile", lambda user: {
        "name": user.name, "given_name": user.name, "preferred_username": user.username, "nickname": user.username,
        "groups": list(user.groups)}),
    "goauthentik.io/providers/oauth2/scope-offline_access": ("offline_access", lambda user: {}),
}


@dataclass(frozen=True)
class User:
    username: str
    name: str
    email: str
    groups: tuple[str, ...] = ()


ALICE = User("alice", "Alice Example", "alice@example.com", ("flyte-users",))


def evaluate(expression: str, **context) -> dict | None:
    """An Authentik property-mapping expression: the body of a function of the context variables
    (authentik/lib/expression/evaluator.py wraps it the same way)."""
    namespace: dict = {}
    source = f"def handler({', '.join(context)}):\n{textwrap.indent(expression, '    ')}"
    exec(source, namespace)  # noqa: S102 - the expression of the collection's own template
    return namespace["handler"](**context)


def scope_mappings(blueprint: dict, provider: dict) -> dict[str, object]:
    """scope name -> a function of the user giving the mapping's claims, for the provider's property_mappings."""
    entries = {e.get("id"): e for e in blueprint["entries"]}
    mappings = {}
    for ref in provider["property_mappings"]:
        assert isinstance(ref, Tag), ref
        if ref.name == "!Find":
            model, (field, value) = ref.args
            assert (model, field) == ("authentik_providers_oauth2.scopemapping", "managed"), ref
            scope, claims = SYSTEM_MAPPINGS[value]
        else:
            assert ref.name == "!KeyOf", ref
            entry = entries[ref.args]
            assert entry["model"] == "authentik_providers_oauth2.scopemapping", entry
            scope, expression = entry["attrs"]["scope_name"], entry["attrs"]["expression"]

            def claims(user, expression=expression):
                return evaluate(expression, request=None, user=user, token=None, provider=None)
        mappings[scope] = claims
    return mappings


def provider_of(blueprint: dict, client_id: str) -> tuple[dict, str]:
    """The provider attrs with this client id, and the slug of its application (its issuer path)."""
    entries = [e for e in blueprint["entries"] if e["model"] == "authentik_providers_oauth2.oauth2provider"]
    providers = {e["id"]: e["attrs"] for e in entries}
    names = {e["id"]: e["identifiers"] for e in entries}
    for entry in blueprint["entries"]:
        if entry["model"] == "authentik_core.application":
            attrs = providers[entry["attrs"]["provider"].args]
            if attrs["client_id"] == client_id:
                return {**attrs, **names[entry["attrs"]["provider"].args]}, entry["identifiers"]["slug"]
    raise AssertionError(f"no provider with client id {client_id}")


def authentik_token(blueprint: dict, client_id: str, grant: str, requested: list[str], *, kind: str = "access",
                    with_client_id: bool = False) -> dict:
    """The claims of the token Authentik issues to client_id."""
    provider, slug = provider_of(blueprint, client_id)
    mappings = scope_mappings(blueprint, provider)
    # Requested scopes the provider has no mapping for are dropped (authorize.py check_scope, token.py __check_scopes).
    granted = set(requested) & set(mappings)
    if grant == "client_credentials":
        # token.py __post_init_client_credentials_generated: a service account per provider, no e-mail.
        user = User(f"ak-{provider['name']}-client_credentials", "Autogenerated user", "")
    else:
        user = ALICE
    assert provider["sub_mode"] == "user_username"
    now = 1_750_000_000
    claims = {"iss": f"{AUTHENTIK}/application/o/{slug}/", "sub": user.username, "aud": provider["client_id"],
              "exp": now + 300, "iat": now, "auth_time": now, "acr": "goauthentik.io/providers/oauth2/default"}
    if grant == "authorization_code":
        claims |= {"amr": ["pwd"], "sid": hashlib.sha256(b"session").hexdigest()}
    if provider.get("include_claims_in_id_token"):
        for scope in sorted(granted):  # get_claims merges the mappings ordered by scope name
            claims |= mappings[scope](user) or {}
    if kind == "access":
        claims |= {"azp": provider["client_id"], "uid": "0123456789abcdef"}
        if with_client_id:
            claims["client_id"] = provider["client_id"]
    return claims


# --- FlyteAdmin 1.16.8 -------------------------------------------------------------------------------

class Refused(Exception):
    """FlyteAdmin answers Unauthenticated with this message."""


@dataclass(frozen=True)
class Identity:
    audience: str
    subject: str
    client_id: str
    scopes: frozenset[str]


def verify_claims(expected_audience: set[str], claims: dict) -> Identity:
    """claims_verifier.go verifyClaims (aud read by ory/x jwtx: a string or a list of strings)."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    found = next((a for a in audiences if a in expected_audience), None)
    if found is None:
        raise Refused(f"invalid audience [{claims}], wanted [{sorted(expected_audience)}]")
    client_id = claims.get("client_id", "")
    if not isinstance(client_id, str):
        raise TypeError("client_id is not a string (FlyteAdmin panics on the type assertion)")
    scopes: set[str] = set()
    if "scp" in claims:
        scp = claims["scp"]
        if isinstance(scp, list):
            if not all(isinstance(s, str) for s in scp):
                raise TypeError("scp holds a non-string (FlyteAdmin panics on the type assertion)")
            scopes = set(scp)
        elif isinstance(scp, str):
            scopes = {scp}  # one scope, the whole string: "all offline" is not "all"
        else:
            raise Refused(f"failed getting scope claims due to  unknown type {type(scp).__name__} with value {scp}")
    if "email" in claims and not isinstance(claims["email"], str):
        raise TypeError("email is not a string (FlyteAdmin panics on the type assertion)")
    # A user-only access token without scopes is worth a login cookie: scope "all".
    if not client_id and not scopes:
        scopes = {"all"}
    return Identity(found, claims.get("sub", ""), client_id, frozenset(scopes))


def blanket_authorization(identity: Identity) -> Identity:
    """interceptor.go BlanketAuthorization: every FlyteAdmin method needs the scope "all"."""
    if "all" not in identity.scopes:
        raise Refused("authenticated user doesn't have required scope")
    return identity


def identity_from_id_token(claims: dict, client_id: str, issuer: str) -> Identity:
    """token.go IdentityContextFromIDTokenToken after go-oidc's Verify (audience and issuer)."""
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if client_id not in aud:
        raise Refused(f"oidc: expected audience {client_id!r} got {aud}")
    if claims["iss"] != issuer:
        raise Refused(f"oidc: id token issued by a different provider, expected {issuer!r} got {claims['iss']!r}")
    return Identity(aud[0], claims["sub"], "", frozenset({"all"}))


def admin_accepts(values: dict, claims: dict) -> Identity:
    """A bearer access token at FlyteAdmin: ValidateAccessToken (allowedAudience plus the public URL), then the
    scope check every method runs."""
    app_auth = values["configmap"]["adminServer"]["auth"]["appAuth"]
    public_url = values["configmap"]["adminServer"]["auth"]["authorizedUris"][0]
    expected = set(app_auth["externalAuthServer"]["allowedAudience"]) | {public_url}
    return blanket_authorization(verify_claims(expected, claims))


# --- the clients -------------------------------------------------------------------------------------

def client_token(rendered: dict, client: str, with_client_id: bool) -> Identity:
    """Log the client in the way it does, and present its token to FlyteAdmin."""
    blueprint, values = rendered["blueprint"], rendered["values"]
    auth = values["configmap"]["adminServer"]["auth"]
    flyte_client = auth["appAuth"]["thirdPartyConfig"]["flyteClient"]
    if client == "console":
        # FlyteAdmin's own login (userAuth.openId, authorization code); the console's calls carry the ID token
        # from FlyteAdmin's cookie.
        open_id = auth["userAuth"]["openId"]
        claims = authentik_token(blueprint, open_id["clientId"], "authorization_code", open_id["scopes"], kind="id")
        return identity_from_id_token(claims, open_id["clientId"], open_id["baseUrl"])
    if client == "flytectl":
        # PKCE with the public client and the scopes FlyteAdmin's /config/v1/flyte_client hands out.
        claims = authentik_token(blueprint, flyte_client["clientId"], "authorization_code", flyte_client["scopes"],
                                 with_client_id=with_client_id)
        return admin_accepts(values, claims)
    # FlytePropeller and the scheduler (configmap.admin: client id, no scopes, so the flyte_client scopes, as
    # flyteidl/clients/go/admin/token_source_provider.go does) and the flyte_project module (the same default,
    # plugins/module_utils/flyteadmin.py): client credentials of the confidential client.
    admin = values.get("configmap", {}).get("admin", {}).get("admin", {})
    client_id = values["secrets"]["adminOauthClientCredentials"]["clientId"]
    scopes = admin.get("scopes") or flyte_client["scopes"]
    claims = authentik_token(blueprint, client_id, "client_credentials", scopes, with_client_id=with_client_id)
    return admin_accepts(values, claims)


CLIENTS = ["console", "flytectl", "flytepropeller", "flytescheduler", "flyte_project"]


@pytest.mark.parametrize("with_client_id", [False, True], ids=["authentik-today", "with-client_id-claim"])
@pytest.mark.parametrize("client", CLIENTS)
def test_flyteadmin_accepts_the_token_of_every_client(rendered, client, with_client_id):
    identity = client_token(rendered, client, with_client_id)
    assert "all" in identity.scopes


@pytest.mark.parametrize("client", ["flytectl", "flytepropeller", "flyte_project"])
def test_access_tokens_carry_the_scope_all_where_flyteadmin_reads_it(rendered, client):
    """scp holds "all" itself, so the token passes whether or not Authentik adds client_id."""
    values, blueprint = rendered["values"], rendered["blueprint"]
    flyte_client = values["configmap"]["adminServer"]["auth"]["appAuth"]["thirdPartyConfig"]["flyteClient"]
    confidential = values["secrets"]["adminOauthClientCredentials"]["clientId"]
    client_id = flyte_client["clientId"] if client == "flytectl" else confidential
    grant = "authorization_code" if client == "flytectl" else "client_credentials"
    claims = authentik_token(blueprint, client_id, grant, flyte_client["scopes"])
    assert claims["scp"] == ["all"]
    # What Authentik itself puts there: aud and azp are the client id; no client_id, no scope claim.
    assert claims["aud"] == claims["azp"] == client_id
    assert "client_id" not in claims and "scope" not in claims


def test_the_port_refuses_what_flyteadmin_refuses():
    """The cases of flyteadmin/auth/authzserver/claims_verifier_test.go, and the scope check on top."""
    allowed = {"flyte", "https://flyte.example.com"}
    with pytest.raises(Refused, match=r"invalid audience"):
        verify_claims(allowed, {"aud": "someone-else"})
    with pytest.raises(Refused, match="authenticated user doesn't have required scope"):
        blanket_authorization(verify_claims(allowed, {"aud": "flyte", "client_id": "flyte", "scp": ["openid"]}))
    with pytest.raises(Refused, match="authenticated user doesn't have required scope"):
        blanket_authorization(verify_claims(allowed, {"aud": ["flyte"], "client_id": "flyte", "scp": "all offline"}))
    assert verify_claims(allowed, {"aud": "flyte", "scp": "all"}).scopes == {"all"}
    assert verify_claims(allowed, {"aud": ["x", "flyte"]}).scopes == {"all"}  # no client_id, no scopes
