#!/usr/bin/python
# Copyright: homelab.flyte contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: flyte_project
short_description: Ensure Flyte projects exist in FlyteAdmin, active or archived
version_added: 0.1.0
author: homelab.flyte contributors (!UNKNOWN)
description:
  - Registers, updates and archives Flyte projects through FlyteAdmin's HTTP API (the grpc-gateway mapping of its
    AdminService), so that each project has the O(projects[].name), O(projects[].description), O(projects[].labels) and
    O(projects[].state) given.
  - Takes one project (O(id) and its options) or many (O(projects)). It looks all of them up with ListProjects, then
    sends RegisterProject for each missing project and UpdateProject for each that differs, and nothing else.
  - A name, description or labels left out are left as they are in FlyteAdmin; a new project's name defaults to its id.
  - Flyte projects cannot be deleted, only archived; archived projects are hidden in FlyteConsole and reject new
    registrations and executions.
extends_documentation_fragment:
  - homelab.flyte.flyteadmin
options:
  projects:
    description:
      - The projects to ensure, instead of O(id) and its options.
      - Ids must be unique in the list.
    type: list
    elements: dict
    suboptions:
      id:
        description: Project id, a DNS-1123 label; by default FlyteAdmin runs the project's workloads in the namespaces C(<id>-<domain>).
        type: str
        required: true
      name:
        description: Display name, at most 64 bytes. Cannot be emptied.
        type: str
      description:
        description:
          - Description, at most 300 bytes.
          - FlyteAdmin cannot clear a description once set (it ignores an empty one on update); V("") then keeps the
            current description and warns.
        type: str
      labels:
        description:
          - All the project's labels, Kubernetes-style names and values, at most 16. Labels not listed are removed;
            V({}) removes them all. Leave out to keep the current labels.
        type: dict
      state:
        description: V(present) for an active project, V(archived) for an archived one. Defaults to O(state).
        type: str
        choices: [present, archived]
  id:
    description: Id of a single project to ensure, see O(projects[].id).
    type: str
  name:
    description: Display name of the project O(id), see O(projects[].name).
    type: str
  description:
    description: Description of the project O(id), see O(projects[].description).
    type: str
  labels:
    description: Labels of the project O(id), see O(projects[].labels).
    type: dict
  state:
    description:
      - State of the project O(id), and of each item of O(projects) that sets none.
      - V(present) means FlyteAdmin's C(ACTIVE) state, V(archived) its C(ARCHIVED) state. A project FlyteAdmin marked
        C(SYSTEM_GENERATED) or C(SYSTEM_ARCHIVED) is changed to the state asked for (FlyteAdmin accepts registrations and
        executions only in C(ACTIVE) projects).
    type: str
    choices: [present, archived]
    default: present
attributes:
  check_mode:
    support: full
    description:
      - The module reads (discovery, token, ListProjects) and reports what it would register or update, without
        sending RegisterProject or UpdateProject.
  diff_mode:
    support: full
    description: Shows each project that changes, before and after.
notes:
  - "Requests for N projects: the ListProjects requests, one for each group of at most 100 ids (fewer when the ids are
    long, about 2000 characters of ids each), then one RegisterProject or UpdateProject for each project that is missing
    or differs. Authentication adds up to three at the start: FlyteAdmin's OAuth2 metadata (with O(auth=auto), also when
    authentication is off), its C(/config/v1/flyte_client) (unless O(scopes) and O(audience) are both given), and one token
    request, renewed only if it expires during the run. So 500 new projects behind authentication take 3 + 5 + 500
    requests, and a second run 3 + 5."
  - The result's C(requests) counts the requests the run made.
  - FlyteAdmin without a filter hides archived projects from ListProjects; the module filters by project id, which
    finds projects in every state.
  - Writes are sent one after another. When one fails, the task fails naming the projects already created or updated.
seealso:
  - name: FlyteAdmin's AdminService
    description: The gRPC service and its HTTP mapping, in flyteidl's C(flyteidl/service/admin.proto).
    link: https://github.com/flyteorg/flyte/blob/v1.16.8/flyteidl/protos/flyteidl/service/admin.proto
"""

EXAMPLES = r"""
- name: Ensure one project, with FlyteAdmin's authentication discovered
  homelab.flyte.flyte_project:
    url: http://flyteadmin.flyte-system.svc.cluster.local
    client_id: "{{ flyte_admin_client_id }}"
    client_secret: "{{ flyte_admin_client_secret }}"
    id: ml-research
    name: ML research
    description: Experiments of the research team
    labels:
      team: research
      cost-center: "4711"

- name: Seed many projects in one task
  homelab.flyte.flyte_project:
    url: https://flyte.example.com
    client_id: "{{ flyte_admin_client_id }}"
    client_secret: "{{ flyte_admin_client_secret }}"
    projects: "{{ flyte_projects }}"
  register: seeded

- name: Archive a project, through a port-forward to a FlyteAdmin without authentication
  homelab.flyte.flyte_project:
    url: http://localhost:8088
    auth: none
    id: old-experiments
    state: archived

- name: Client credentials with a token endpoint of its own and the scope FlyteAdmin requires
  homelab.flyte.flyte_project:
    url: https://flyte.example.com
    auth: client_credentials
    token_url: https://auth.example.com/application/o/token/
    scopes: [all]
    audience: ""
    client_id: "{{ flyte_admin_client_id }}"
    client_secret: "{{ flyte_admin_client_secret }}"
    projects:
      - id: flytesnacks
        name: flytesnacks
      - id: sandbox
        labels: {}
"""

RETURN = r"""
projects:
  description: Each project asked for, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Project id.
      type: str
      sample: ml-research
    action:
      description: V(created), V(updated) or V(unchanged) (in check mode, what would be done).
      type: str
      sample: updated
    changes:
      description: The fields that differ (name, description, labels, state); for a new project the fields it sets.
      type: list
      elements: str
      sample: [description, labels]
    before:
      description: The project as FlyteAdmin had it, or V(null) if it did not exist.
      type: dict
      sample: {"id": "ml-research", "name": "ML research", "description": "", "labels": {}, "state": "ACTIVE"}
    after:
      description: The project as it is after the task (as it would be, in check mode).
      type: dict
      sample: {"id": "ml-research", "name": "ML research", "description": "Experiments", "labels": {"team": "research"},
               "state": "ACTIVE"}
created:
  description: Ids of the projects registered (to be registered, in check mode).
  returned: always
  type: list
  elements: str
  sample: [ml-research]
updated:
  description: Ids of the projects updated (to be updated, in check mode).
  returned: always
  type: list
  elements: str
  sample: []
unchanged:
  description: Ids of the projects already as asked.
  returned: always
  type: list
  elements: str
  sample: [flytesnacks]
requests:
  description: Number of HTTP requests the task made, to FlyteAdmin and to the token endpoint.
  returned: always
  type: int
  sample: 4
auth:
  description: How the task authenticated, V(none) or V(client_credentials); V(null) when it needed no request (empty O(projects)).
  returned: success
  type: str
  sample: client_credentials
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.flyte.plugins.module_utils.flyteadmin import (
    FlyteAdmin,
    FlyteAdminError,
    connection_argument_spec,
    desired_project,
    plan_project,
    project_problems,
)
from ansible_collections.homelab.flyte.plugins.module_utils.validation import EXPECTED, is_http_url

ACTIONS = {"create": "created", "update": "updated", "none": "unchanged"}
PROJECT_OPTIONS = dict(
    id=dict(type="str", required=True),
    name=dict(type="str"),
    description=dict(type="str"),
    labels=dict(type="dict"),
    state=dict(type="str", choices=["present", "archived"]),
)


def argument_spec() -> dict:
    spec = connection_argument_spec()
    spec.update(
        projects=dict(type="list", elements="dict", options=PROJECT_OPTIONS),
        id=dict(type="str"),
        name=dict(type="str"),
        description=dict(type="str"),
        labels=dict(type="dict"),
        state=dict(type="str", choices=["present", "archived"], default="present"),
    )
    return spec


def wanted_projects(params: dict) -> list[dict]:
    if params["projects"] is not None:
        return params["projects"]
    return [{key: params[key] for key in ("id", "name", "description", "labels", "state")}]


def input_problems(params: dict, specs: list[dict]) -> list[str]:
    problems = []
    if not is_http_url(params["url"]):
        problems.append(f"url {params['url']!r} must be {EXPECTED['http_url']}, e.g. http://flyteadmin.flyte-system.svc.cluster.local")
    if params["timeout"] <= 0:
        problems.append("timeout must be a positive number of seconds")
    seen = set()
    for index, spec in enumerate(specs):
        where = f"projects[{index}]" if params["projects"] is not None else "the project"
        problems += [f"{where}: {problem}" for problem in project_problems(spec)]
        if spec.get("id") in seen:
            problems.append(f"{where}: the id {spec['id']!r} is listed more than once")
        seen.add(spec.get("id"))
    return problems


def result_entry(plan: dict) -> dict:
    return {"id": plan["id"], "action": ACTIONS[plan["action"]], "changes": plan["changes"],
            "before": plan["before"], "after": plan["after"]}


def diff_entry(plan: dict) -> dict:
    header = f"project {plan['id']}"
    return {"before": plan["before"] or {}, "after": plan["after"], "before_header": header, "after_header": header}


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("projects", "id"), ("projects", "name"), ("projects", "description"), ("projects", "labels")],
        required_one_of=[("projects", "id")],
        supports_check_mode=True,
    )
    params = module.params
    specs = wanted_projects(params)
    problems = input_problems(params, specs)
    if problems:
        module.fail_json(msg="Invalid input: " + "; ".join(problems), problems=problems)

    admin = FlyteAdmin(params["url"], auth=params["auth"], client_id=params["client_id"], client_secret=params["client_secret"],
                       token_url=params["token_url"], scopes=params["scopes"], audience=params["audience"],
                       validate_certs=params["validate_certs"], ca_path=params["ca_path"], timeout=params["timeout"])
    desired = [desired_project(spec, params["state"]) for spec in specs]
    try:
        current = admin.list_projects([project["id"] for project in desired])
    except FlyteAdminError as error:
        module.fail_json(msg=str(error), status=error.status, field=error.field, requests=admin.requests)

    plans = [plan_project(project, current.get(project["id"])) for project in desired]
    for warning in admin.warnings + [text for plan in plans for text in plan["warnings"]]:
        module.warn(warning)

    done = {"create": [], "update": []}
    if not module.check_mode:
        for plan in plans:
            try:
                if plan["action"] == "create":
                    admin.register_project(plan["after"])
                elif plan["action"] == "update":
                    admin.update_project(plan["after"], plan["labels_managed"])
            except FlyteAdminError as error:
                finished = done["create"] + done["update"]
                module.fail_json(msg=str(error) + (f" Already done in this run: {', '.join(finished)}." if finished else ""),
                                 status=error.status, field=error.field, project=plan["id"], changed=bool(finished),
                                 created=done["create"], updated=done["update"], requests=admin.requests)
            if plan["action"] in done:
                done[plan["action"]].append(plan["id"])

    changing = [plan for plan in plans if plan["action"] != "none"]
    module.exit_json(
        changed=bool(changing),
        projects=[result_entry(plan) for plan in plans],
        created=[plan["id"] for plan in plans if plan["action"] == "create"],
        updated=[plan["id"] for plan in plans if plan["action"] == "update"],
        unchanged=[plan["id"] for plan in plans if plan["action"] == "none"],
        requests=admin.requests,
        auth=admin.auth_mode,
        diff=[diff_entry(plan) for plan in changing] if params["projects"] is not None else (diff_entry(changing[0]) if changing else {}),
    )


if __name__ == "__main__":
    main()
