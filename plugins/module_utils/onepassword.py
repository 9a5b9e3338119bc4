# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read one 1Password item through a 1Password Connect server, with errors a user can act on."""

from __future__ import annotations

import ssl
import traceback

try:
    import httpx
    from onepasswordconnectsdk.client import new_client
    from onepasswordconnectsdk.config import ClientConfig
    from onepasswordconnectsdk.errors import OnePasswordConnectSDKError
except ImportError:
    HAS_ONEPASSWORD = False
    ONEPASSWORD_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_ONEPASSWORD = True
    ONEPASSWORD_IMPORT_ERROR = None


class ConnectError(Exception):
    """A failure to read the item, worded for the person running the playbook."""


def _tls(validate_certs: bool, ca_path: str | None):
    if not validate_certs:
        return False
    return ssl.create_default_context(cafile=ca_path) if ca_path else True


def read_item(host: str, token: str, vault: str, item: str, validate_certs: bool = True,
              ca_path: str | None = None, timeout: float = 10) -> dict:
    """Return {'vault_id', 'item_id', 'version', 'fields': {label: value}} of vaults/<vault>/items/<item>.

    Three requests: the vault by name, the item by title, the full item (summaries carry no fields).
    """
    client = new_client(host.rstrip("/"), token, config=ClientConfig(verify=_tls(validate_certs, ca_path), timeout=timeout))
    path = f"vaults/{vault}/items/{item}"
    try:
        found_vault = client.get_vault_by_title(vault)
        found_item = client.get_item_by_title(item, found_vault.id)
    except httpx.HTTPError as error:
        raise ConnectError(f"Cannot reach the 1Password Connect server at {host}: {error}. "
                           "Check the URL (OP_CONNECT_HOST) and that the server is up.") from error
    except OnePasswordConnectSDKError as error:
        raise ConnectError(_explain(str(error), host, vault, item, path)) from error
    except ValueError as error:  # a reply that is not the Connect API's JSON (a proxy's error page)
        raise ConnectError(f"{host} did not answer like a 1Password Connect server while reading {path}: {error}") from error
    fields = {field.label: field.value for field in found_item.fields or [] if field.label}
    return {"vault_id": found_vault.id, "item_id": found_item.id, "version": found_item.version, "fields": fields}


def _explain(message: str, host: str, vault: str, item: str, path: str) -> str:
    if "401" in message or "403" in message:
        return (f"1Password Connect at {host} refused the token while reading {path}: check the Connect "
                "access token (OP_CONNECT_TOKEN) and that it may read the vault.")
    if "Found 0 vaults" in message:
        return f"1Password Connect has no vault named {vault!r} that the token can read."
    if "Found 0 items" in message:
        return f"The 1Password vault {vault!r} has no item titled {item!r}."
    if "Found" in message:
        return f"{path} is ambiguous: {message}. Give the vault and the item unique names."
    return f"1Password Connect failed to read {path}: {message}"


def missing_fields(fields: dict, required: list[str]) -> list[str]:
    """The required labels that are absent or empty, in the order given."""
    return [label for label in required if not fields.get(label)]
