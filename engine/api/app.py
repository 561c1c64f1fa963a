"""The Lambda control plane for event source mappings, over HTTP (rest-json, as boto3 and the CLI speak it).

Errors are translated here, at the boundary: every LambdaError becomes AWS's error JSON with its type
header and status; anything unexpected becomes a ServiceException (and is logged with its traceback).
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine import states
from engine.api.dashboard import Dashboard
from engine.config import DEFAULT_FILTERS_PER_MAPPING
from engine.errors import (
    InvalidParameterValueException,
    LambdaError,
    ResourceConflictException,
    ResourceNotFoundException,
    SerializationException,
    ServiceException,
    UnknownOperationException,
    ValidationException,
)
from engine.events import parse_arn
from engine.filtering import FilterPatternError, compile_filters
from engine.metrics import EngineMetrics
from engine.model import EventSourceMapping, SourceKind, State, function_name_part
from engine.ports import (
    FunctionNotFound,
    FunctionResolver,
    InvokeError,
    SourceDescription,
    SourceError,
    SourceNotFound,
)
from engine.sources.registry import profile_of
from engine.store.ports import MappingStore
from engine.supervisor import Supervisor
from engine.validate.mappings import validate_create, validate_update
from engine.validate.tags import (
    check_tags,
    tagged_mapping_uuid,
    validate_tag_resource,
    validate_untag_keys,
)

log = structlog.get_logger("engine.api")

BASE = "/2015-03-31/event-source-mappings"
TAGS = "/2017-03-31/tags"
NOT_FOUND = "The resource you requested does not exist."
LIST_PAGE_MAX = 100

Describe = Callable[[EventSourceMapping], Awaitable[SourceDescription]]


@dataclass
class ControlPlane:
    store: MappingStore
    supervisor: Supervisor
    functions: FunctionResolver
    #: source existence and properties, by kind (kinds without one are not checked at create)
    describe_source: Mapping[SourceKind, Describe]
    function_arn: Callable[[str], str]
    max_filters: int = DEFAULT_FILTERS_PER_MAPPING

    # --- rendering ----------------------------------------------------------------------------------

    def render(self, m: EventSourceMapping, *, listed: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"UUID": m.uuid, **m.params}
        if listed and "KMSKeyArn" in m.params:
            # AWS lists filters encrypted with a customer key as null; Get and Delete show them (spec 2.1)
            out.pop("FilterCriteria", None)
        out["FunctionArn"] = m.function_arn
        out["LastModified"] = m.last_modified
        if profile_of(m.kind).shows_last_processing_result:
            out["LastProcessingResult"] = m.last_processing_result or "No records processed"
        out["State"] = m.state.value
        out["StateTransitionReason"] = m.state_transition_reason
        out["EventSourceMappingArn"] = self.mapping_arn(m)
        return dict(sorted(out.items()))

    @staticmethod
    def mapping_arn(m: EventSourceMapping) -> str:
        arn = parse_arn(m.function_arn)
        return f"arn:{arn.partition}:lambda:{arn.region}:{arn.account}:event-source-mapping:{m.uuid}"

    # --- checks shared by create and update -----------------------------------------------------------

    def _check_filters(self, kind: SourceKind, params: Mapping[str, Any]) -> None:
        patterns = [f.get("Pattern", "") for f in (params.get("FilterCriteria") or {}).get("Filters") or []]
        try:
            compile_filters(patterns, profile_of(kind).filters, max_filters=self.max_filters)
        except FilterPatternError as e:
            raise InvalidParameterValueException(str(e)) from None

    async def _function_timeout(self, function_name: str) -> float:
        try:
            invoker = await self.functions.resolve(function_name)
        except FunctionNotFound:
            raise InvalidParameterValueException("Function does not exist") from None
        except InvokeError as e:
            raise ServiceException(f"Could not reach the Lambda endpoint: {e}") from None
        return invoker.info.timeout_s

    async def _check_source(self, m: EventSourceMapping, function_timeout_s: float) -> None:
        describe = self.describe_source.get(m.kind)
        if describe is None:
            return
        try:
            desc = await describe(m)
        except SourceNotFound as e:
            raise InvalidParameterValueException(str(e)) from None
        except SourceError as e:
            raise ServiceException(f"Could not reach the event source: {e}") from None
        profile_of(m.kind).check_source(desc, function_timeout_s)

    def _check_duplicate(self, m: EventSourceMapping) -> None:
        profile = profile_of(m.kind)
        for other in self.store.list_mappings():
            if other.uuid == m.uuid or other.function_arn != m.function_arn:
                continue
            if profile.duplicates(m, other):
                raise ResourceConflictException(profile.duplicate_text(m, other))

    # --- operations ---------------------------------------------------------------------------------

    async def create(self, body: Mapping[str, Any]) -> EventSourceMapping:
        new_uuid = str(uuidlib.uuid4())
        req = validate_create(body, new_uuid=new_uuid)
        self._check_filters(req.kind, req.params)
        timeout_s = await self._function_timeout(req.function_name)
        m = EventSourceMapping(
            uuid=new_uuid,
            kind=req.kind,
            function_arn=self.function_arn(req.function_name),
            params=req.params,
            enabled=req.enabled,
            state=states.on_create(req.enabled),
            state_transition_reason=states.user_initiated_reason(req.kind),
            last_modified=time.time(),
        )
        await self._check_source(m, timeout_s)
        self._check_duplicate(m)
        # told first: a change refused for piling up (TooManyRequests) leaves nothing stored half-done; the
        # supervisor reads the mapping only once this handler yields, after it is stored
        self.supervisor.notify(m.uuid)
        m = self.store.insert_mapping(m)
        if req.tags:
            self.store.put_tags(m.uuid, req.tags)
        log.info(
            "mapping_created",
            mapping=m.uuid,
            kind=m.kind.value,
            function=m.function_arn,
            source=m.event_source_arn,
            enabled=m.enabled,
        )
        _log_not_applied(m)
        return m

    def get(self, uuid: str) -> EventSourceMapping:
        m = self.store.get_mapping(uuid)
        if m is None:
            raise ResourceNotFoundException(NOT_FOUND)
        return m

    async def update(self, uuid: str, body: Mapping[str, Any]) -> EventSourceMapping:
        current = self.get(uuid)
        states.check_update(current)
        req = validate_update(current, body)
        self._check_filters(current.kind, req.params)
        function_ref = req.function_name or current.function_arn
        timeout_s = await self._function_timeout(function_ref)
        enabled = current.enabled if req.enabled is None else req.enabled
        state = states.on_update(current, enabled)
        m = EventSourceMapping(
            uuid=uuid,
            kind=current.kind,
            function_arn=self.function_arn(req.function_name) if req.function_name else current.function_arn,
            params=req.params,
            enabled=enabled,
            state=state,
            # a user change restarts a consumer Lambda stopped (spec 6.6)
            state_transition_reason=states.user_initiated_reason(current.kind),
            last_modified=time.time(),
            last_processing_result=current.last_processing_result,
            seq=current.seq,
            extra=current.extra,
        )
        await self._check_source(m, timeout_s)
        self._check_duplicate(m)
        self.supervisor.notify(uuid)  # first, as in create
        self.store.save_mapping(m)
        log.info("mapping_updated", mapping=uuid, state=state.value)
        _log_not_applied(m)
        return m

    def delete(self, uuid: str) -> EventSourceMapping:
        current = self.get(uuid)
        states.check_delete(current)
        m = current.with_state(State.DELETING, last_modified=time.time())
        self.supervisor.notify(uuid)  # first, as in create
        self.store.save_mapping(m)
        log.info("mapping_delete_requested", mapping=uuid)
        return m

    def list(
        self,
        event_source_arn: str | None,
        function_name: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[EventSourceMapping], str | None]:
        after = 0
        if marker:
            try:
                after = int(marker)
            except ValueError:
                raise InvalidParameterValueException(f"Invalid marker: {marker}") from None
        page = min(max_items or LIST_PAGE_MAX, LIST_PAGE_MAX)
        items = self.store.list_mappings(
            after_seq=after,
            event_source_arn=event_source_arn or None,
            function_arn=(lambda arn: _function_matches(arn, function_name)) if function_name else None,
            limit=page + 1,  # one more says whether there is a next page
        )
        next_marker = str(items[page - 1].seq) if len(items) > page else None
        return items[:page], next_marker

    # --- tagging (mapping ARNs only: the engine holds no functions) ----------------------------------

    def _tagged(self, uuid: str, resource: str) -> EventSourceMapping:
        m = self.store.get_mapping(uuid)
        # the ARN's partition, region and account must be the mapping's too
        if m is None or self.mapping_arn(m).lower() != resource.lower():
            raise ResourceNotFoundException(NOT_FOUND)
        return m

    def list_tags(self, resource: str) -> dict[str, str]:
        return self.store.tags(self._tagged(tagged_mapping_uuid(resource), resource).uuid)

    def tag_resource(self, resource: str, body: Mapping[str, Any]) -> None:
        uuid = tagged_mapping_uuid(resource)
        tags = validate_tag_resource(body)
        m = self._tagged(uuid, resource)
        check_tags({**self.store.tags(m.uuid), **tags})
        self.store.put_tags(m.uuid, tags)

    def untag_resource(self, resource: str, keys: Sequence[str] | None) -> None:
        uuid = tagged_mapping_uuid(resource)
        tag_keys = validate_untag_keys(keys)
        self.store.remove_tags(self._tagged(uuid, resource).uuid, tag_keys)


#: Settings accepted, stored and returned that change nothing here yet (the README's Parameters table).
_NOT_APPLIED = ("LoggingConfig", "SchemaRegistryConfig")


def _log_not_applied(m: EventSourceMapping) -> None:
    found = [name for name in _NOT_APPLIED if name in m.params]
    for value in m.params.values():  # SchemaRegistryConfig sits inside the Kafka source config
        if isinstance(value, dict):
            found += [name for name in _NOT_APPLIED if name in value]
    if found:
        log.warning("mapping_settings_not_applied", mapping=m.uuid, settings=sorted(found))


def _function_matches(function_arn: str, ref: str) -> bool:
    """An unqualified name matches every qualifier of the function; a qualified one only itself."""
    if function_name_part(function_arn) != function_name_part(ref):
        return False
    stored_qualifier = _qualifier(function_arn)
    wanted = _qualifier(ref)
    return wanted is None or wanted == stored_qualifier


def _qualifier(ref: str) -> str | None:
    parts = ref.split(":")
    if ref.startswith("arn:"):
        return parts[7] if len(parts) > 7 else None
    if len(parts) >= 3:
        return parts[3] if len(parts) > 3 else None
    return parts[1] if len(parts) > 1 else None


# --- HTTP -------------------------------------------------------------------------------------------


def _error_response(e: LambdaError) -> web.Response:
    return web.json_response(e.body(), status=e.status, headers=e.headers())


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except LambdaError as e:
        log.info("api_error", method=request.method, path=request.path, error=e.code, message=e.message)
        return _error_response(e)
    except web.HTTPException as e:
        if e.status == 404:
            return _error_response(
                UnknownOperationException(f"Unknown operation {request.method} {request.path}")
            )
        if e.status == 405:
            return _error_response(
                UnknownOperationException(f"Unsupported method {request.method} {request.path}")
            )
        raise
    except Exception as e:
        log.exception("api_internal_error", method=request.method, path=request.path)
        return _error_response(ServiceException(f"Internal error: {type(e).__name__}"))


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise SerializationException(f"Could not parse the request body as JSON: {e}") from None
    if not isinstance(body, dict):
        raise SerializationException("The request body must be a JSON object.")
    return body


def _reply(m: EventSourceMapping, plane: ControlPlane, status: int) -> web.Response:
    return web.json_response(plane.render(m), status=status)


def _max_items(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SerializationException(f"MaxItems must be an integer, got {raw!r}") from None
    if not 1 <= value <= 10000:
        bound = "greater than or equal to 1" if value < 1 else "less than or equal to 10000"
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to satisfy constraint: "
            f"Member must have value {bound}"
        )
    return value


def build_app(
    plane: ControlPlane, metrics: EngineMetrics | None = None, dashboard: Dashboard | None = None
) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=8 * 1024 * 1024)

    async def create(request: web.Request) -> web.Response:
        return _reply(await plane.create(await _json_body(request)), plane, 202)

    async def list_(request: web.Request) -> web.Response:
        q = request.query
        items, next_marker = plane.list(
            q.get("EventSourceArn"), q.get("FunctionName"), q.get("Marker"), _max_items(q.get("MaxItems"))
        )
        body: dict[str, Any] = {"EventSourceMappings": [plane.render(m, listed=True) for m in items]}
        if next_marker:
            body["NextMarker"] = next_marker
        return web.json_response(body)

    async def get(request: web.Request) -> web.Response:
        return _reply(plane.get(request.match_info["uuid"]), plane, 200)

    async def update(request: web.Request) -> web.Response:
        return _reply(await plane.update(request.match_info["uuid"], await _json_body(request)), plane, 202)

    async def delete(request: web.Request) -> web.Response:
        return _reply(plane.delete(request.match_info["uuid"]), plane, 202)

    async def list_tags(request: web.Request) -> web.Response:
        return web.json_response({"Tags": plane.list_tags(request.match_info["resource"])})

    async def tag_resource(request: web.Request) -> web.Response:
        plane.tag_resource(request.match_info["resource"], await _json_body(request))
        return web.Response(status=204)

    async def untag_resource(request: web.Request) -> web.Response:
        plane.untag_resource(request.match_info["resource"], request.query.getall("tagKeys", None))
        return web.Response(status=204)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "running": sorted(plane.supervisor.running())})

    for base in (BASE, BASE + "/"):
        app.router.add_post(base, create)
        app.router.add_get(base, list_)
    app.router.add_get(BASE + "/{uuid}", get)
    app.router.add_put(BASE + "/{uuid}", update)
    app.router.add_delete(BASE + "/{uuid}", delete)
    app.router.add_get(TAGS + "/{resource:.+}", list_tags)
    app.router.add_post(TAGS + "/{resource:.+}", tag_resource)
    app.router.add_delete(TAGS + "/{resource:.+}", untag_resource)
    app.router.add_get("/health", health)
    if metrics is not None:

        async def scrape(request: web.Request) -> web.Response:
            body = generate_latest(metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", scrape)
    if dashboard is not None:
        dashboard.routes(app)
    return app
