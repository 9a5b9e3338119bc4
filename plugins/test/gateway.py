# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test route_accepted: whether every parent Gateway has accepted a route's current generation."""

from __future__ import annotations


def route_accepted(route, parents: int) -> bool:
    """True when at least `parents` entries of status.parents report Accepted=True for the route's current
    metadata.generation (a condition without observedGeneration, or for an older generation, does not count)."""
    if not isinstance(route, dict):
        return False
    generation = (route.get("metadata") or {}).get("generation", 0)
    accepted = 0
    for parent in (route.get("status") or {}).get("parents") or []:
        if any(condition.get("type") == "Accepted" and condition.get("status") == "True"
               and condition.get("observedGeneration") == generation
               for condition in parent.get("conditions") or []):
            accepted += 1
    return accepted >= int(parents)


class TestModule:
    def tests(self):
        return {"route_accepted": route_accepted}
