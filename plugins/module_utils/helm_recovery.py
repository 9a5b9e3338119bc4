# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What undoes a helm operation on a release that a killed run left unfinished.

Forgetting the interrupted revision (deleting its record) is not enough. The next upgrade computes
its patches from the last completed revision, so whatever the killed operation added stays on the
live objects (a field of a Deployment no manifest has any more), and an install adopts what a killed
install created, with those fields, the same way. So the interrupted operation is undone as helm
itself would have undone it: a pending upgrade or rollback is rolled back to the last completed
revision (helm's rollback patches from the pending revision's manifest, so what it added goes:
helm.sh/helm/v3 pkg/action/rollback.go, which unlike an upgrade does not refuse a pending release),
and a pending install, or an uninstall, is uninstalled, as an atomic install that failed would
have been.
"""

from __future__ import annotations

# helm history's statuses (helm.sh/helm/v3 pkg/release/status.go).
INTERRUPTED = ("pending-install", "pending-upgrade", "pending-rollback", "uninstalling")
# What an interrupted upgrade or rollback returns to, best first: helm leaves the revision an upgrade
# started from "deployed" until the upgrade completes; "superseded" revisions were deployed once.
COMPLETED = ("deployed", "superseded")


def recovery_plan(history: list[dict], release: str, namespace: str) -> dict:
    """From `helm history -o json` (entries with revision and status), what makes the release usable again.

    action is none (nothing interrupted), rollback (to revision), uninstall, or refuse (msg says why).
    """
    if not history:
        return {"action": "none"}
    last = max(history, key=lambda entry: int(entry["revision"]))
    status = last["status"]
    if status not in INTERRUPTED:
        return {"action": "none"}
    interrupted = {"revision": int(last["revision"]), "status": status}
    scope = ["--namespace", namespace]
    if status in ("pending-install", "uninstalling"):
        return {"action": "uninstall", "interrupted": interrupted, "argv": ["uninstall", release, *scope, "--wait"]}
    earlier = [entry for entry in history if int(entry["revision"]) < interrupted["revision"]]
    for wanted in COMPLETED:
        candidates = [int(entry["revision"]) for entry in earlier if entry["status"] == wanted]
        if candidates:
            return {"action": "rollback", "interrupted": interrupted, "revision": max(candidates),
                    "argv": ["rollback", release, str(max(candidates)), *scope]}
    return {"action": "refuse", "interrupted": interrupted,
            "msg": (f"Release {namespace}/{release}: a killed run left revision {interrupted['revision']} {status}, and no "
                    f"earlier revision was ever deployed to return to. Look at `helm history {release} -n {namespace}`, "
                    f"then roll back to a revision you trust (`helm rollback {release} <revision> -n {namespace}`) or "
                    "uninstall the release, and run again.")}
