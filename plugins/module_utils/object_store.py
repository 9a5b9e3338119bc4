# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A dump directory of database_dump, kept in an S3 object store and fetched back.

Why not boto3: the collection's execution environment would carry it for three requests. What is
needed is small: HEAD, PUT and GET of single objects, path-style (the addressing every
S3-compatible store accepts: versitygw, MinIO, Ceph RGW, AWS), signed with AWS Signature Version 4
(https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html). Each object
carries its SHA-256 as user metadata (x-amz-meta-sha256), so that a rerun recognises what is
already stored without reading it back, and a fetch checks every byte against the manifest.

Layout: s3://<bucket>/<prefix>/<name of the dump directory>/{manifest.json, <db>.dump, <db>.dump.sha256}.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import tempfile
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit

from ansible.module_utils.urls import open_url

from ansible_collections.homelab.flyte.plugins.module_utils.database import DatabaseError
from ansible_collections.homelab.flyte.plugins.module_utils.database_dump import MANIFEST, read_manifest, sha256_of, verify

CHUNK = 1024 * 1024
SHA256_META = "x-amz-meta-sha256"


class StoreError(DatabaseError):
    """A request the object store refused or could not be sent, worded for the person running the playbook."""


def parse_location(url):
    """s3://bucket/prefix -> (bucket, prefix without slashes at its ends); ValueError for anything else."""
    parts = urlsplit(url or "")
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not an s3://<bucket>/<prefix> location")
    return parts.netloc, parts.path.strip("/")


def object_keys(prefix, directory_name, manifest):
    """The keys of a dump directory in the store, manifest last (a reader trusts a directory whose manifest exists)."""
    base = "/".join(p for p in (prefix, directory_name) if p)
    files = []
    for entry in manifest["dumps"]:
        files += [entry["file"], entry["file"] + ".sha256"]
    return [(name, f"{base}/{name}") for name in files + [MANIFEST]]


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signed_headers(method, url, region, access_key, secret_key, payload_sha256, extra=None, now=None):
    """The headers of a request signed with AWS Signature Version 4 for service s3."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parts = urlsplit(url)
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date}
    headers.update({k.lower(): str(v).strip() for k, v in (extra or {}).items()})
    names = sorted(headers)
    canonical = "\n".join([
        method,
        quote(parts.path or "/", safe="/~"),
        "",  # no query string
        "".join(f"{name}:{headers[name]}\n" for name in names),
        ";".join(names),
        payload_sha256,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode("utf-8"), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    del headers["host"]  # urllib sets it from the URL, to the same value
    return headers


class Store:
    """One bucket of an S3-compatible object store."""

    def __init__(self, endpoint, bucket, access_key, secret_key, region="us-east-1", validate_certs=True, timeout=60):
        self.endpoint, self.bucket, self.region = endpoint.rstrip("/"), bucket, region
        self.access_key, self.secret_key = access_key, secret_key
        self.validate_certs, self.timeout = validate_certs, timeout

    def url(self, key):
        bucket = f"{self.endpoint}/{quote(self.bucket, safe='')}"
        return f"{bucket}/{quote(key, safe='/~')}" if key else bucket

    def check_bucket(self):
        """HEAD of the bucket, before any upload: a store may answer a PUT into a missing bucket, or with refused
        credentials, before it has read the body, and the client then sees a broken pipe instead of the answer."""
        if self._request("HEAD", "", hashlib.sha256(b"").hexdigest()) is None:
            raise StoreError(f"The bucket {self.bucket} does not exist at {self.endpoint}: create it, or name another bucket.")

    def _request(self, method, key, payload_sha256, data=None, extra=None):
        url = self.url(key)
        headers = signed_headers(method, url, self.region, self.access_key, self.secret_key, payload_sha256, extra)
        try:
            return open_url(url, method=method, data=data, headers=headers, validate_certs=self.validate_certs,
                            timeout=self.timeout, follow_redirects="none")
        except HTTPError as error:
            if method == "HEAD" and error.code == 404:
                return None
            raise StoreError(self._explain(method, key, error.code, error.read() if method != "HEAD" else b"")) from None
        except (URLError, OSError) as error:
            raise StoreError(f"Cannot reach the object store at {self.endpoint}: {error}. Check the endpoint "
                             "and that it is reachable from the host running the play.") from None

    def _explain(self, method, key, code, body):
        text = body.decode("utf-8", "replace")
        where = f"s3://{self.bucket}/{key} at {self.endpoint}"
        if code in (401, 403) or "SignatureDoesNotMatch" in text or "InvalidAccessKeyId" in text:
            return (f"The object store refused the credentials for {method} {where} (HTTP {code}): check the access key "
                    "and secret, and that they may write the bucket.")
        if "NoSuchBucket" in text:
            return f"The bucket {self.bucket} does not exist at {self.endpoint}: create it, or name another bucket."
        if code == 404:
            return f"{where} does not exist: check the location of the dumps."
        return f"{method} {where} failed with HTTP {code}: {text[:300]}"

    def stored_sha256(self, key):
        """The SHA-256 recorded with an object, '' for an object without one, or None when there is no object."""
        response = self._request("HEAD", key, hashlib.sha256(b"").hexdigest())
        if response is None:
            return None
        return response.headers.get(SHA256_META, "")

    def put_file(self, key, path, sha256):
        with open(path, "rb") as body:
            self._request("PUT", key, sha256, data=body,
                          extra={SHA256_META: sha256, "content-length": os.path.getsize(path),
                                 "content-type": "application/octet-stream"}).read()

    def get_file(self, key, path):
        """Download an object to path (through a temporary file beside it); its SHA-256."""
        response = self._request("GET", key, hashlib.sha256(b"").hexdigest())
        digest = hashlib.sha256()
        handle, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fetch-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return digest.hexdigest()


def store_directory(store, src, prefix, check_mode=False):
    """Upload the dump directory src (checked against its manifest first); what was or would be uploaded."""
    manifest = read_manifest(src)
    if manifest is None:
        raise DatabaseError(f"{src} holds no {MANIFEST}: it is not a dump directory written by flyte_database.")
    for entry in manifest["dumps"]:
        verify(src, entry)
    store.check_bucket()
    objects = []
    for name, key in object_keys(prefix, os.path.basename(os.path.normpath(src)), manifest):
        path = os.path.join(src, name)
        sha256 = sha256_of(path)
        present = store.stored_sha256(key) == sha256
        if not present and not check_mode:
            store.put_file(key, path, sha256)
        objects.append({"key": key, "size": os.path.getsize(path), "sha256": sha256,
                        "action": "present" if present else "uploaded"})
    return manifest, objects


def fetch_directory(store, prefix, directory_name, dest, check_mode=False):
    """Download a stored dump directory into dest/<directory_name> and check it against its manifest."""
    target = os.path.join(dest, directory_name)
    base = "/".join(p for p in (prefix, directory_name) if p)
    local = read_manifest(target) if os.path.isdir(target) else None
    store.check_bucket()
    if check_mode and local is None:
        if store.stored_sha256(f"{base}/{MANIFEST}") is None:
            raise StoreError(f"s3://{store.bucket}/{base}/{MANIFEST} does not exist: check the location of the dumps.")
        return None, target, [{"key": f"{base}/{MANIFEST}", "action": "downloaded"}]
    if not check_mode:
        os.makedirs(target, mode=0o700, exist_ok=True)
    if local is None:
        store.get_file(f"{base}/{MANIFEST}", os.path.join(target, MANIFEST))
    manifest = read_manifest(target)
    objects = [{"key": f"{base}/{MANIFEST}", "action": "present" if local is not None else "downloaded"}]
    for name, key in object_keys(prefix, directory_name, manifest)[:-1]:
        path = os.path.join(target, name)
        if os.path.isfile(path):
            objects.append({"key": key, "action": "present"})
            continue
        if not check_mode:
            store.get_file(key, path)
        objects.append({"key": key, "action": "downloaded"})
    if not check_mode:
        for entry in manifest["dumps"]:
            verify(target, entry)
    return manifest, target, objects
