"""A SAM or CloudFormation template, read and expanded to plain CloudFormation.

SAM's own transform (aws-sam-translator, the library `sam build` and CloudFormation use) expands
AWS::Serverless::* resources; the engine never re-implements it. A function's local CodeUri goes
through the transform as a placeholder S3 location and comes back as its folder.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from stack.intrinsics import TemplateError

SAM_TRANSFORM: Final = "AWS::Serverless-2016-10-31"
#: the placeholder bucket a local CodeUri travels through SAM's transform as
LOCAL_CODE_BUCKET: Final = "esm-local-code"

#: cfn-lint findings that are not errors here: the engine reads a YAML FilterCriteria pattern as JSON
_LINT_ACCEPTED: Final = {("E3012", "Pattern")}


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: Mapping[str, Any]
    condition: str | None = None


@dataclass(frozen=True)
class Template:
    """A template in plain CloudFormation: SAM expanded, intrinsics not yet resolved."""

    path: Path
    parameters: Mapping[str, Any]
    conditions: Mapping[str, Any]
    mappings: Mapping[str, Any]
    resources: Mapping[str, Resource]
    #: the folder of each local CodeUri, by its placeholder S3Key
    code: Mapping[str, Path]
    #: the whole expanded template, as cfn-lint reads it
    data: Mapping[str, Any]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]


def read_template(path: Path) -> dict[str, Any]:
    """The template as data: YAML (CloudFormation's short tags `!Ref`, `!Sub`, ... included) or JSON."""
    from samtranslator.yaml_helper import yaml_parse
    from yaml import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TemplateError(None, "", f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = yaml_parse(text)
    except (YAMLError, ValueError) as e:
        raise TemplateError(None, "", f"{path} is not YAML or JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(None, "", f"{path} has no Resources section")
    return data


def expand(
    path: Path, *, region: str, account_id: str, stack_name: str, overrides: Mapping[str, str]
) -> Template:
    """`path` read, its local code folders set aside and, when it declares SAM's transform, expanded."""
    data = read_template(path)
    transforms = data.get("Transform") or []
    transforms = [transforms] if isinstance(transforms, str) else transforms
    unknown = [t for t in transforms if t != SAM_TRANSFORM]
    if unknown:
        raise TemplateError(
            None, "Transform", f"only {SAM_TRANSFORM} is run locally, not {', '.join(map(str, unknown))}"
        )
    code: dict[str, Path] = {}
    data = _set_code_aside(data, path.parent, code)
    if transforms:
        data = _sam_transform(
            data, region=region, account_id=account_id, stack_name=stack_name, overrides=overrides
        )
    resources: dict[str, Resource] = {}
    for logical_id, body in data["Resources"].items():
        if not isinstance(body, Mapping) or not isinstance(body.get("Type"), str):
            raise TemplateError(logical_id, "Type", "a resource needs a Type")
        properties = body.get("Properties") or {}
        if not isinstance(properties, Mapping):
            raise TemplateError(logical_id, "Properties", "Properties must be an object")
        condition = body.get("Condition")
        resources[logical_id] = Resource(logical_id, body["Type"], properties, condition)
    return Template(
        path=path,
        parameters=data.get("Parameters") or {},
        conditions=data.get("Conditions") or {},
        mappings=data.get("Mappings") or {},
        resources=resources,
        code=code,
        data=data,
    )


def _set_code_aside(data: dict[str, Any], base: Path, code: dict[str, Path]) -> dict[str, Any]:
    """Each function's local CodeUri (its own or Globals') replaced by a placeholder S3 location that
    SAM's transform accepts and keeps; `code` gets the folder of each placeholder key."""
    data = copy.deepcopy(data)
    function_globals = (data.get("Globals") or {}).get("Function") or {}
    shared = function_globals.pop("CodeUri", None) if isinstance(function_globals, dict) else None
    for logical_id, body in data["Resources"].items():
        if not isinstance(body, dict) or body.get("Type") != "AWS::Serverless::Function":
            continue
        properties = body.setdefault("Properties", {})
        if not isinstance(properties, dict) or "InlineCode" in properties or "ImageUri" in properties:
            continue
        uri = properties.get("CodeUri", shared)
        if uri is None:
            continue
        if isinstance(uri, str) and not uri.startswith("s3://"):
            folder = (base / uri).resolve()
            if not folder.is_dir():
                raise TemplateError(logical_id, "Properties.CodeUri", f"{folder} is not a folder")
            code[logical_id] = folder
            uri = f"s3://{LOCAL_CODE_BUCKET}/{logical_id}"
        properties["CodeUri"] = uri
    return data


def _sam_transform(
    data: dict[str, Any], *, region: str, account_id: str, stack_name: str, overrides: Mapping[str, str]
) -> dict[str, Any]:
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException, InvalidResourceException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.arn_generator import ArnGenerator
    from samtranslator.translator.translator import Translator

    ArnGenerator.BOTO_SESSION_REGION_NAME = region
    # the translator reports its own usage metrics through logging: nothing a user needs
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    values = {
        **overrides,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
    }
    # the region is the engine's, not the AWS chain's; managed policy ARNs only matter to IAM
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        expanded: dict[str, Any] = translator.translate(
            data, parameter_values=values, get_managed_policy_map=dict
        )
    except InvalidDocumentException as e:
        causes = [str(getattr(c, "message", c)) for c in getattr(e, "causes", []) or [e]]
        raise TemplateError(None, "", "SAM's transform refused the template: " + "; ".join(causes)) from None
    except InvalidResourceException as e:
        raise TemplateError(e.logical_id, "", e.message) from None
    return expanded


def lint(data: Mapping[str, Any], *, region: str, logical_ids: set[str]) -> list[str]:
    """cfn-lint's errors on the resources the engine runs, each as `Resources.ID.PATH: message (rule)`.

    Run on the expanded template: cfn-lint's own SAM schema lags the transform (it knows no
    SelfManagedKafka event, for one), CloudFormation's resource schemas do not.
    """
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    found: list[str] = []
    for match in cfn_lint(json.dumps(data, default=str), config=ManualArgs(regions=[region])):
        path = [str(part) for part in match.path]
        if match.rule.severity != "error" or len(path) < 2 or path[0] != "Resources":
            continue
        if path[1] not in logical_ids or (match.rule.id, path[-1]) in _LINT_ACCEPTED:
            continue
        found.append(f"{'.'.join(path)}: {match.message} (cfn-lint {match.rule.id})")
    return found
