# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CloudNativePG's names and status rules, in one place for the modules, the health checks and the roles' Jinja tests.

The values are the operator's own (cloudnative-pg 1.27): the healthy phase is PhaseHealthy in
api/v1/cluster_types.go, the labels are ClusterLabelName and ClusterInstanceRoleLabelName with the
value ClusterRoleLabelPrimary in pkg/utils/labels_annotations.go, and a Database's status.applied
and status.observedGeneration are DatabaseStatus's in api/v1/database_types.go.
"""

from __future__ import annotations

API_VERSION = "postgresql.cnpg.io/v1"
HEALTHY_PHASE = "Cluster in healthy state"
CLUSTER_LABEL = "cnpg.io/cluster"
INSTANCE_ROLE_LABEL = "cnpg.io/instanceRole"
PRIMARY_SELECTOR = CLUSTER_LABEL + "={cluster}," + INSTANCE_ROLE_LABEL + "=primary"


def cluster_healthy(cluster, instances) -> bool:
    """Whether a Cluster (as the API server returns it) is in the healthy phase with exactly `instances` instances ready.

    Exactly, not at least: after a scale-down is applied, the status still counts the old instances until the
    operator has removed them.
    """
    if not isinstance(cluster, dict):
        return False
    status = cluster.get("status") or {}
    return status.get("phase") == HEALTHY_PHASE and status.get("readyInstances") == int(instances)


def database_applied(database) -> bool:
    """Whether the operator has applied a Database's current generation (status.applied for its metadata.generation)."""
    if not isinstance(database, dict):
        return False
    status = database.get("status") or {}
    generation = (database.get("metadata") or {}).get("generation")
    return status.get("applied") is True and generation is not None and status.get("observedGeneration") == generation
