# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests for the roles' preflight: dns_label, dns_subdomain, hostname, k8s_quantity, http_url, image_reference, label_selector,
qualified_name, s3_bucket, s3_url, secret_key."""

from __future__ import annotations

from ansible_collections.homelab.flyte.plugins.module_utils.validation import (
    is_dns_label,
    is_dns_subdomain,
    is_hostname,
    is_http_url,
    is_image_reference,
    is_k8s_quantity,
    is_label_selector,
    is_qualified_name,
    is_s3_bucket,
    is_s3_url,
    is_secret_key,
)


class TestModule:
    def tests(self):
        return {
            "dns_label": is_dns_label,
            "dns_subdomain": is_dns_subdomain,
            "hostname": is_hostname,
            "k8s_quantity": is_k8s_quantity,
            "http_url": is_http_url,
            "image_reference": is_image_reference,
            "label_selector": is_label_selector,
            "qualified_name": is_qualified_name,
            "s3_bucket": is_s3_bucket,
            "s3_url": is_s3_url,
            "secret_key": is_secret_key,
        }
