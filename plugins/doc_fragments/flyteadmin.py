# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # How the modules reach FlyteAdmin's HTTP API; the argument spec is connection_argument_spec() in
    # plugins/module_utils/flyteadmin.py.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of FlyteAdmin's HTTP endpoint - scheme, host and port, without C(/api/v1).
      - In the cluster C(http://flyteadmin.flyte-system.svc.cluster.local) (the flyte-core chart's Service, port 80), from outside
        the Gateway's host, or C(http://localhost:8088) through C(kubectl -n flyte-system port-forward svc/flyteadmin 8088:80).
      - Redirects are not followed; a redirect fails the task naming its target.
    type: str
    required: true
  auth:
    description:
      - How to authenticate to FlyteAdmin.
      - V(auto) reads FlyteAdmin's C(/.well-known/oauth-authorization-server). When FlyteAdmin serves it (its
        authentication is on) the module takes OAuth2 client credentials; when FlyteAdmin answers 501 or 404 (authentication
        off) it sends no token.
      - V(client_credentials) always takes a token with O(client_id) and O(client_secret), from O(token_url) or the
        discovered token endpoint.
      - V(none) never sends a token and makes no discovery request.
    type: str
    choices: [auto, none, client_credentials]
    default: auto
  client_id:
    description:
      - ID of a confidential OAuth2 client allowed the C(client_credentials) grant, whose tokens FlyteAdmin accepts.
      - Required when FlyteAdmin's authentication is on.
    type: str
  client_secret:
    description: Secret of O(client_id), sent to the token endpoint with HTTP Basic authentication.
    type: str
  token_url:
    description:
      - Token endpoint to use instead of the C(token_endpoint) of FlyteAdmin's OAuth2 metadata, for instance when that
        host name does not resolve where the task runs.
      - With O(auth=client_credentials) it also spares the discovery request.
    type: str
  scopes:
    description:
      - Scopes to request with the token. FlyteAdmin lets a token through only with the scope C(all).
      - Defaults to the C(scopes) of FlyteAdmin's C(/config/v1/flyte_client), as Flyte's own clients do. V([]) requests none.
    type: list
    elements: str
  audience:
    description:
      - C(audience) parameter of the token request, for identity providers that issue a token per audience.
      - Defaults to the C(audience) of FlyteAdmin's C(/config/v1/flyte_client) when that is set; V("") sends none.
    type: str
  validate_certs:
    description: Whether to verify the TLS certificates of FlyteAdmin and of the token endpoint.
    type: bool
    default: true
  ca_path:
    description: A CA bundle to verify FlyteAdmin's and the token endpoint's certificates with, instead of the default one.
    type: path
  timeout:
    description: Seconds to wait for each request.
    type: int
    default: 30
"""
