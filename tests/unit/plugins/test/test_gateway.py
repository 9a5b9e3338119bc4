"""The route_accepted Jinja test: a route counts as accepted only when enough parents accepted its current generation."""

from __future__ import annotations

import pytest

from ansible_collections.homelab.flyte.plugins.test.gateway import route_accepted


def route(generation: int, *parents: list[dict]) -> dict:
    return {"metadata": {"generation": generation}, "status": {"parents": [{"conditions": c} for c in parents]}}


ACCEPTED_2 = {"type": "Accepted", "status": "True", "observedGeneration": 2}


@pytest.mark.parametrize(("candidate", "parents", "expected"), [
    (route(2, [ACCEPTED_2]), 1, True),
    (route(2, [ACCEPTED_2]), 2, False),
    (route(2, [ACCEPTED_2], [ACCEPTED_2]), 2, True),
    (route(3, [ACCEPTED_2]), 1, False),
    (route(2, [{**ACCEPTED_2, "status": "False"}]), 1, False),
    (route(2, [{"type": "Accepted", "status": "True"}]), 1, False),
    (route(2, [{**ACCEPTED_2, "type": "ResolvedRefs"}]), 1, False),
    ({"metadata": {"generation": 1}}, 1, False),
    (None, 1, False),
], ids=["one-of-one", "one-of-two", "two-of-two", "older-generation", "refused", "no-observed-generation",
        "other-condition", "no-status", "not-a-route"])
def test_route_accepted(candidate, parents, expected):
    assert route_accepted(candidate, parents) is expected
