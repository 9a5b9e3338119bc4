"""The gRPC services the networking role routes to FlyteAdmin are the ones FlyteAdmin 1.16.8 serves.

The services a name may refer to come from flyteidl v1.16.8's own protos (the Go module proxy serves
github.com/flyteorg/flyte/flyteidl; `go mod download` puts it in the module cache). Which of them
FlyteAdmin registers on its gRPC server is read from flyteadmin/pkg/server/service.go at v1.16.8
(newGRPCServer), which the proxy does not serve: it is written down below, and checked against the
protos so that a name there cannot be wrong either.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FLYTEIDL = "github.com/flyteorg/flyte/flyteidl@v1.16.8"

# flyteadmin/pkg/server/service.go v1.16.8, newGRPCServer: RegisterAdminServiceServer,
# RegisterAuthMetadataServiceServer and RegisterIdentityServiceServer (when server.security.useAuth, which
# the flyte role sets), RegisterDataProxyServiceServer, RegisterSignalServiceServer, and grpc_health_v1's
# RegisterHealthServer. Server reflection only with grpc.serverReflection, which the collection leaves off.
FLYTEADMIN_SERVES = {
    "flyteidl.service.AdminService",
    "flyteidl.service.AuthMetadataService",
    "flyteidl.service.IdentityService",
    "flyteidl.service.DataProxyService",
    "flyteidl.service.SignalService",
    "grpc.health.v1.Health",
}


@pytest.fixture(scope="module")
def flyteidl_services() -> set[str]:
    """Every `package.Service` declared in flyteidl v1.16.8's protos."""
    go = shutil.which("go")
    assert go, "Go is needed to fetch flyteidl v1.16.8 from the module proxy (the platform's build needs it too)"
    download = subprocess.run([go, "mod", "download", "-json", FLYTEIDL], capture_output=True, text=True, check=False,
                              cwd=REPO)
    assert download.returncode == 0, f"go mod download {FLYTEIDL}: {download.stderr or download.stdout}"
    protos = Path(json.loads(download.stdout)["Dir"]) / "protos"
    services = set()
    for proto in protos.rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+)\s*;", text, re.MULTILINE)
        for service in re.findall(r"^service\s+(\w+)\s*\{", text, re.MULTILINE):
            services.add(f"{package.group(1)}.{service}" if package else service)
    assert "flyteidl.service.AdminService" in services, f"no AdminService among the protos of {protos}"
    return services


def routed() -> list[str]:
    defaults = yaml.safe_load((REPO / "roles" / "networking" / "defaults" / "main.yml").read_text())
    return defaults["networking_grpc_services"]


def test_the_list_of_served_services_names_real_flyteidl_services(flyteidl_services):
    assert {s for s in FLYTEADMIN_SERVES if s.startswith("flyteidl.")} <= flyteidl_services


def test_the_role_routes_exactly_the_services_flyteadmin_serves(flyteidl_services):
    services = routed()
    assert len(services) == len(set(services))
    unknown = [s for s in services if s.startswith("flyteidl.") and s not in flyteidl_services]
    assert unknown == [], f"not declared in flyteidl v1.16.8: {unknown}"
    assert set(services) - FLYTEADMIN_SERVES == set(), "routed, but FlyteAdmin 1.16.8 does not serve them"
    assert FLYTEADMIN_SERVES - set(services) == set(), "served by FlyteAdmin 1.16.8, but not routed"
