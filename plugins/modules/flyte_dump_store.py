#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_dump_store
short_description: Keep the database dumps of flyte_database in an S3 object store, and fetch them back
version_added: 0.2.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - With O(state=stored), uploads a dump directory written by M(homelab.flyte.flyte_database) (O(state=dumped)) to
    O(location) in an S3-compatible object store, under the directory's own name - the dumps, their C(.sha256)
    files and C(manifest.json), the manifest last. Every dump is checked against the manifest first.
  - With O(state=fetched), downloads a stored dump directory into O(path) (whose last component names the stored
    directory) and checks every dump against its manifest, ready for M(homelab.flyte.flyte_database) O(state=restored).
  - This is where the dumps of an upgrade outlive an AWX job, whose execution environment's container is discarded
    when the job ends.
  - Each object carries its SHA-256 as user metadata, so a rerun uploads or downloads only what is missing or
    different. Requests are signed with AWS Signature Version 4 and addressed path-style, which every
    S3-compatible store accepts. The content of a dump is never printed or returned.
options:
  state:
    description: V(stored) uploads O(path) to O(location); V(fetched) downloads it from there into O(path).
    type: str
    choices: [stored, fetched]
    required: true
  path:
    description:
      - The dump directory on the host running the module, for example C(/root/homelab-flyte/dumps/flyte-20250131T030000Z).
      - Its last component is the directory's name in the store.
    type: path
    required: true
  location:
    description: Where dump directories are kept, C(s3://<bucket>/<prefix>); the prefix may be empty.
    type: str
    required: true
  endpoint:
    description: The object store's URL as the host running the module reaches it, e.g. C(https://s3.example.com).
    type: str
    required: true
  region:
    description: The region requests are signed for.
    type: str
    default: us-east-1
  access_key_id:
    description: Access key of credentials that may read and write the bucket.
    type: str
    required: true
  secret_access_key:
    description: Secret of O(access_key_id).
    type: str
    required: true
  validate_certs:
    description: Whether to check the endpoint's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds each request may take.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the store and the directory, and returns what it would upload or download, writing nothing.
  diff_mode:
    support: none
    description: The objects are binary dumps; RV(objects) says what changes.
seealso:
  - module: homelab.flyte.flyte_database
"""

EXAMPLES = r"""
- name: Keep the dumps of this upgrade in the object store
  homelab.flyte.flyte_dump_store:
    state: stored
    path: "{{ upgrade_dump_path }}"
    location: s3://flyte-backups/dumps
    endpoint: https://s3.example.com
    access_key_id: "{{ dump_store_keys.AWS_ACCESS_KEY_ID }}"
    secret_access_key: "{{ dump_store_keys.AWS_SECRET_ACCESS_KEY }}"
  no_log: true

- name: Fetch them back before a restore
  homelab.flyte.flyte_dump_store:
    state: fetched
    path: /tmp/restore/flyte-20250131T030000Z
    location: s3://flyte-backups/dumps
    endpoint: https://s3.example.com
    access_key_id: "{{ dump_store_keys.AWS_ACCESS_KEY_ID }}"
    secret_access_key: "{{ dump_store_keys.AWS_SECRET_ACCESS_KEY }}"
"""

RETURN = r"""
url:
  description: Where the dump directory is kept.
  returned: success
  type: str
  sample: s3://flyte-backups/dumps/flyte-20250131T030000Z
path:
  description: The dump directory on the host running the module.
  returned: success
  type: str
  sample: /root/homelab-flyte/dumps/flyte-20250131T030000Z
objects:
  description: Each object of the directory, and whether it was (or in check mode would be) transferred.
  returned: success
  type: list
  elements: dict
  sample: [{"key": "dumps/flyte-20250131T030000Z/flyteadmin.dump", "action": "uploaded", "size": 81920,
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]
dumps:
  description: The manifest's entries (database, file, size, sha256); none when a check run has not fetched it yet.
  returned: success
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.flyte.plugins.module_utils.database import DatabaseError
from ansible_collections.homelab.flyte.plugins.module_utils.object_store import (
    Store,
    fetch_directory,
    parse_location,
    store_directory,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["stored", "fetched"], required=True),
            path=dict(type="path", required=True),
            location=dict(type="str", required=True),
            endpoint=dict(type="str", required=True),
            region=dict(type="str", default="us-east-1"),
            access_key_id=dict(type="str", required=True, no_log=True),
            secret_access_key=dict(type="str", required=True, no_log=True),
            validate_certs=dict(type="bool", default=True),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        bucket, prefix = parse_location(params["location"])
    except ValueError as error:
        module.fail_json(msg=f"location: {error}, e.g. s3://flyte-backups/dumps")
    if not params["endpoint"].startswith(("http://", "https://")):
        module.fail_json(msg=f"endpoint {params['endpoint']!r} must be an http:// or https:// URL, e.g. https://s3.example.com")
    store = Store(params["endpoint"], bucket, params["access_key_id"], params["secret_access_key"], region=params["region"],
                  validate_certs=params["validate_certs"], timeout=params["timeout"])
    path = params["path"].rstrip("/")
    name = path.rsplit("/", 1)[-1]
    url = "s3://" + "/".join(p for p in (bucket, prefix, name) if p)
    try:
        if params["state"] == "stored":
            manifest, objects = store_directory(store, path, prefix, check_mode=module.check_mode)
            moved = "uploaded"
        else:
            manifest, path, objects = fetch_directory(store, prefix, name, path.rsplit("/", 1)[0] or "/",
                                                      check_mode=module.check_mode)
            moved = "downloaded"
    except DatabaseError as error:
        module.fail_json(msg=str(error), url=url, path=path)
    module.exit_json(changed=any(o["action"] == moved for o in objects), url=url, path=path, objects=objects,
                     dumps=(manifest or {}).get("dumps", []))


if __name__ == "__main__":
    main()
