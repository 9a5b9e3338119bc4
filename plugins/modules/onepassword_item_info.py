#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: onepassword_item_info
short_description: Read the fields of a 1Password item from a 1Password Connect server
version_added: 0.1.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Reads the item O(item) of the vault O(vault) through a 1Password Connect server with the official
    C(onepasswordconnectsdk) and returns its fields by label.
  - Fails, naming them, when any label of O(fields) is missing from the item or empty.
  - The result holds secret values. Set C(no_log) on the task, as the C(homelab.flyte.secrets) role does.
options:
  connect_host:
    description:
      - URL of the 1Password Connect server, without the C(/v1) path.
      - Defaults to the environment variable E(OP_CONNECT_HOST), which AWX's credential injects.
    type: str
    required: true
  connect_token:
    description:
      - Access token of the 1Password Connect server.
      - Defaults to the environment variable E(OP_CONNECT_TOKEN).
    type: str
    required: true
  vault:
    description: Name of the vault.
    type: str
    required: true
  item:
    description: Title of the item.
    type: str
    required: true
  fields:
    description: Labels the item must have, with a non-empty value.
    type: list
    elements: str
    default: []
  validate_certs:
    description: Whether to verify the server's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: A CA bundle to verify the server's certificate with, instead of the default one.
    type: path
  timeout:
    description: Seconds to wait for each request.
    type: int
    default: 10
requirements:
  - onepasswordconnectsdk >= 2.0
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show a difference of.
notes:
  - Makes three requests - the vault by name, the item by title, the item itself.
seealso:
  - name: 1Password Connect
    description: The REST API the SDK speaks.
    link: https://developer.1password.com/docs/connect/
"""

EXAMPLES = r"""
- name: Read the Flyte item
  homelab.flyte.onepassword_item_info:
    connect_host: http://onepassword-connect.onepassword.svc:8080
    connect_token: "{{ vault_op_connect_token }}"
    vault: Secrets
    item: flyte-secrets
    fields: [username, password, oidc-client-id, oidc-client-secret]
  register: flyte_item
  no_log: true
"""

RETURN = r"""
fields:
  description: The item's fields, value by label. Secret values - keep the task under C(no_log).
  returned: success
  type: dict
  sample: {"username": "flyte", "password": "..."}
vault_id:
  description: ID of the vault.
  returned: success
  type: str
  sample: 7vs66j55o6md5btwcph272mva4
item_id:
  description: ID of the item.
  returned: success
  type: str
  sample: kp2td65r4wbuhocwhhijpdbfqq
version:
  description: Version of the item, which grows with every change in 1Password.
  returned: success
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.homelab.flyte.plugins.module_utils.onepassword import (
    HAS_ONEPASSWORD,
    ONEPASSWORD_IMPORT_ERROR,
    ConnectError,
    missing_fields,
    read_item,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            connect_host=dict(type="str", required=True, fallback=(env_fallback, ["OP_CONNECT_HOST"])),
            connect_token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["OP_CONNECT_TOKEN"])),
            vault=dict(type="str", required=True),
            item=dict(type="str", required=True),
            fields=dict(type="list", elements="str", default=[]),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    if not HAS_ONEPASSWORD:
        module.fail_json(msg=missing_required_lib("onepasswordconnectsdk"), exception=ONEPASSWORD_IMPORT_ERROR)

    params = module.params
    try:
        found = read_item(params["connect_host"], params["connect_token"], params["vault"], params["item"],
                          validate_certs=params["validate_certs"], ca_path=params["ca_path"], timeout=params["timeout"])
    except ConnectError as error:
        module.fail_json(msg=str(error))

    missing = missing_fields(found["fields"], params["fields"])
    if missing:
        module.fail_json(msg=f"The 1Password item vaults/{params['vault']}/items/{params['item']} lacks a value for "
                             f"{', '.join(missing)}: add {'that field' if len(missing) == 1 else 'those fields'} in 1Password.",
                         missing=missing)
    module.exit_json(changed=False, **found)


if __name__ == "__main__":
    main()
