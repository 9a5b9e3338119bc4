# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests cnpg_cluster_healthy and cnpg_database_applied: CloudNativePG's status rules, from module_utils/cnpg.py."""

from __future__ import annotations

from ansible_collections.homelab.flyte.plugins.module_utils.cnpg import cluster_healthy, database_applied


class TestModule:
    def tests(self):
        return {"cnpg_cluster_healthy": cluster_healthy, "cnpg_database_applied": database_applied}
