"""The control plane's handlers in-process (aiohttp's test server, an in-memory store, fake functions and
queues, a supervisor that only records notifications): the state each operation answers with and the
error each refusal raises are the state machine's (engine/states.py), the source is checked on create, and
every failure reaches the caller as Lambda's error JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine import states
from engine.api.app import BASE, ControlPlane, build_app
from engine.errors import LambdaError, TooManyRequestsException
from engine.model import EventSourceMapping, SourceKind, State, function_name_part
from engine.ports import FunctionNotFound, Invoker, SourceDescription, SourceError, SourceNotFound
from engine.sources.registry import profile_of
from engine.store.sqlite import SqliteStore
from tests.unit.fakes import ScriptedInvoker, ok

pytestmark = pytest.mark.anyio

ACCOUNT = "arn:aws:sqs:us-east-1:000000000000"
Q1, Q2 = f"{ACCOUNT}:q1", f"{ACCOUNT}:q2"
#: a queue whose visibility timeout (1 s) is below the function's timeout (ScriptedInvoker: 3 s)
SHORT_VT = f"{ACCOUNT}:short-vt"
MISSING, UNREACHABLE, BROKEN = f"{ACCOUNT}:missing", f"{ACCOUNT}:unreachable", f"{ACCOUNT}:broken"
NO_QUEUE = "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue."
USER_INITIATED = states.user_initiated_reason(SourceKind.SQS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Functions:
    """Knows the functions ``fn`` and ``other`` (any qualifier); any other name does not exist."""

    async def resolve(self, function_ref: str) -> Invoker:
        if function_name_part(function_ref) not in ("fn", "other"):
            raise FunctionNotFound(function_ref)
        return ScriptedInvoker(ok)


async def describe(m: EventSourceMapping) -> SourceDescription:
    arn = m.event_source_arn
    if arn == MISSING:
        raise SourceNotFound(NO_QUEUE)
    if arn == UNREACHABLE:
        raise SourceError("connection refused")
    if arn == BROKEN:
        raise RuntimeError("a bug")
    return SourceDescription(visibility_timeout_s=1 if arn == SHORT_VT else 30)


class Notified:
    """The supervisor as the control plane sees it: told which mapping changed (``full``: its queue of
    pending changes is, and it refuses with TooManyRequests)."""

    def __init__(self) -> None:
        self.uuids: list[str] = []
        self.full = False

    def notify(self, uuid: str) -> None:
        if self.full:
            raise TooManyRequestsException("Rate exceeded")
        self.uuids.append(uuid)

    def running(self) -> set[str]:
        return set()


@pytest.fixture
def plane() -> ControlPlane:
    return ControlPlane(
        store=SqliteStore(":memory:"),
        supervisor=Notified(),  # type: ignore[arg-type]
        functions=Functions(),
        describe_source={SourceKind.SQS: describe},
        function_arn=lambda ref: f"arn:aws:lambda:us-east-1:123456789012:function:{ref}",
    )


@asynccontextmanager
async def _api(plane: ControlPlane) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(plane))) as client:
        yield client


def _notified(plane: ControlPlane) -> list[str]:
    assert isinstance(plane.supervisor, Notified)
    return plane.supervisor.uuids


async def _call(client: TestClient[Any, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    resp = await client.request(method, path, json=body)
    return resp.status, await resp.json()


async def _create(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    status, created = await _call(client, "POST", BASE, {"EventSourceArn": Q1, "FunctionName": "fn", **body})
    assert status == 202, created
    return dict(created)


def _settle(plane: ControlPlane, uuid: str, state: State, **changes: Any) -> EventSourceMapping:
    """Put a mapping where the supervisor (or a change under way) left it."""
    m = plane.store.get_mapping(uuid)
    assert m is not None
    m = m.with_state(state, **changes)
    plane.store.save_mapping(m)
    return m


async def _expect_error(
    client: TestClient[Any, Any], method: str, path: str, error: LambdaError, body: Any = None
) -> None:
    """The HTTP answer is exactly ``error`` as Lambda returns it (status, type header, JSON body)."""
    resp = await client.request(method, path, json=body)
    assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (error.status, error.code)
    assert await resp.json() == error.body()


def _refusal(check: Any, current: EventSourceMapping) -> LambdaError:
    with pytest.raises(LambdaError) as refused:
        check(current)
    return refused.value


# --- create ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("enabled", "state"), [(True, State.CREATING), (False, State.DISABLED)])
async def test_create_answers_the_state_machines_first_state_and_notifies(
    plane: ControlPlane, enabled: bool, state: State
) -> None:
    async with _api(plane) as client:
        created = await _create(client, Enabled=enabled)
    assert state is states.on_create(enabled)
    assert (created["State"], created["StateTransitionReason"]) == (state.value, USER_INITIATED)
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    assert "LastProcessingResult" not in created  # SQS mappings show none
    stored = plane.store.get_mapping(created["UUID"])
    assert stored is not None and (stored.state, stored.enabled) == (state, enabled)
    assert _notified(plane) == [created["UUID"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"EventSourceArn": MISSING}, NO_QUEUE),
        ({"FunctionName": "nope"}, "Function does not exist"),
        (
            {"EventSourceArn": SHORT_VT},
            "Queue visibility timeout: 1 seconds is less than Function timeout: 3 seconds",
        ),
    ],
    ids=["missing-source", "missing-function", "source-below-function-timeout"],
)
async def test_create_checks_the_function_and_the_source_and_stores_nothing_when_refused(
    plane: ControlPlane, body: dict[str, str], message: str
) -> None:
    async with _api(plane) as client:
        status, answer = await _call(
            client, "POST", BASE, {"EventSourceArn": Q1, "FunctionName": "fn", **body}
        )
    assert (status, answer) == (400, {"message": message, "Type": "User"})
    assert plane.store.list_mappings() == [] and _notified(plane) == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (UNREACHABLE, "Could not reach the event source: connection refused"),
        (BROKEN, "Internal error: RuntimeError"),  # a bug is a ServiceException, not a dropped connection
    ],
    ids=["unreachable", "bug"],
)
async def test_a_source_that_cannot_be_described_is_a_service_exception(
    plane: ControlPlane, source: str, message: str
) -> None:
    async with _api(plane) as client:
        status, answer = await _call(client, "POST", BASE, {"EventSourceArn": source, "FunctionName": "fn"})
    assert (status, answer) == (500, {"Message": message, "Type": "Service"})
    assert plane.store.list_mappings() == []


async def test_a_second_mapping_of_one_queue_to_one_function_is_a_conflict(plane: ControlPlane) -> None:
    async with _api(plane) as client:
        first = await _create(client)
        status, answer = await _call(client, "POST", BASE, {"EventSourceArn": Q1, "FunctionName": "fn"})
        existing = plane.store.get_mapping(first["UUID"])
        assert existing is not None
        # the profile's text names the queue and the function, and says what to do with the first mapping
        text = profile_of(SourceKind.SQS).duplicate_text(existing, existing)
        assert (status, answer) == (409, {"message": text, "Type": "User"})
        await _create(client, FunctionName="other")  # another function may read the same queue
    assert len(plane.store.list_mappings()) == 2


# --- get and list -------------------------------------------------------------------------------------


async def test_get_shows_the_stored_mapping_and_an_unknown_uuid_is_not_found(plane: ControlPlane) -> None:
    async with _api(plane) as client:
        created = await _create(client)
        _settle(plane, created["UUID"], State.ENABLED)
        status, got = await _call(client, "GET", f"{BASE}/{created['UUID']}")
        assert status == 200 and got == {**created, "State": "Enabled"}
        for method in ("GET", "PUT", "DELETE"):
            status, answer = await _call(
                client, method, f"{BASE}/no-such-uuid", {} if method == "PUT" else None
            )
            assert (status, answer) == (
                404,
                {"Message": "The resource you requested does not exist.", "Type": "User"},
            )


async def test_list_filters_by_source_and_function_and_pages_with_a_marker(plane: ControlPlane) -> None:
    async with _api(plane) as client:
        a = await _create(client)
        b = await _create(client, EventSourceArn=Q2)
        c = await _create(client, FunctionName="other")

        async def listed(query: str) -> list[str]:
            status, body = await _call(client, "GET", f"{BASE}?{query}")
            assert status == 200
            return [m["UUID"] for m in body["EventSourceMappings"]]

        assert await listed(f"EventSourceArn={Q1}") == [a["UUID"], c["UUID"]]
        assert await listed("FunctionName=fn") == [a["UUID"], b["UUID"]]
        assert await listed("FunctionName=fn:live") == []  # a qualified name matches only itself
        assert await listed(f"EventSourceArn={Q2}&FunctionName=fn") == [b["UUID"]]

        pages, marker = [], ""
        while True:
            _, body = await _call(client, "GET", f"{BASE}?MaxItems=2{marker}")
            pages.append([m["UUID"] for m in body["EventSourceMappings"]])
            if "NextMarker" not in body:
                break
            marker = f"&Marker={body['NextMarker']}"
        assert pages == [[a["UUID"], b["UUID"]], [c["UUID"]]]


# --- update -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled_before", "body"),
    [
        (True, {"BatchSize": 5}),
        (True, {"Enabled": False}),
        (False, {"Enabled": True}),
        (False, {"BatchSize": 5}),
    ],
)
async def test_update_answers_the_state_machines_transition_and_restarts_a_stopped_consumer(
    plane: ControlPlane, enabled_before: bool, body: dict[str, Any]
) -> None:
    async with _api(plane) as client:
        created = await _create(client, Enabled=enabled_before)
        uuid = created["UUID"]
        # a consumer the supervisor stopped (spec 6.6): the user's change restarts it
        current = _settle(
            plane,
            uuid,
            states.settled(enabled_before),
            state_transition_reason="EVENT_SOURCE_AUTHN_ERROR",
            last_processing_result="PROBLEM: denied",
        )
        status, updated = await _call(client, "PUT", f"{BASE}/{uuid}", body)
    expected = states.on_update(current, body.get("Enabled", enabled_before))
    assert status == 202
    assert (updated["State"], updated["StateTransitionReason"]) == (expected.value, USER_INITIATED)
    assert updated["BatchSize"] == body.get("BatchSize", 10)
    stored = plane.store.get_mapping(uuid)
    assert stored is not None
    assert (stored.state, stored.last_processing_result, stored.seq) == (
        expected,
        "PROBLEM: denied",
        current.seq,
    )
    assert _notified(plane) == [uuid, uuid]


@pytest.mark.parametrize("state", [s for s in State if s.is_transitional])
async def test_update_during_a_transition_is_refused_with_the_state_machines_error(
    plane: ControlPlane, state: State
) -> None:
    async with _api(plane) as client:
        uuid = (await _create(client))["UUID"]
        current = _settle(plane, uuid, state)
        error = _refusal(states.check_update, current)
        await _expect_error(client, "PUT", f"{BASE}/{uuid}", error, {"BatchSize": 5})
    assert plane.store.get_mapping(uuid) == current
    assert _notified(plane) == [uuid]  # the create's only


# --- delete -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.ENABLED, State.DISABLED, State.ENABLING, State.DISABLING])
async def test_delete_answers_deleting_and_notifies(plane: ControlPlane, state: State) -> None:
    async with _api(plane) as client:
        created = await _create(client)
        _settle(plane, created["UUID"], state)
        status, deleted = await _call(client, "DELETE", f"{BASE}/{created['UUID']}")
    assert status == 202 and deleted["State"] == "Deleting" and deleted["BatchSize"] == 10
    stored = plane.store.get_mapping(created["UUID"])
    assert stored is not None and stored.state is State.DELETING  # the supervisor removes it
    assert _notified(plane) == [created["UUID"]] * 2


@pytest.mark.parametrize("state", [State.CREATING, State.UPDATING, State.DELETING])
async def test_delete_during_a_transition_is_refused_with_the_state_machines_error(
    plane: ControlPlane, state: State
) -> None:
    async with _api(plane) as client:
        uuid = (await _create(client))["UUID"]
        current = _settle(plane, uuid, state)
        await _expect_error(client, "DELETE", f"{BASE}/{uuid}", _refusal(states.check_delete, current))
    assert plane.store.get_mapping(uuid) == current


# --- malformed requests -------------------------------------------------------------------------------


async def test_malformed_bodies_and_unknown_routes_get_lambda_errors(plane: ControlPlane) -> None:
    async with _api(plane) as client:
        resp = await client.post(BASE, data=b"{not json")
        assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (400, "SerializationException")
        resp = await client.post(BASE, data=b"[1, 2]")
        assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (400, "SerializationException")
        resp = await client.get(f"{BASE}?MaxItems=0")
        assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (400, "ValidationException")
        for method, path in (("GET", "/2015-03-31/functions"), ("PATCH", f"{BASE}/u1")):
            resp = await client.request(method, path)
            assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (404, "UnknownOperationException")
    assert plane.store.list_mappings() == []


async def test_a_change_refused_for_piling_up_leaves_nothing_half_done(plane: ControlPlane) -> None:
    """The supervisor is told before the store changes: TooManyRequests stores nothing, so no mapping is
    left in a transitional state nobody will reconcile."""
    async with _api(plane) as client:
        created = await _create(client)
        uuid = created["UUID"]
        settled = _settle(plane, uuid, State.ENABLED)
        assert isinstance(plane.supervisor, Notified)
        plane.supervisor.full = True
        refused = TooManyRequestsException("Rate exceeded")
        await _expect_error(client, "POST", BASE, refused, {"EventSourceArn": Q1, "FunctionName": "other"})
        await _expect_error(client, "PUT", f"{BASE}/{uuid}", refused, {"BatchSize": 5})
        await _expect_error(client, "DELETE", f"{BASE}/{uuid}", refused)
    assert plane.store.list_mappings() == [settled]
