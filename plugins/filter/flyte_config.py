# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter for the flyte role's preflight: flyte_unknown_config_keys (documented in its .yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.flyte.plugins.module_utils.flyte_config import unknown_config_keys


def flyte_unknown_config_keys(manifests):
    if not isinstance(manifests, (str, list)):
        raise AnsibleFilterError("flyte_unknown_config_keys takes the output of helm template or a list of objects, "
                                 f"got {type(manifests).__name__}")
    try:
        return unknown_config_keys(manifests)
    except Exception as error:  # a manifest helm wrote that is not YAML: say so, do not crash the run
        raise AnsibleFilterError(f"flyte_unknown_config_keys could not read the manifests: {error}") from error


class FilterModule:
    def filters(self):
        return {"flyte_unknown_config_keys": flyte_unknown_config_keys}
