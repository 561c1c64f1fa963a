"""A stack's mappings applied through the engine's own Lambda API, as CloudFormation applies them.

A mapping of the stack carries the stack's name and its logical id as tags. A second apply updates
what changed in place (its position is kept), replaces a mapping whose create-only properties changed
(EventSourceArn, StartingPosition, Topics, ...), deletes the stack's mappings the template no longer
declares, and leaves every other mapping alone.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import structlog
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import LambdaError
from engine.model import function_name_part
from engine.validate.mappings import validate_create
from engine.validate.service_model import input_shape, model_shape
from stack.intrinsics import TemplateError
from stack.plan import LOGICAL_ID_TAG, STACK_TAG, MappingPlan, StackPlan

log = structlog.get_logger(__name__)

#: what an update sends to take an optional setting away (the API's own "remove" values)
_REMOVED: Final[Mapping[str, Any]] = {
    "FilterCriteria": {"Filters": []},
    "DestinationConfig": {"OnFailure": {}},
    "ScalingConfig": {},
    "ProvisionedPollerConfig": {},
    "KMSKeyArn": "",
    "MetricsConfig": {"Metrics": []},
    "FunctionResponseTypes": [],
}
#: a deleted mapping drains its in-flight batch first (the engine's drain timeout, and then some)
DELETE_TIMEOUT_S: Final = 60.0
_NOT_COMPARED: Final = {"FunctionName", "Enabled", "Tags", "UUID"}


def _members(operation: str) -> set[str]:
    return set(model_shape(input_shape(operation))["members"]) - _NOT_COMPARED


@dataclass
class Applied:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: logical id -> UUID of every mapping of the stack after the apply
    uuids: dict[str, str] = field(default_factory=dict)


async def apply(plan: StackPlan, *, endpoint_url: str, region: str) -> Applied:
    """Make the engine's mappings tagged with the plan's stack what the plan says."""
    done = Applied()
    create_only = _members("CreateEventSourceMapping") - _members("UpdateEventSourceMapping")
    updatable = _members("UpdateEventSourceMapping")
    async with get_session().create_client(
        "lambda",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="esm",
        aws_secret_access_key="esm",
    ) as client:
        existing = await _stack_mappings(client, plan.stack_name)
        wanted = [m for m in plan.mappings if plan.runnable(m)]
        # what the template dropped goes first: its source may be a new event's (one mapping per
        # queue and function)
        for logical_id in sorted(set(existing) - {m.logical_id for m in wanted}):
            await _delete(client, existing.pop(logical_id)["UUID"])
            done.deleted.append(logical_id)
        for m in wanted:
            current = existing.pop(m.logical_id, None)
            try:
                if current is None:
                    done.uuids[m.logical_id] = await _create(client, m)
                    done.created.append(m.logical_id)
                    continue
                desired = validate_create(_without_tags(m.request), new_uuid=current["UUID"])
                params, have = desired.params, _plain(current)
                if any(params.get(k) != have.get(k) for k in create_only):
                    await _delete(client, current["UUID"])
                    done.uuids[m.logical_id] = await _create(client, m)
                    done.replaced.append(m.logical_id)
                    continue
                body = {
                    k: params[k] if k in params else _REMOVED[k]
                    for k in sorted(updatable)
                    if params.get(k) != have.get(k) and (k in params or k in _REMOVED)
                }
                if function_name_part(current["FunctionArn"]) != function_name_part(desired.function_name):
                    body["FunctionName"] = desired.function_name
                if desired.enabled != (current["State"] not in ("Disabled", "Disabling")):
                    body["Enabled"] = desired.enabled
                done.uuids[m.logical_id] = current["UUID"]
                if body:
                    await client.update_event_source_mapping(UUID=current["UUID"], **body)
                    done.updated.append(m.logical_id)
                else:
                    done.unchanged.append(m.logical_id)
                await client.tag_resource(Resource=current["EventSourceMappingArn"], Tags=m.request["Tags"])
            except (ClientError, BotoCoreError, LambdaError) as e:
                raise TemplateError(m.logical_id, "", f"the Lambda API refused the mapping: {e}") from None
    log.info(
        "stack_applied",
        stack_name=plan.stack_name,
        created=len(done.created),
        updated=len(done.updated),
        replaced=len(done.replaced),
        deleted=len(done.deleted),
        unchanged=len(done.unchanged),
    )
    return done


async def _delete(client: Any, uuid: str) -> None:
    """Delete, and wait until the mapping is gone: while it drains (Deleting) its source is still
    taken, and a new mapping of the same queue and function would conflict with it."""
    await client.delete_event_source_mapping(UUID=uuid)
    with anyio.fail_after(DELETE_TIMEOUT_S):
        while True:
            try:
                await client.get_event_source_mapping(UUID=uuid)
            except client.exceptions.ResourceNotFoundException:
                return
            await anyio.sleep(0.1)


async def _create(client: Any, m: MappingPlan) -> str:
    response = await client.create_event_source_mapping(**m.request)
    return str(response["UUID"])


async def _stack_mappings(client: Any, stack_name: str) -> dict[str, dict[str, Any]]:
    """The stack's mappings by logical id; a second one of a logical id (an apply cut short) goes."""
    found: dict[str, dict[str, Any]] = {}
    async for page in client.get_paginator("list_event_source_mappings").paginate():
        for mapping in page["EventSourceMappings"]:
            tags = (await client.list_tags(Resource=mapping["EventSourceMappingArn"]))["Tags"]
            if tags.get(STACK_TAG) != stack_name:
                continue
            logical_id = tags.get(LOGICAL_ID_TAG, "")
            if logical_id in found:
                await client.delete_event_source_mapping(UUID=mapping["UUID"])
            else:
                found[logical_id] = mapping
    return found


def _without_tags(request: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "Tags"}


def _plain(value: Any) -> Any:
    """A response as the API's canonical form: timestamps back to epoch seconds."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
