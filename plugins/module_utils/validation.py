# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Format checks shared by the roles' preflight (as Jinja tests) and the modules.

Each check returns a bool; the wording of what a valid value looks like lives in EXPECTED, so a
preflight failure and a module failure describe a form the same way.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Matched with fullmatch: re.match with $ would also accept a trailing newline.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes resource.Quantity: a signed decimal number, optionally with an exponent or a suffix.
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")

# A container image reference, as container runtimes parse it (github.com/distribution/reference,
# regexp.go): [domain[:port]/]path[:tag][@digest], path components lowercase. Kubernetes itself only
# refuses an empty image in a Pod; the kubelet refuses the rest (InvalidImageName).
_IMAGE_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
                    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")

# Kubernetes label keys ([DNS subdomain prefix/]name) and values (apimachinery validation.IsQualifiedName,
# IsValidLabelValue), and the label selector syntax of labels.Parse.
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^(?:{_LABEL_NAME})?$")
# The keys of a Secret's or ConfigMap's data (apimachinery validation.IsConfigMapKey, hasChDirPrefix).
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# S3 bucket names as AWS and S3-compatible servers (versitygw) accept them for new buckets.
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SELECTOR_REQUIREMENT = re.compile(r"^\s*(?:(!)\s*(?P<absent>[^\s=!(),<>]+)|(?P<key>[^\s=!(),<>]+)\s*"
                                   r"(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!(),<>]*)|(?P<cmp>[<>])\s*(?P<number>[^\s=!(),<>]*)"
                                   r"|(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$")

EXPECTED = {
    "dns_label": "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter "
                 "or digit, at most 63 characters (e.g. flyte-system)",
    "dns_subdomain": "a DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters (e.g. flyte-postgres)",
    "hostname": "a fully qualified host name without scheme, port or path (e.g. flyte.example.com)",
    "k8s_quantity": "a Kubernetes quantity such as 20Gi, 512Mi or 1.5",
    "http_url": "an absolute http:// or https:// URL with a host (e.g. https://auth.example.com)",
    "label_selector": "a Kubernetes label selector such as app.kubernetes.io/name=authentik,app.kubernetes.io/component=worker",
    "image_reference": "a container image reference: [registry[:port]/]lowercase/path[:tag][@digest] (e.g. docker.io/versity/versitygw:v1.8.0)",
    "qualified_name": "a Kubernetes qualified name: [DNS subdomain prefix/]name, the name at most 63 letters, digits, '-', '_' "
                      "and '.', starting and ending with a letter or digit (e.g. memory, example.com/gpu)",
    "s3_bucket": "an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or "
                 "digit, no '..' (e.g. flyte-data)",
    "secret_key": "a Secret key: at most 253 letters, digits, '-', '_' and '.', not '.' and not starting with '..' "
                  "(e.g. AWS_ACCESS_KEY_ID)",
    "s3_url": "an S3 URL s3://<bucket>[/<path>] without whitespace (e.g. s3://backups/flyte)",
}


def is_dns_label(value) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.fullmatch(value))


def is_dns_subdomain(value) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 253
            and all(is_dns_label(label) for label in value.split(".")))


def is_hostname(value) -> bool:
    """A public host name: a DNS subdomain with at least two labels, no wildcard."""
    return is_dns_subdomain(value) and "." in value


def is_k8s_quantity(value) -> bool:
    return isinstance(value, str) and bool(_QUANTITY.fullmatch(value))


def is_http_url(value) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_image_reference(value) -> bool:
    """A container image reference a runtime can pull; the name part (before a tag or digest) at most 255 characters."""
    if not isinstance(value, str) or not _IMAGE.fullmatch(value):
        return False
    name = value.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last) + last.index(":")]
    return len(name) <= 255


def is_label_name(value) -> bool:
    """The name part of a label key (after an optional prefix and '/')."""
    return isinstance(value, str) and bool(re.fullmatch(_LABEL_NAME, value))


def is_label_key(value) -> bool:
    return isinstance(value, str) and bool(_LABEL_KEY.fullmatch(value)) and len(value.rsplit("/", 1)[0]) <= 253


def is_label_value(value) -> bool:
    return isinstance(value, str) and bool(_LABEL_VALUE.fullmatch(value))


def is_qualified_name(value) -> bool:
    """A label key, or a resource name of a container's requests and limits (apimachinery IsQualifiedName)."""
    return is_label_key(value)


def is_secret_key(value) -> bool:
    return (isinstance(value, str) and len(value) <= 253 and bool(_SECRET_KEY.fullmatch(value))
            and value != "." and not value.startswith(".."))


def is_s3_bucket(value) -> bool:
    return isinstance(value, str) and bool(_S3_BUCKET.fullmatch(value)) and ".." not in value


def is_s3_url(value) -> bool:
    """s3://<bucket>[/<path>]: a bucket that is_s3_bucket accepts, and a path without whitespace."""
    if not isinstance(value, str) or not value.startswith("s3://") or any(c.isspace() for c in value):
        return False
    return is_s3_bucket(value[len("s3://"):].split("/", 1)[0])


def is_label_selector(value) -> bool:
    """A non-empty selector the API server parses: comma-separated key=value, key==value, key!=value, key, !key,
    key in (v1,v2), key notin (v1,v2), key>N, key<N."""
    if not isinstance(value, str) or not value.strip():
        return False
    requirements, depth, current = [], 0, ""
    for char in value:  # split on the commas outside parentheses
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            requirements.append(current)
            current = ""
        else:
            current += char
    requirements.append(current)
    for requirement in requirements:
        match = _SELECTOR_REQUIREMENT.match(requirement)
        if not match:
            return False
        key = match.group("absent") or match.group("key")
        if not is_label_key(key):
            return False
        if match.group("op") and not is_label_value(match.group("value")):
            return False
        if match.group("cmp") and not re.fullmatch(r"-?[0-9]+", match.group("number")):
            return False
        if match.group("set") and not all(is_label_value(v.strip()) for v in match.group("values").split(",")):
            return False
    return True


def quantity_bytes(value: str) -> float:
    """The value of a quantity in bytes (for comparing sizes); the quantity must be valid."""
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    match = _QUANTITY.fullmatch(value)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.group(1), match.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return float(number + suffix)
    return float(number) * suffixes.get(suffix, 1)
