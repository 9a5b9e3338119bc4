"""CloudNativePG's status rules that the database role's Jinja tests and the health checks share."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.flyte.plugins.module_utils import cnpg
from ansible_collections.homelab.flyte.plugins.test import cnpg as cnpg_jinja_tests


def cluster(phase=cnpg.HEALTHY_PHASE, ready=1):
    status = {"phase": phase} if phase else {}
    if ready is not None:
        status["readyInstances"] = ready
    return {"metadata": {"name": "flyte-postgres"}, "spec": {"instances": 1}, "status": status}


@pytest.mark.parametrize(("candidate", "instances", "expected"), [
    (cluster(), 1, True),
    (cluster(), "1", True),  # an inventory value arrives as a string
    (cluster(ready=3), 1, False),  # scaled down from 3: the old instances are still counted
    (cluster(ready=0), 1, False),
    (cluster(ready=None), 1, False),
    (cluster(phase="Setting up primary"), 1, False),
    (cluster(phase=None, ready=None), 1, False),
    ({"metadata": {"name": "flyte-postgres"}}, 1, False),
    (None, 1, False),
], ids=["healthy", "instances-as-text", "more-ready-than-wanted", "none-ready", "no-ready-count", "other-phase",
        "no-status-yet", "no-status-key", "not-a-cluster"])
def test_cluster_healthy(candidate, instances, expected):
    assert cnpg.cluster_healthy(candidate, instances) is expected


def database(generation=2, applied=True, observed=2):
    status = {}
    if applied is not None:
        status["applied"] = applied
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "flyte-datacatalog", "generation": generation}, "status": status}


@pytest.mark.parametrize(("candidate", "expected"), [
    (database(), True),
    (database(observed=1), False),
    (database(applied=False), False),
    (database(applied=None), False),
    (database(observed=None), False),
    ({"metadata": {"name": "flyte-datacatalog"}, "status": {"applied": True, "observedGeneration": 2}}, False),
    (None, False),
], ids=["applied", "older-generation", "refused", "no-applied-yet", "no-observed-generation", "no-generation", "not-a-database"])
def test_database_applied(candidate, expected):
    assert cnpg.database_applied(candidate) is expected


def test_the_primary_selector_names_the_operators_labels():
    assert cnpg.PRIMARY_SELECTOR.format(cluster="flyte-postgres") == "cnpg.io/cluster=flyte-postgres,cnpg.io/instanceRole=primary"


def test_the_jinja_tests_are_the_module_utils_functions():
    assert cnpg_jinja_tests.TestModule().tests() == {"cnpg_cluster_healthy": cnpg.cluster_healthy, "cnpg_database_applied": cnpg.database_applied}
