"""Validation of TagResource, UntagResource and ListTags on event source mapping ARNs: the model's
constraints on keys and values, and AWS's rules on a resource's whole tag set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import InvalidParameterValueException
from engine.validate.service_model import (
    Inspection,
    input_member,
    input_shape,
    inspect_body,
    java_pattern,
    model_shape,
)

TAG_RESOURCE, UNTAG_RESOURCE = "TagResource", "UntagResource"

#: Lambda's quota of tags per resource.
MAX_TAGS_PER_RESOURCE = 50
TOO_MANY_TAGS = "Number of tags exceeds resource tag limit."
#: What AWS answered to TagResource with no tags (LocalStack's AWS-validated snapshot).
NO_TAGS = "An error occurred and the request cannot be processed."


def unsupported_tagging_resource(resource: str) -> str:
    """Observed (hashicorp/terraform-provider-aws#39849): AWS's answer to an ARN it cannot tag."""
    return f"Unsupported resource type for tagging or invalid arn: {resource}"


def reserved_tag_key(key: str) -> str:
    return f"Tag keys starting with 'aws:' are reserved for AWS use: {key}"


def tagged_mapping_uuid(resource: str) -> str:
    """The UUID an event source mapping ARN names. Any other ARN, valid or not, is one this engine
    cannot tag: it holds no functions or code signing configurations."""
    pattern = model_shape(input_member(TAG_RESOURCE, "Resource")["shape"])["pattern"]
    resource_type, _, resource_id = resource.split(":", 5)[-1].partition(":")
    if not java_pattern(pattern).fullmatch(resource) or resource_type != "event-source-mapping":
        raise InvalidParameterValueException(unsupported_tagging_resource(resource))
    return resource_id.lower()


def validate_tag_resource(body: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a TagResource body (model constraints on keys and values, AWS's rules on the rest)."""
    inspect_body(input_shape(TAG_RESOURCE), body).raise_violations()
    tags = dict(body["Tags"])
    if not tags:
        raise InvalidParameterValueException(NO_TAGS)
    check_tags(tags)
    return tags


def validate_untag_keys(keys: Sequence[str] | None) -> list[str]:
    """UntagResource's ``tagKeys`` query parameters (required, each a model TagKey)."""
    member = input_member(UNTAG_RESOURCE, "TagKeys")
    inspection = Inspection()
    given = None if keys is None else list(keys)
    inspection.member(member["shape"], given, member["locationName"], member["locationName"])
    inspection.raise_violations()
    return given or []


def check_tags(tags: Mapping[str, str]) -> None:
    """The rules beyond the model on a resource's whole tag set (texts [UNVERIFIED])."""
    if len(tags) > MAX_TAGS_PER_RESOURCE:
        raise InvalidParameterValueException(TOO_MANY_TAGS)
    for key in tags:
        if key.lower().startswith("aws:"):
            raise InvalidParameterValueException(reserved_tag_key(key))
