"""AWX / Automation Controller support: the execution environment, the surveys, the credential types,
playbooks/awx_configure.yml, and the playbooks' syntax.

No AWX server and no container runtime exist here. What is tested:

- every survey spec against a JSON schema written from AWX's survey validation (cited rule by rule
  below), the credential types against the JSON schemas AWX validates them with;
- playbooks/awx_configure.yml run for real against a stand-in awx.awx collection whose modules only
  record their arguments: this shows what the playbook asks AWX to create, not what AWX does;
- the job templates' extra variables turning survey answers into typed variables, with the extra
  variables written the way AWX writes them (survey answers marked !unsafe);
- ansible-playbook --syntax-check of every playbook.

The execution environment's build context (ansible-builder) is tested in tests/integration/test_awx_ee.py,
and Kubernetes access with AWX's credential alone on the local platform in tests/integration/test_awx_platform.py.

Not tested: building or running the image, AWX's API, its job launch and survey UI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parents[2]
AWX_DIR = REPO / "playbooks" / "awx"
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
SURVEYS = sorted((AWX_DIR / "surveys").glob("*.json"))
CREDENTIAL_TYPES = sorted((AWX_DIR / "credential_types").glob("*.yml"))


class UnsafeLoader(yaml.SafeLoader):
    """YAML with Ansible's !unsafe tag, read as a plain string."""


UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
AWX_VARS = yaml.load((AWX_DIR / "vars.yml").read_text(encoding="utf-8"), Loader=UnsafeLoader)  # noqa: S506 - a SafeLoader


def argument_spec(role: str) -> dict:
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return specs["argument_specs"]["main"]["options"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "K8S_AUTH_", "OP_CONNECT_", "CONTROLLER_", "TOWER_"))}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **extra)
    return env


# --------------------------------------------------------------------------------------------------
# Surveys. AWX publishes no JSON schema for survey specs; this one is written from its validation
# code, ansible/awx at e21dd0a (2024-10-23). Sources, as cited in the comments:
#   [views]  awx/api/views/__init__.py, JobTemplateSurveySpec._validate_spec_data (what the API accepts)
#   [types]  awx/main/constants.py, SURVEY_TYPE_MAPPING = {'text': str, 'textarea': str, 'password': str,
#            'multiplechoice': str, 'multiselect': str, 'integer': int, 'float': (float, int)}
#   [mixins] awx/main/models/mixins.py, SurveyJobTemplateMixin._survey_element_validation and
#            _update_unified_job_kwargs (how answers and defaults are checked and applied at launch)
#   [ours]   stricter rules of this project, not AWX's

STRING_TYPES = ["text", "textarea", "password", "multiplechoice", "multiselect"]
SURVEY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    # [views] "Field '{}' is missing from survey spec." for name, description and spec; name and
    # description must be strings, spec a list ("Expected {} for field '{}'").
    "required": ["name", "description", "spec"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        # [views] "'spec' doesn't contain any items."
        "spec": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/question"}},
    },
    "$defs": {
        "question": {
            # [views] "Survey question %s is not a json object."
            "type": "object",
            # [views] "'{field_name}' missing from survey question {idx}" for these four.
            "required": ["type", "question_name", "variable", "required"],
            "properties": {
                # [views] + [types] "... is not one of '...' allowed question types."
                "type": {"enum": STRING_TYPES + ["integer", "float"]},
                # [views] question_name and variable must be strings; [ours] not empty.
                "question_name": {"type": "string", "minLength": 1},
                "question_description": {"type": "string"},
                # [ours] an Ansible variable name, since AWX passes the answer as an extra variable.
                "variable": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                # [views] "'required' in survey question {idx} expected to be boolean."
                "required": {"type": "boolean"},
                # [views] "The {min_or_max} limit in survey question {idx} expected to be integer." (None allowed)
                "min": {"type": ["integer", "null"]},
                "max": {"type": ["integer", "null"]},
                # [views] choices: a newline-separated string or a list; [mixins] compared with `in`.
                "choices": {"oneOf": [{"type": "string", "minLength": 1},
                                      {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
            },
            "allOf": [
                # [views] + [types] a default other than '' must have the question type's Python type.
                {"if": {"properties": {"type": {"enum": STRING_TYPES}}},
                 "then": {"properties": {"default": {"type": "string"}}}},
                {"if": {"properties": {"type": {"const": "integer"}}},
                 "then": {"properties": {"default": {"anyOf": [{"type": "integer"}, {"const": ""}]}}}},
                {"if": {"properties": {"type": {"const": "float"}}},
                 "then": {"properties": {"default": {"anyOf": [{"type": "number"}, {"const": ""}]}}}},
                # [views] "Survey question {idx} of type {type} must specify choices."
                {"if": {"properties": {"type": {"enum": ["multiplechoice", "multiselect"]}}},
                 "then": {"required": ["choices"]}},
                # [views] "Multiple Choice (Single Select) can only have one default value." (one line)
                {"if": {"properties": {"type": {"const": "multiplechoice"}}},
                 "then": {"properties": {"default": {"not": {"pattern": "\\S\\s*\\n\\s*\\S"}}}}},
                # [views] "$encrypted$ is a reserved keyword for password question defaults"
                {"if": {"not": {"properties": {"type": {"const": "password"}}}},
                 "then": {"properties": {"default": {"not": {"type": "string", "pattern": "^\\$encrypted\\$"}}}}},
                # [ours] a password question's default would be stored in the spec file: none.
                {"if": {"properties": {"type": {"const": "password"}}},
                 "then": {"not": {"required": ["default"]}}},
            ],
        },
    },
}
jsonschema.Draft202012Validator.check_schema(SURVEY_SCHEMA)


def choice_list(choices) -> list[str]:
    # [mixins] string choices are split into lines, blank ones dropped.
    return [c for c in choices.splitlines() if c.strip()] if isinstance(choices, str) else list(choices)


def default_errors(question: dict) -> list[str]:
    """[mixins] _survey_element_validation applied to the default, as _update_unified_job_kwargs does."""
    value, kind = question["default"], question["type"]
    low, high = question.get("min"), question.get("max")
    if kind in ("text", "textarea", "password"):
        if low not in ("", None) and len(value) < int(low):
            return ["default shorter than min"]
        if high not in ("", None) and len(value) > int(high):
            return ["default longer than max"]
    if kind in ("integer", "float") and value != "":
        if low not in ("", None) and value < low:
            return ["default below min"]
        if high not in ("", None) and value > high:
            return ["default above max"]
    return []


def survey_problems(spec) -> list[str]:
    """Everything AWX (and this project) would reject in a survey spec."""
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in jsonschema.Draft202012Validator(SURVEY_SCHEMA).iter_errors(spec)]
    if problems:
        return problems
    seen = set()
    for idx, question in enumerate(spec["spec"]):
        where = f"question {idx} ({question['variable']})"
        # [views] "'variable' '%(item)s' duplicated in survey question %(survey)s."
        if question["variable"] in seen:
            problems.append(f"{where}: variable duplicated")
        seen.add(question["variable"])
        if "default" not in question:
            continue
        default = question["default"]
        # [views] "Default choice must be answered from the choices listed."
        if question["type"] in ("multiplechoice", "multiselect"):
            defaults = choice_list(default) if isinstance(default, str) else default
            if any(d not in choice_list(question["choices"]) for d in defaults):
                problems.append(f"{where}: default not among the choices")
        # [mixins] a default that fails the question's own validation is silently not applied at launch.
        problems += [f"{where}: {p}" for p in default_errors(question)]
        # [ours, from mixins] _update_unified_job_kwargs applies every default that is not None, so an
        # optional question defaulting to '' would send '' as an extra variable and hide the inventory's value.
        if default == "" and not question["required"]:
            problems.append(f"{where}: an optional question must not default to ''")
    return problems


def load_survey(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_surveys():
    assert {p.name for p in SURVEYS} >= {"deploy.json", "seed.json", "teardown.json"}


@pytest.mark.parametrize("path", SURVEYS, ids=lambda p: p.name)
def test_survey_is_valid(path):
    assert survey_problems(load_survey(path)) == []


GOOD_QUESTION = {"question_name": "Q", "variable": "x", "required": True, "type": "text"}


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"name": "s", "spec": [GOOD_QUESTION]}, "'description' is a required property"),
        ({"name": "s", "description": "", "spec": []}, "should be non-empty"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "type": "list"}]}, "is not one of"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "required": "true"}]}, "is not of type 'boolean'"),
        ({"name": "s", "description": "", "spec": [{k: v for k, v in GOOD_QUESTION.items() if k != "variable"}]},
         "'variable' is a required property"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "type": "integer", "default": "3"}]}, "is not valid"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "min": "1"}]}, "is not of type 'integer', 'null'"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "type": "multiplechoice"}]}, "'choices' is a required property"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "type": "multiplechoice", "choices": ["a", "b"], "default": "a\nb"}]},
         "should not be valid"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "default": "$encrypted$abc"}]}, "should not be valid"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "variable": "flyte-version"}]}, "does not match"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "type": "multiplechoice", "choices": ["a"], "default": "b"}]},
         "default not among the choices"),
        ({"name": "s", "description": "", "spec": [GOOD_QUESTION, GOOD_QUESTION]}, "variable duplicated"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "default": "ab", "min": 3}]}, "default shorter than min"),
        ({"name": "s", "description": "", "spec": [{**GOOD_QUESTION, "required": False, "default": ""}]},
         "must not default to ''"),
    ],
)
def test_the_survey_rules_reject_what_awx_rejects(broken, expected):
    problems = survey_problems(broken)
    assert any(expected in p for p in problems), problems


def test_deploy_survey_matches_the_roles():
    questions = {q["variable"]: q for q in load_survey(AWX_DIR / "surveys" / "deploy.json")["spec"]}
    # The host name question sets the one variable every role that names the host reads.
    assert "homelab_flyte_hostname" in questions
    assert all("homelab_flyte_hostname" in argument_spec(role) for role in ("networking", "flyte", "authentik"))
    # The default offered is the flyte role's own default, so an unchanged answer changes nothing.
    assert questions["flyte_chart_version"]["default"] == argument_spec("flyte")["flyte_chart_version"]["default"]
    # Tags and limit are AWX launch prompts, not survey variables.
    assert not {"job_tags", "tags", "limit"} & set(questions)


def test_seed_survey_default_is_the_flyte_roles_initial_project():
    question = load_survey(AWX_DIR / "surveys" / "seed.json")["spec"][0]
    assert question["default"].split() == argument_spec("flyte")["flyte_initial_projects"]["default"]


# --------------------------------------------------------------------------------------------------
# Launching a job template: AWX's launch-time survey handling, ported function by function from
# ansible/awx at tag 24.6.1 (94e5795dfc; these functions are unchanged at e21dd0a):
#   [element]  awx/main/models/mixins.py, SurveyJobTemplateMixin._survey_element_validation
#   [accept]   awx/main/models/mixins.py, SurveyJobTemplateMixin._accept_or_ignore_variables
#   [defaults] awx/main/models/mixins.py, SurveyJobTemplateMixin._update_unified_job_kwargs
#   [needed]   awx/main/models/mixins.py, SurveyJobTemplateMixin.variables_needed_to_start
#   [launch]   awx/api/serializers.py, JobLaunchSerializer.validate: POST .../launch/ calls
#              JobTemplate._accept_or_ignore_job_kwargs(_exclude_errors=['prompts'], **attrs), which hands
#              attrs.get('extra_vars', {}) to [accept]; any error is a 400 answer. awx.awx.job_launch posts
#              extra_vars only when the task gives them (plugins/modules/job_launch.py), so it is the same launch.
#   [schedule] awx/api/serializers.py, LaunchConfigurationBaseSerializer.validate (exclude_errors = () for
#              ScheduleSerializer): a schedule's extra_data goes through [accept] with nothing excluded.
# Passwords ($encrypted$ handling) are left out: no survey here asks for one (the schema forbids defaults
# for them, and test_survey_is_valid would catch a password question).

def awx_choices(element: dict) -> list:
    choices = element["choices"]
    return [c for c in choices.splitlines() if c.strip() != ""] if isinstance(choices, str) else list(choices)


def awx_element_errors(element: dict, data: dict, validate_required: bool = True) -> list[str]:
    """[element], branch for branch (password placeholder branch left out, see above)."""
    errors: list[str] = []
    var, kind = element["variable"], element["type"]
    present = var in data

    def limit(name):
        return element.get(name) if element.get(name) not in ("", None) else None

    if not present and element["required"]:
        if validate_required:
            errors.append(f"'{var}' value missing")
    elif kind in ("textarea", "text", "password"):
        if present:
            value = data[var]
            if not isinstance(value, str):
                return [f"Value {value} for '{var}' expected to be a string."]
            if "min" in element and limit("min") is not None and len(value) < int(element["min"]):
                errors.append(f"'{var}' value {value} is too small (length is {len(value)} must be at least {element['min']}).")
            if "max" in element and limit("max") is not None and len(value) > int(element["max"]):
                errors.append(f"'{var}' value {value} is too large (must be no more than {element['max']}).")
    elif kind == "integer":
        if present:
            value = data[var]
            if isinstance(value, bool) or not isinstance(value, int):  # AWX compares the exact type: a bool is not an integer answer
                return [f"Value {value} for '{var}' expected to be an integer."]
            if "min" in element and limit("min") is not None and value < int(element["min"]):
                errors.append(f"'{var}' value {value} is too small (must be at least {element['min']}).")
            if "max" in element and limit("max") is not None and value > int(element["max"]):
                errors.append(f"'{var}' value {value} is too large (must be no more than {element['max']}).")
    elif kind == "float":
        if present:
            value = data[var]
            if isinstance(value, bool) or not isinstance(value, (float, int)):
                return [f"Value {value} for '{var}' expected to be a numeric type."]
            if "min" in element and limit("min") is not None and value < float(element["min"]):
                errors.append(f"'{var}' value {value} is too small (must be at least {element['min']}).")
            if "max" in element and limit("max") is not None and value > float(element["max"]):
                errors.append(f"'{var}' value {value} is too large (must be no more than {element['max']}).")
    elif kind == "multiselect":
        if present:
            value = data[var]
            if not isinstance(value, list):
                errors.append(f"'{var}' value is expected to be a list.")
            else:
                choices = awx_choices(element)
                errors += [f"Value {v} for '{var}' expected to be one of {choices}." for v in value if v not in choices]
    elif kind == "multiplechoice":
        choices = awx_choices(element)
        if present and data[var] not in choices:
            errors.append(f"Value {data[var]} for '{var}' expected to be one of {choices}.")
    return errors


def awx_accept_or_ignore_variables(template: dict, data: dict, exclude_errors=()) -> tuple[dict, dict, dict]:
    """[accept]: (accepted, rejected, errors) for the extra variables of a launch or a schedule."""
    extra_vars, accepted, rejected, errors = dict(data), {}, {}, {}
    if template["survey_enabled"] and template["survey_spec"]:
        survey_errors = []
        for element in template["survey_spec"].get("spec", []):
            key = element.get("variable")
            element_errors = awx_element_errors(element, data, validate_required="required" not in exclude_errors)
            if element_errors:
                survey_errors += element_errors
                if key is not None and key in extra_vars:
                    rejected[key] = extra_vars.pop(key)
            elif key in extra_vars:
                accepted[key] = extra_vars.pop(key)
        if survey_errors:
            errors["variables_needed_to_start"] = survey_errors
    if template.get("ask_variables_on_launch"):
        accepted.update(extra_vars)
        extra_vars = {}
    for key in set(template["extra_vars"]) & set(extra_vars):
        if template["extra_vars"][key] == extra_vars[key]:
            extra_vars.pop(key)
    if extra_vars:
        rejected.update(extra_vars)
        if "prompts" not in exclude_errors:
            errors["extra_vars"] = [f"Variables {', '.join(map(str, extra_vars))} are not allowed on launch. Check the Prompt "
                                    "on Launch setting on the Job Template to include Extra Variables."]
    return accepted, rejected, errors


def awx_job_extra_vars(template: dict, runtime_extra_vars: dict) -> dict:
    """[defaults]: the job's extra variables, job template's own < survey defaults that pass [element] < answers."""
    extra_vars = dict(template["extra_vars"])
    defaults = {}
    if template["survey_enabled"] and "spec" in template["survey_spec"]:
        for element in template["survey_spec"].get("spec", []):
            default, key = element.get("default"), element.get("variable")
            if default is not None and not awx_element_errors(element, {key: default}):
                defaults[key] = default
    extra_vars.update(defaults)
    extra_vars.update(runtime_extra_vars)
    return extra_vars


def awx_variables_needed_to_start(template: dict) -> list[str]:
    """[needed]: what the launch endpoint lists, and what keeps can_start_without_user_input false."""
    if not (template["survey_enabled"] and "spec" in template["survey_spec"]):
        return []
    return [element["variable"] for element in template["survey_spec"]["spec"] if element["required"]]


def awx_launch(template: dict, **attrs) -> dict:
    """POST /api/v2/job_templates/N/launch/ ([launch]): the job's extra variables, or AssertionError with AWX's 400 body."""
    accepted, _rejected, errors = awx_accept_or_ignore_variables(template, attrs.get("extra_vars", {}), exclude_errors=["prompts"])
    assert not errors, errors
    return awx_job_extra_vars(template, accepted)


def awx_schedule_errors(template: dict, extra_data: dict) -> dict:
    """POST /api/v2/job_templates/N/schedules/ with extra_data ([schedule]): AWX's 400 body, {} when accepted."""
    return awx_accept_or_ignore_variables(template, extra_data, exclude_errors=())[2]


def awx_template(playbook: str) -> dict:
    """A job template as playbooks/awx_configure.yml creates it (awx.awx.job_template leaves ask_variables_on_launch false)."""
    template = job_template(playbook)
    return {"survey_enabled": "survey" in template, "ask_variables_on_launch": False,
            "survey_spec": load_survey(AWX_DIR / "surveys" / template["survey"]) if "survey" in template else {},
            "extra_vars": dict(template.get("extra_vars", {}))}


SURVEY_TEMPLATES = [t["playbook"] for t in AWX_VARS["homelab_flyte_awx_job_templates"] if "survey" in t]
# Job templates that cannot run without an answer, and no default could stand in for it: the version an
# upgrade goes to, the dump a restore reads. Every other template must launch (and be scheduled) unanswered.
NEEDS_AN_ANSWER = {"playbooks/upgrade.yml": {"flyte_chart_version": "1.17.0"},
                   "playbooks/restore.yml": {"restore_src": "/var/backups/homelab-flyte/flyte-20260101T000000Z"}}
ROUTINE_TEMPLATES = [playbook for playbook in SURVEY_TEMPLATES if playbook not in NEEDS_AN_ANSWER]


@pytest.mark.parametrize(
    ("element", "data", "expected"),
    [
        # The behaviours AWX's own tests pin (awx/main/tests/unit/models/test_survey_models.py), in cases of our own.
        ({"variable": "a", "type": "text", "required": True, "min": 0, "max": 1024}, {"a": 5},
         ["Value 5 for 'a' expected to be a string."]),
        ({"variable": "a", "type": "text", "required": True}, {}, ["'a' value missing"]),
        ({"variable": "a", "type": "text", "required": True}, {"a": ""}, []),
        ({"variable": "a", "type": "text", "required": False, "min": 1}, {"a": ""},
         ["'a' value  is too small (length is 0 must be at least 1)."]),
        ({"variable": "a", "type": "text", "required": False, "min": 1}, {}, []),
        ({"variable": "a", "type": "text", "required": False, "max": 0}, {"a": ""}, []),
        ({"variable": "a", "type": "text", "required": False, "max": 0}, {"a": "x"},
         ["'a' value x is too large (must be no more than 0)."]),
        ({"variable": "a", "type": "text", "required": False, "max": 2}, {"a": "xyz"},
         ["'a' value xyz is too large (must be no more than 2)."]),
        ({"variable": "a", "type": "integer", "required": False, "min": 3}, {"a": 1}, ["'a' value 1 is too small (must be at least 3)."]),
        ({"variable": "a", "type": "integer", "required": False}, {"a": True}, ["Value True for 'a' expected to be an integer."]),
        ({"variable": "a", "type": "float", "required": True, "min": 0, "max": 1024}, {"a": 2}, []),
        ({"variable": "c", "type": "multiplechoice", "required": False, "choices": "orange\nmilk"}, {"c": ""},
         ["Value  for 'c' expected to be one of ['orange', 'milk']."]),
        ({"variable": "c", "type": "multiplechoice", "required": False, "choices": ["keep", "delete"]}, {"c": "keep"}, []),
        ({"variable": "c", "type": "multiselect", "required": False, "choices": "orange\nmilk"}, {"c": ["orange\nmilk"]},
         ["Value orange\nmilk for 'c' expected to be one of ['orange', 'milk']."]),
        ({"variable": "c", "type": "multiselect", "required": False, "choices": "orange\nmilk"}, {"c": None},
         ["'c' value is expected to be a list."]),
    ],
)
def test_the_port_of_awx_survey_validation_behaves_as_awx(element, data, expected):
    assert awx_element_errors(element, data) == expected


def test_the_port_applies_defaults_and_answers_as_awx():
    spec = {"name": "", "description": "", "spec": [
        {"variable": "x", "type": "text", "required": False, "default": "d", "max": 5},
        {"variable": "y", "type": "text", "required": False, "default": "too-long", "max": 5},
        {"variable": "z", "type": "text", "required": True}]}
    template = {"survey_enabled": True, "survey_spec": spec, "extra_vars": {"x": "jt", "w": "jt"}}
    # Survey defaults beat the job template's extra variables; a default that fails its own question is dropped.
    assert awx_job_extra_vars(template, {}) == {"x": "d", "w": "jt"}
    assert awx_job_extra_vars(template, {"x": "ans"}) == {"x": "ans", "w": "jt"}
    assert awx_variables_needed_to_start(template) == ["z"]
    assert awx_accept_or_ignore_variables(template, {"z": "v", "other": 1}, ["prompts"]) == ({"z": "v"}, {"other": 1}, {})
    assert "extra_vars" in awx_accept_or_ignore_variables(template, {"z": "v", "other": 1})[2]
    # The job template's own extra variables, sent back unchanged, are not prompts.
    assert awx_accept_or_ignore_variables(template, {"z": "v", "w": "jt"})[2] == {}


@pytest.mark.parametrize("playbook", ROUTINE_TEMPLATES)
def test_a_launch_without_extra_vars_is_accepted_and_gets_the_survey_defaults(playbook):
    """POST .../launch/ with {} (the API, awx.awx.job_launch without extra_vars, a workflow node, a webhook)."""
    template = awx_template(playbook)
    job_vars = awx_launch(template)
    for question in template["survey_spec"]["spec"]:
        if "default" in question:
            assert job_vars[question["variable"]] == question["default"], question["variable"]
        else:
            # Unanswered and without a default: no extra variable, so the inventory's value applies.
            assert question["variable"] not in job_vars, question["variable"]
    assert awx_variables_needed_to_start(template) == []


@pytest.mark.parametrize(("playbook", "answers"), NEEDS_AN_ANSWER.items())
def test_a_launch_must_answer_exactly_the_questions_without_a_default(playbook, answers):
    template = awx_template(playbook)
    assert playbook in SURVEY_TEMPLATES
    assert awx_variables_needed_to_start(template) == list(answers)
    with pytest.raises(AssertionError, match="value missing"):
        awx_launch(template)
    job_vars = awx_launch(template, extra_vars=answers)
    assert {key: job_vars[key] for key in answers} == answers
    for question in template["survey_spec"]["spec"]:
        if "default" in question:
            assert job_vars[question["variable"]] == question["default"], question["variable"]


@pytest.mark.parametrize("playbook", ROUTINE_TEMPLATES)
def test_a_schedule_that_answers_one_question_is_accepted(playbook):
    template = awx_template(playbook)
    first = template["survey_spec"]["spec"][0]
    answer = first.get("default") or "flyte.example.com"
    assert awx_schedule_errors(template, {first["variable"]: answer}) == {}
    assert awx_schedule_errors(template, {}) == {}


def test_launch_answers_are_still_validated():
    template = awx_template("playbooks/site.yml")
    with pytest.raises(AssertionError, match="too small"):
        awx_launch(template, extra_vars={"homelab_flyte_hostname": ""})
    with pytest.raises(AssertionError, match="expected to be one of"):
        awx_launch(awx_template("playbooks/teardown.yml"), extra_vars={"awx_teardown_volumes": "erase"})
    assert awx_launch(template, extra_vars={"homelab_flyte_hostname": "flyte.example.com"})["homelab_flyte_hostname"] == "flyte.example.com"


@pytest.mark.parametrize("path", SURVEYS, ids=lambda p: p.name)
def test_every_question_with_a_default_is_optional(path):
    """A required question must be answered at every launch, so its default would apply only in AWX's UI form."""
    for question in load_survey(path)["spec"]:
        if "default" in question:
            assert question["required"] is False, question["variable"]


# --------------------------------------------------------------------------------------------------
# Credential types, against the JSON schemas AWX validates them with: awx/main/fields.py,
# CredentialTypeInputField.schema and CredentialTypeInjectorField.schema (ansible/awx at e21dd0a).

CREDENTIAL_INPUTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["id", "label"],
            "properties": {
                "type": {"enum": ["string", "boolean"]},
                "format": {"enum": ["ssh_private_key", "url"]},
                "choices": {"type": "array", "minItems": 1, "items": {"type": "string"}, "uniqueItems": True},
                "id": {"type": "string", "pattern": "^[a-zA-Z_]+[a-zA-Z0-9_]*$"},
                "label": {"type": "string"}, "help_text": {"type": "string"}, "multiline": {"type": "boolean"},
                "secret": {"type": "boolean"}, "ask_at_runtime": {"type": "boolean"}, "default": {},
            }}},
    },
}
CREDENTIAL_INJECTORS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "file": {"type": "object", "additionalProperties": False,
                 "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}}},
        "env": {"type": "object", "additionalProperties": False,
                "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string", "pattern": "^[\x00-\x7F]*$"}}},
        "extra_vars": {"type": "object", "additionalProperties": False,
                       "patternProperties": {r"^[a-zA-Z_\{\}]+[a-zA-Z0-9_\{\}]*$": {
                           "anyOf": [{"type": "string"}, {"type": "array"}, {"$ref": "#/properties/extra_vars"}]}}},
    },
}
# awx/main/constants.py ENV_BLOCKLIST, and CredentialTypeInjectorField.validate_env_var_allowed (no ANSIBLE_*).
ENV_BLOCKLIST = {"VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
                 "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
                 "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"}


def load_credential_type(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_there_are_credential_types():
    assert {p.name for p in CREDENTIAL_TYPES} == set(AWX_VARS["homelab_flyte_awx_credential_types"])


@pytest.mark.parametrize("path", CREDENTIAL_TYPES, ids=lambda p: p.name)
def test_credential_type_is_valid_for_awx(path):
    definition = load_credential_type(path)
    # awx.awx.credential_type's kind choices; AWX allows only cloud and net for custom types.
    assert definition["kind"] in ("cloud", "net")
    assert definition["name"] and definition["description"]
    jsonschema.validate(definition["inputs"], CREDENTIAL_INPUTS_SCHEMA)
    jsonschema.validate(definition["injectors"], CREDENTIAL_INJECTORS_SCHEMA)
    ids = [f["id"] for f in definition["inputs"]["fields"]]
    assert len(ids) == len(set(ids)) and "tower" not in ids  # CredentialTypeInputField.validate
    assert set(definition["inputs"]["required"]) <= set(ids)
    for name in definition["injectors"].get("env", {}):
        assert not name.startswith("ANSIBLE_") and name not in ENV_BLOCKLIST
    # CredentialTypeInjectorField.validate renders each template in a sandbox with StrictUndefined
    # against the fields: a template naming an undefined field is refused.
    sandbox = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for kind in ("env", "extra_vars", "file"):
        for key, template in definition["injectors"].get(kind, {}).items():
            try:
                sandbox.from_string(template).render({i: "EXAMPLE" for i in ids})
            except UndefinedError as error:
                pytest.fail(f"{path.name}: {kind}.{key} uses an undefined field ({error})")
    # Secrets are marked so, and so stored encrypted and shown as $encrypted$.
    assert all(f.get("secret") for f in definition["inputs"]["fields"] if re.search("token|password", f["id"]))


def test_onepassword_connect_type_injects_what_the_secrets_role_reads():
    definition = load_credential_type(AWX_DIR / "credential_types" / "onepassword_connect.yml")
    defaults = yaml.safe_load((REPO / "roles/secrets/defaults/main.yml").read_text(encoding="utf-8"))
    for variable, env in (("secrets_connect_host", "OP_CONNECT_HOST"), ("secrets_connect_token", "OP_CONNECT_TOKEN")):
        assert f"lookup('ansible.builtin.env', '{env}')" in defaults[variable]
        assert env in definition["injectors"]["env"]
    assert "name: 1Password Connect\n" in (AWX_DIR / "credential_types" / "onepassword_connect.yml").read_text()
    assert f"credential_type: {definition['name']}\n" in (REPO / "playbooks" / "awx_configure.yml").read_text()


def test_authentik_type_injects_the_roles_token_variable():
    definition = load_credential_type(AWX_DIR / "credential_types" / "authentik_api_token.yml")
    option = argument_spec("authentik")["authentik_api_token"]
    assert option.get("no_log") and list(definition["injectors"]["extra_vars"]) == ["authentik_api_token"]


# --------------------------------------------------------------------------------------------------
# playbooks/awx_configure.yml against a stand-in awx.awx collection

RECORDING_MODULE = '''#!/usr/bin/python
# Test stand-in for an awx.awx module: records its arguments, talks to no AWX.
from __future__ import annotations
import json
import os
from ansible.module_utils.basic import AnsibleModule, _load_params


def main():
    params = {k: v for k, v in _load_params().items() if not k.startswith("_ansible")}
    module = AnsibleModule(argument_spec={k: {"type": "raw"} for k in params}, supports_check_mode=True)
    with open(os.environ["AWX_RECORD"], "a", encoding="utf-8") as record:
        record.write(json.dumps({"module": "%s", "params": params}) + "\\n")
    module.exit_json(changed=False)


main()
'''
AWX_MODULES = ["organization", "credential_type", "credential", "execution_environment", "project", "project_update",
               "inventory", "inventory_source", "inventory_source_update", "job_template"]
SCM_URL, EE_IMAGE = "https://git.example.com/homelab/flyte.git", "registry.example.com/homelab/flyte-ee:0.1.0"
K8S_TOKEN, OP_TOKEN = "k8s-token-" + uuid.uuid4().hex, "op-token-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def fake_awx(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_awx")
    modules = root / "ansible_collections" / "awx" / "awx" / "plugins" / "modules"
    modules.mkdir(parents=True)
    for name in AWX_MODULES:
        (modules / f"{name}.py").write_text(RECORDING_MODULE % name, encoding="utf-8")
    return root


def configure(fake_awx: Path, tmp_path: Path, *extra_args: str, **env: str):
    record = tmp_path / "record.jsonl"
    record.touch()
    result = subprocess.run(
        ["ansible-playbook", "playbooks/awx_configure.yml", "-i", "localhost,", "-vvv",
         "-e", json.dumps({"homelab_flyte_awx_scm_url": SCM_URL, "homelab_flyte_awx_ee_image": EE_IMAGE,
                           "ansible_python_interpreter": sys.executable}), *extra_args],
        cwd=REPO, capture_output=True, text=True, check=False,
        env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(fake_awx), AWX_RECORD=str(record), **env))
    calls = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    return result, calls


def calls_of(calls, module):
    return [c["params"] for c in calls if c["module"] == module]


@pytest.fixture(scope="module")
def configured(fake_awx, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("configure")
    ca_cert = tmp_path / "ca.crt"
    ca_cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", encoding="utf-8")
    result, calls = configure(fake_awx, tmp_path, CONTROLLER_HOST="https://awx.example.com",
                              K8S_AUTH_HOST="https://k8s.example.com:6443", K8S_AUTH_API_KEY=K8S_TOKEN,
                              K8S_AUTH_SSL_CA_CERT=str(ca_cert), OP_CONNECT_HOST="http://op-connect:8080",
                              OP_CONNECT_TOKEN=OP_TOKEN)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, calls, ca_cert.read_text(encoding="utf-8")


def test_configure_registers_the_credential_types_unrendered(configured):
    calls = configured[1]
    types = {c["name"]: c for c in calls_of(calls, "credential_type")}
    assert set(types) == {load_credential_type(p)["name"] for p in CREDENTIAL_TYPES}
    op = types["1Password Connect"]
    assert op["kind"] == "cloud"
    assert op["injectors"] == {"env": {"OP_CONNECT_HOST": "{{ host }}", "OP_CONNECT_TOKEN": "{{ token }}"}}


def test_configure_creates_credentials_from_its_environment(configured):
    calls, ca_pem = configured[1], configured[2]
    credentials = {c["credential_type"]: c for c in calls_of(calls, "credential")}
    k8s = credentials["OpenShift or Kubernetes API Bearer Token"]
    assert k8s["name"] == AWX_VARS["homelab_flyte_awx_kubernetes_credential"]
    assert k8s["inputs"] == {"host": "https://k8s.example.com:6443", "bearer_token": K8S_TOKEN, "verify_ssl": True,
                             "ssl_ca_cert": ca_pem.rstrip("\n")}
    assert credentials["1Password Connect"]["inputs"] == {"host": "http://op-connect:8080", "token": OP_TOKEN}
    assert all(c["update_secrets"] is False for c in credentials.values())


def test_configure_keeps_the_tokens_out_of_its_output(configured):
    result = configured[0]
    assert K8S_TOKEN not in result.stdout + result.stderr
    assert OP_TOKEN not in result.stdout + result.stderr


def test_configure_registers_ee_project_and_inventory(configured):
    calls = configured[1]
    [ee] = calls_of(calls, "execution_environment")
    assert ee["image"] == EE_IMAGE and "credential" not in ee
    [project] = calls_of(calls, "project")
    assert project["scm_url"] == SCM_URL and project["scm_type"] == "git"
    assert project["default_environment"] == ee["name"] and "credential" not in project
    [source] = calls_of(calls, "inventory_source")
    assert source["source"] == "scm" and source["source_project"] == project["name"]
    assert (REPO / source["source_path"]).is_file()
    assert calls_of(calls, "inventory_source_update")


def test_configure_bounds_its_waits_for_the_project_sync_and_the_inventory_import(configured):
    """Without execution capacity AWX never starts a sync: each wait must end after its timeout."""
    calls = configured[1]
    [project] = calls_of(calls, "project")
    # awx.awx.project's own wait cannot be bounded (see the next test): the playbook does not use it.
    assert project["wait"] is False
    [sync] = calls_of(calls, "project_update")
    assert sync["name"] == project["name"] and sync["wait"] is True
    assert sync["timeout"] == AWX_VARS["homelab_flyte_awx_project_sync_timeout"] > 0
    [update] = calls_of(calls, "inventory_source_update")
    assert update["wait"] is True
    assert update["timeout"] == AWX_VARS["homelab_flyte_awx_inventory_sync_timeout"] > 0
    # The project is synced before anything that needs its files: the inventory source and the job templates.
    order = [c["module"] for c in calls]
    assert order.index("project") < order.index("project_update") < order.index("inventory_source") < order.index("job_template")


class _StillPending(Exception):
    pass


class _AwxModuleStandIn:
    """What awx.awx's wait code uses of ControllerAPIModule, with a controller that never runs the job."""

    def __init__(self, **params):
        self.params, self.json_output, self.gets = params, {}, 0

    def get_endpoint(self, url, **kwargs):
        self.gets += 1
        if self.gets > 200:
            raise _StillPending(url)
        return {"json": {"status": "pending", "finished": None, "failed": False, "id": 7, "scm_revision": ""}}

    def is_job_done(self, status):
        return status not in ("new", "pending", "waiting", "running")

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs["msg"])

    def wait_output(self, response):
        self.json_output["status"] = response["json"]["status"]


def test_awx_collections_own_waits_hang_without_a_bounded_wait(monkeypatch):
    """The real awx.awx 24.6.1 code (the one the ansible package pins): awx.awx.project waits for a sync already
    running (the one AWX starts when it creates the project) in a loop that ignores its timeout, while
    project_update and inventory_source_update wait through ControllerAPIModule.wait_on_url, which honours it."""
    from ansible_collections.awx.awx.plugins.module_utils.controller_api import ControllerAPIModule
    from ansible_collections.awx.awx.plugins.modules import project as awx_project

    monkeypatch.setattr("time.sleep", lambda seconds: None)
    running_sync = {"scm_revision": "", "summary_fields": {"current_update": {"id": 7}}, "related": {}}
    module = _AwxModuleStandIn(update_project=False, wait=True, timeout=1, interval=0.01)
    with pytest.raises(_StillPending):
        awx_project.wait_for_project_update(module, running_sync)

    clock = iter(range(0, 10**6, 5))
    monkeypatch.setattr("time.time", lambda: next(clock))
    module = _AwxModuleStandIn()
    with pytest.raises(AssertionError, match="aborted due to timeout"):
        ControllerAPIModule.wait_on_url(module, url="/api/v2/project_updates/7/", object_name="homelab.flyte",
                                        object_type="Project Update", timeout=30, interval=1)
    module = _AwxModuleStandIn()
    with pytest.raises(_StillPending):  # timeout None, what the playbook passed before: no end
        ControllerAPIModule.wait_on_url(module, url="/api/v2/inventory_updates/7/", object_name="homelab.flyte",
                                        object_type="inventory_update", timeout=None, interval=1)


def test_configure_registers_the_job_templates_with_their_surveys(configured):
    calls = configured[1]
    templates = {c["playbook"]: c for c in calls_of(calls, "job_template")}
    assert set(templates) == {"playbooks/site.yml", "playbooks/health.yml", "playbooks/seed.yml", "playbooks/teardown.yml",
                              "playbooks/upgrade.yml", "playbooks/restore.yml"}
    for playbook, template in templates.items():
        assert template["credentials"] == [AWX_VARS["homelab_flyte_awx_kubernetes_credential"],
                                           AWX_VARS["homelab_flyte_awx_onepassword_credential"]]
        assert template["allow_simultaneous"] is False
        if template["survey_enabled"]:
            assert survey_problems(template["survey_spec"]) == [], playbook
        else:
            assert "survey_spec" not in template
    deploy = templates["playbooks/site.yml"]
    assert deploy["survey_spec"] == load_survey(AWX_DIR / "surveys" / "deploy.json")
    assert all(deploy[k] for k in ("ask_tags_on_launch", "ask_skip_tags_on_launch", "ask_limit_on_launch", "ask_job_type_on_launch"))
    # The job template's own extra variables reach AWX as templates, for AWX to render at launch.
    assert templates["playbooks/seed.yml"]["extra_vars"]["flyte_seed_projects"].startswith("{{")
    assert templates["playbooks/teardown.yml"]["extra_vars"]["teardown_delete_volumes"].startswith("{{")
    assert templates["playbooks/upgrade.yml"]["survey_spec"] == load_survey(AWX_DIR / "surveys" / "upgrade.json")
    assert templates["playbooks/restore.yml"]["survey_spec"] == load_survey(AWX_DIR / "surveys" / "restore.json")


def test_configure_without_credential_values_only_names_credentials(fake_awx, tmp_path):
    result, calls = configure(fake_awx, tmp_path, "-e", "homelab_flyte_awx_onepassword_credential=''",
                              CONTROLLER_HOST="https://awx.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls_of(calls, "credential") == []
    for template in calls_of(calls, "job_template"):
        assert template["credentials"] == [AWX_VARS["homelab_flyte_awx_kubernetes_credential"]]


def test_configure_refuses_to_run_without_a_controller(fake_awx, tmp_path):
    result, calls = configure(fake_awx, tmp_path)
    assert result.returncode != 0 and "Set CONTROLLER_HOST" in result.stdout
    assert calls == []


# --------------------------------------------------------------------------------------------------
# Survey answers through the job templates' extra variables, written as AWX writes them

def awx_extravars(template_extra_vars: dict, answers: dict) -> str:
    """The env/extravars file of an AWX job, as awx/main/tasks/jobs.py (RunJob.build_extra_vars_file) and
    awx/main/utils/safe_yaml.py (safe_dump) write it with ALLOW_JINJA_IN_EXTRA_VARS='template': the job
    template's own extra variables as they are, everything else (the survey answers) tagged !unsafe."""
    extra_vars = {**template_extra_vars, **answers}
    documents = []
    for key, value in extra_vars.items():
        if template_extra_vars.get(key) == value and key in template_extra_vars:
            documents.append(yaml.safe_dump({key: value}))
        else:
            documents.append(f"!unsafe {json.dumps(key)}: " + (f"!unsafe {json.dumps(value)}" if isinstance(value, str)
                                                               else json.dumps(value)) + "\n")
    return "".join(documents)


EXTRA_VARS_PROBE = """\
- name: Resolve the job template's extra variables
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write them out with their types
      ansible.builtin.copy:
        content: "{{ {'projects': flyte_seed_projects, 'delete_volumes': teardown_delete_volumes,
                      'delete_namespace': teardown_delete_namespace, 'types': [teardown_delete_volumes | type_debug,
                      teardown_delete_namespace | type_debug]} | to_json }}"
        dest: "{{ probe_out }}"
        mode: "0600"
"""


def job_template(playbook: str) -> dict:
    return next(t for t in AWX_VARS["homelab_flyte_awx_job_templates"] if t["playbook"] == playbook)


@pytest.mark.parametrize(
    ("projects_answer", "volumes_answer", "namespace_answer", "projects", "delete_volumes", "delete_namespace"),
    [
        ("flytesnacks", "keep", "keep", ["flytesnacks"], False, False),
        ("flytesnacks\nml-team\n\n  research  \n", "delete", "keep", ["flytesnacks", "ml-team", "research"], True, False),
        ("a, b,c", "delete", "delete", ["a", "b", "c"], True, True),
        # An answer that looks like a template stays text: AWX marks answers !unsafe.
        ("{{ lookup('ansible.builtin.pipe', 'id') }}", "keep", "keep",
         ["{{", "lookup('ansible.builtin.pipe'", "'id')", "}}"], False, False),
    ],
)
def test_survey_answers_become_typed_variables(tmp_path, projects_answer, volumes_answer, namespace_answer, projects,
                                               delete_volumes, delete_namespace):
    extra_vars = {**job_template("playbooks/seed.yml")["extra_vars"], **job_template("playbooks/teardown.yml")["extra_vars"]}
    answers = {"awx_seed_projects": projects_answer, "awx_teardown_volumes": volumes_answer,
               "awx_teardown_namespace": namespace_answer}
    (tmp_path / "extravars").write_text(awx_extravars(extra_vars, answers), encoding="utf-8")
    (tmp_path / "probe.yml").write_text(EXTRA_VARS_PROBE, encoding="utf-8")
    out = tmp_path / "out.json"
    result = subprocess.run(["ansible-playbook", "-i", "localhost,", "probe.yml", "-e", f"@{tmp_path / 'extravars'}",
                             "-e", json.dumps({"probe_out": str(out), "ansible_python_interpreter": sys.executable})],
                            cwd=tmp_path, capture_output=True, text=True, check=False, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = json.loads(out.read_text(encoding="utf-8"))
    assert resolved == {"projects": projects, "delete_volumes": delete_volumes, "delete_namespace": delete_namespace,
                        "types": ["bool", "bool"]}


def test_teardown_extra_vars_are_the_teardown_playbooks_variables():
    teardown = REPO / "playbooks" / "teardown.yml"
    if not teardown.is_file():
        pytest.skip("playbooks/teardown.yml does not exist yet")
    play_vars = yaml.safe_load(teardown.read_text(encoding="utf-8"))[0]["vars"]
    assert set(job_template("playbooks/teardown.yml")["extra_vars"]) <= set(play_vars)


# --------------------------------------------------------------------------------------------------
# The project sync. awx/playbooks/project_update.yml (ansible/awx 24.6.1, play "Install content with
# ansible-galaxy command if necessary") runs, when the organization allows role and collection syncs
# (AWX_ROLES_ENABLED, AWX_COLLECTIONS_ENABLED, both on by default):
#   ansible-galaxy role install -r       the first of roles/requirements.yml, roles/requirements.yaml
#   ansible-galaxy collection install -r the first of collections/requirements.yml, collections/requirements.yaml
#   ansible-galaxy install -r            the first of requirements.yaml, requirements.yml (at the project's root)
# into the project's cache, which every job of the project then puts first on its collections path.

AWX_SYNC_REQUIREMENTS = ["roles/requirements.yml", "roles/requirements.yaml", "collections/requirements.yml",
                         "collections/requirements.yaml", "requirements.yaml", "requirements.yml"]
GALAXY_REQUIREMENTS = REPO / "meta" / "galaxy-requirements.yml"


def test_a_project_sync_installs_nothing_from_galaxy():
    """A sync must neither need Galaxy nor shadow the collections the execution environment was built with."""
    for name in AWX_SYNC_REQUIREMENTS:
        path = REPO / name
        if not path.exists():
            continue
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = content if isinstance(content, list) else (content.get("roles") or []) + (content.get("collections") or [])
        assert entries == [], f"AWX's project sync runs ansible-galaxy install -r {name}, which lists {entries}"


def test_the_galaxy_requirements_serve_galaxy_users_and_the_ee():
    collections = yaml.safe_load(GALAXY_REQUIREMENTS.read_text(encoding="utf-8"))["collections"]
    assert {c["name"]: c["version"] for c in collections} == GALAXY["dependencies"]
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text(encoding="utf-8"))
    assert (REPO / ee["dependencies"]["galaxy"]).resolve() == GALAXY_REQUIREMENTS
    assert str(GALAXY_REQUIREMENTS.relative_to(REPO)) in (REPO / "docs" / "awx.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Every playbook of the repository: the job templates' and the collection's

PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))


def test_job_template_playbooks_are_the_collections():
    for template in AWX_VARS["homelab_flyte_awx_job_templates"]:
        assert re.fullmatch(r"playbooks/[a-z_]+\.yml", template["playbook"])
        assert (template.get("survey") is None) or (AWX_DIR / "surveys" / template["survey"]).is_file()
    assert (REPO / "playbooks" / "site.yml") in PLAYBOOKS


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_syntax(playbook):
    result = subprocess.run(["ansible-playbook", "--syntax-check", str(playbook.relative_to(REPO))], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
