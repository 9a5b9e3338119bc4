# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Format checks shared by the roles' preflight (as Jinja tests) and the modules.

Each check returns a bool; the wording of what a valid value looks like lives in EXPECTED, so a
preflight failure and a module failure describe a form the same way.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes resource.Quantity: a signed decimal number, optionally with an exponent or a suffix.
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")

EXPECTED = {
    "dns_label": "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter "
                 "or digit, at most 63 characters (e.g. flyte-system)",
    "dns_subdomain": "a DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters (e.g. flyte-postgres)",
    "hostname": "a fully qualified host name without scheme, port or path (e.g. flyte.example.com)",
    "k8s_quantity": "a Kubernetes quantity such as 20Gi, 512Mi or 1.5",
    "http_url": "an absolute http:// or https:// URL with a host (e.g. https://auth.example.com)",
}


def is_dns_label(value) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.match(value))


def is_dns_subdomain(value) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 253
            and all(is_dns_label(label) for label in value.split(".")))


def is_hostname(value) -> bool:
    """A public host name: a DNS subdomain with at least two labels, no wildcard."""
    return is_dns_subdomain(value) and "." in value


def is_k8s_quantity(value) -> bool:
    return isinstance(value, str) and bool(_QUANTITY.match(value))


def is_http_url(value) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def quantity_bytes(value: str) -> float:
    """The value of a quantity in bytes (for comparing sizes); the quantity must be valid."""
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.group(1), match.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return float(number + suffix)
    return float(number) * suffixes.get(suffix, 1)
