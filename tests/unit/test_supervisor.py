"""The supervisor on fake runners and an in-memory store: states settle, each mapping's changes apply one at
a time and coalesce, mappings do not wait for each other, temporary errors restart with back-off (counted on
a fake sleep, never slept), a missing source is reported once and cleared, a stopped consumer stays stopped
until its mapping changes, and shutdown drains with a deadline."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from engine import states
from engine.errors import TooManyRequestsException
from engine.model import EventSourceMapping, SourceKind, State
from engine.ports import (
    ESM_CONFIG_NOT_VALID,
    ConsumerStopped,
    FunctionNotFound,
    SourceAccessDenied,
    SourceError,
    SourceNotFound,
)
from engine.retry import Backoff
from engine.store.sqlite import SqliteStore
from engine.supervisor import SOURCE_MISSING_REASON, Supervisor

pytestmark = pytest.mark.anyio

USER_INITIATED = states.user_initiated_reason(SourceKind.SQS)
#: the deadline a runner gets to drain; the only real wait of these tests
DRAIN_S = 0.05


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- fakes ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one start of a mapping's runner does."""

    #: raised by the runner factory (e.g. FunctionNotFound), else by run() before it is ready
    error: BaseException | None = None
    in_factory: bool = False
    #: ready() only once set: a slow start (positions being fixed)
    ready_gate: anyio.Event | None = None
    #: once drained, run() returns only when this is set (never set: the runner hangs on drain)
    drain_gate: anyio.Event | None = None


class FakeRunner:
    def __init__(self, fleet: Fleet, m: EventSourceMapping, plan: Plan) -> None:
        self.fleet, self.mapping, self.plan = fleet, m, plan
        self._drained = anyio.Event()

    def _note(self, what: str) -> None:
        self.fleet.events.append((what, self.mapping.uuid, self.mapping.params["BatchSize"]))

    async def run(self, ready: Callable[[], None]) -> None:
        self._note("run")
        try:
            if self.plan.error is not None:
                raise self.plan.error
            if self.plan.ready_gate is not None:
                await self.plan.ready_gate.wait()
            ready()
            await self._drained.wait()
            if self.plan.drain_gate is not None:
                await self.plan.drain_gate.wait()
        except anyio.get_cancelled_exc_class():
            self._note("cancelled")
            raise
        self._note("returned")

    def drain(self, *, abandon_waits: bool = False) -> None:
        self._note("drain")
        self._drained.set()


@dataclass
class Fleet:
    """The runner factory: each start of a mapping takes its next plan (none left: a runner that works)."""

    plans: dict[str, list[Plan]] = field(default_factory=dict)
    #: (what, mapping, BatchSize): run / drain / returned / cancelled, in the order they happened
    events: list[tuple[str, str, int]] = field(default_factory=list)
    build_gate: anyio.Event | None = None

    def script(self, uuid: str, *plans: Plan) -> None:
        self.plans.setdefault(uuid, []).extend(plans)

    async def __call__(self, m: EventSourceMapping) -> FakeRunner:
        plans = self.plans.get(m.uuid)
        plan = plans.pop(0) if plans else Plan()
        if plan.in_factory and plan.error is not None:
            self.events.append(("run", m.uuid, m.params["BatchSize"]))
            raise plan.error
        return FakeRunner(self, m, plan)

    def seen(self, what: str, uuid: str) -> list[int]:
        """The BatchSize of each ``what`` event of ``uuid``."""
        return [size for w, u, size in self.events if w == what and u == uuid]


class FakeSleep:
    """The supervisor's back-off sleep: records each delay and returns at once; from sleep number
    ``park_after`` + 1 on it waits forever (a back-off longer than the test)."""

    def __init__(self, park_after: int = 1000) -> None:
        self.delays: list[float] = []
        self.park_after = park_after

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) > self.park_after:
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()


class RecordingStore(SqliteStore):
    """An in-memory store that also records the problem reports the supervisor writes."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.reports: list[tuple[str, str, str | None]] = []

    def set_stopped_reason(self, uuid: str, reason: str, result: str | None) -> None:
        self.reports.append(("stopped", reason, result))
        super().set_stopped_reason(uuid, reason, result)

    def set_last_processing_result(self, uuid: str, result: str) -> None:
        self.reports.append(("result", "", result))
        super().set_last_processing_result(uuid, result)


# --- helpers -------------------------------------------------------------------------------------


def _mapping(uuid: str, state: State, *, enabled: bool = True, batch_size: int = 10) -> EventSourceMapping:
    return EventSourceMapping(
        uuid=uuid,
        kind=SourceKind.SQS,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        params={"EventSourceArn": f"arn:aws:sqs:us-east-1:000000000000:{uuid}", "BatchSize": batch_size},
        enabled=enabled,
        state=state,
        state_transition_reason=USER_INITIATED,
        last_modified=0.0,
    )


def _supervisor(
    store: SqliteStore, fleet: Fleet, sleep: FakeSleep | None = None, *, drain_timeout_s: float = DRAIN_S
) -> Supervisor:
    return Supervisor(
        store,
        fleet,
        drain_timeout_s=drain_timeout_s,
        settle_timeout_s=5.0,
        restart_backoff=lambda: Backoff(base_s=1.0, cap_s=4.0, rng=random.Random(12)),
        sleep=sleep or FakeSleep(),
    )


@asynccontextmanager
async def _running(sup: Supervisor) -> AsyncIterator[Supervisor]:
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            yield sup
            tg.cancel_scope.cancel()


async def _until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(2):
        while not check():
            await anyio.sleep(0.001)


def _state(store: SqliteStore, uuid: str) -> State | None:
    m = store.get_mapping(uuid)
    return m.state if m else None


def _reason(store: SqliteStore, uuid: str) -> str | None:
    m = store.get_mapping(uuid)
    return m.state_transition_reason if m else None


def _change(sup: Supervisor, m: EventSourceMapping, state: State, **changes: Any) -> None:
    """What the control plane does: write the mapping in its new state, then notify."""
    sup.store.save_mapping(m.with_state(state, **changes))
    sup.notify(m.uuid)


async def _quiet() -> None:
    """Let the other tasks run until they wait (did something that should not happen, happen?).

    A hundred scheduling rounds are plenty here (the store is in memory, the fakes never wait for I/O)
    and take no time; anyio.wait_all_tasks_blocked sleeps 0.1 s whenever a task is still runnable."""
    for _ in range(100):
        await anyio.lowlevel.checkpoint()


# --- states settle -------------------------------------------------------------------------------


async def test_stored_mappings_settle_before_the_supervisor_reports_started() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    for m in (
        _mapping("creating", State.CREATING),
        _mapping("enabled", State.ENABLED),
        _mapping("disabled", State.DISABLED, enabled=False),
        _mapping("disabling", State.DISABLING, enabled=False),
        _mapping("deleting", State.DELETING),
    ):
        store.insert_mapping(m)
    async with _running(_supervisor(store, fleet)) as sup:
        assert {m.uuid: m.state for m in store.list_mappings()} == {
            "creating": State.ENABLED,
            "enabled": State.ENABLED,
            "disabled": State.DISABLED,
            "disabling": State.DISABLED,
        }
        assert sup.running() == {"creating", "enabled"}
        assert sorted(u for w, u, _ in fleet.events if w == "run") == ["creating", "enabled"]


async def test_create_disable_enable_update_delete_settle_and_drive_the_runner() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    async with _running(_supervisor(store, fleet)) as sup:
        m = store.insert_mapping(_mapping("u1", State.CREATING))
        sup.notify("u1")
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        assert sup.running() == {"u1"} and fleet.seen("run", "u1") == [10]

        _change(sup, m, State.DISABLING, enabled=False)
        await _until(lambda: _state(store, "u1") is State.DISABLED)
        assert sup.running() == set()
        assert fleet.seen("drain", "u1") == fleet.seen("returned", "u1") == [10]

        _change(sup, m, State.ENABLING)
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        assert sup.running() == {"u1"} and fleet.seen("run", "u1") == [10, 10]

        # an update applies by a restart with the stored configuration
        _change(sup, m, State.UPDATING, params={**m.params, "BatchSize": 7})
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        assert fleet.seen("run", "u1") == [10, 10, 7]
        assert fleet.seen("drain", "u1") == [10, 10]

        _change(sup, m, State.DELETING)
        await _until(lambda: store.get_mapping("u1") is None)
        assert sup.running() == set()
        assert fleet.seen("returned", "u1") == [10, 10, 7]
        assert "cancelled" not in {w for w, _, _ in fleet.events}


async def test_a_mapping_created_disabled_starts_no_runner() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    async with _running(_supervisor(store, fleet)) as sup:
        store.insert_mapping(_mapping("u1", State.DISABLED, enabled=False))
        sup.notify("u1")
        await _quiet()
        assert _state(store, "u1") is State.DISABLED
        assert sup.running() == set() and fleet.events == []


# --- one mapping at a time, mappings side by side ------------------------------------------------------


async def test_changes_to_one_mapping_apply_one_at_a_time_and_coalesce() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    sup = _supervisor(store, fleet, drain_timeout_s=5.0)
    reconciles: list[str] = []
    active = 0
    reconcile = sup._reconcile

    async def counted(uuid: str) -> None:
        nonlocal active
        reconciles.append(uuid)
        active += 1
        assert active == 1, "two reconciles of one mapping at once"
        try:
            await reconcile(uuid)
        finally:
            active -= 1

    sup._reconcile = counted  # type: ignore[method-assign]
    slow_drain = anyio.Event()
    fleet.script("u1", Plan(drain_gate=slow_drain))
    async with _running(sup):
        m = store.insert_mapping(_mapping("u1", State.CREATING))
        sup.notify("u1")
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        assert reconciles == ["u1"]

        _change(sup, m, State.UPDATING, params={**m.params, "BatchSize": 2})
        await _until(lambda: fleet.seen("drain", "u1") == [10])
        for _ in range(5):  # changes while the first runner drains: one more reconcile, after it
            sup.notify("u1")
        await _quiet()
        assert fleet.seen("run", "u1") == [10]  # the new runner waits for the old one

        slow_drain.set()
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        await _quiet()
        assert reconciles == ["u1"] * 3
        assert fleet.seen("run", "u1") == [10, 2]
        assert [w for w, _, _ in fleet.events] == ["run", "drain", "returned", "run"]


async def test_a_delete_accepted_while_disabling_is_applied_after_it() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    slow_drain = anyio.Event()
    fleet.script("u1", Plan(drain_gate=slow_drain))
    async with _running(_supervisor(store, fleet, drain_timeout_s=5.0)) as sup:
        m = store.insert_mapping(_mapping("u1", State.CREATING))
        sup.notify("u1")
        await _until(lambda: _state(store, "u1") is State.ENABLED)

        _change(sup, m, State.DISABLING, enabled=False)
        await _until(lambda: fleet.seen("drain", "u1") == [10])
        states.check_delete(m.with_state(State.DISABLING))  # the API accepts it
        _change(sup, m, State.DELETING, enabled=False)
        slow_drain.set()
        await _until(lambda: sup.running() == set())
        await _quiet()
        assert store.get_mapping("u1") is None


@pytest.mark.parametrize("where", ["factory", "ready"])
async def test_one_mappings_slow_start_does_not_delay_another(where: str) -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    gate = anyio.Event()
    slow = Plan(ready_gate=gate)
    if where == "factory":  # e.g. the function is being resolved

        async def build_slowly(m: EventSourceMapping) -> FakeRunner:
            if m.uuid == "slow":
                await gate.wait()
            return await fleet(m)

        runner_factory: Callable[[EventSourceMapping], Awaitable[FakeRunner]] = build_slowly
    else:  # the runner is fixing its read positions
        fleet.script("slow", slow)
        runner_factory = fleet
    sup = Supervisor(store, runner_factory, sleep=FakeSleep(), settle_timeout_s=5.0)
    async with _running(sup):
        for uuid in ("slow", "quick"):
            store.insert_mapping(_mapping(uuid, State.CREATING))
            sup.notify(uuid)
        await _until(lambda: _state(store, "quick") is State.ENABLED)
        assert _state(store, "slow") is State.CREATING  # Enabled means polling

        gate.set()
        await _until(lambda: _state(store, "slow") is State.ENABLED)
        assert sup.running() == {"slow", "quick"}


# --- temporary errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        Plan(error=SourceError("broker unreachable")),
        Plan(error=ExceptionGroup("runner", [SourceError("broker unreachable")])),
        Plan(error=FunctionNotFound("broker unreachable"), in_factory=True),
    ],
    ids=["raised", "from-a-task-group", "from-the-factory"],
)
async def test_a_runner_error_restarts_with_back_off_and_is_reported_once(error: Plan) -> None:
    store, fleet, sleep = RecordingStore(), Fleet(), FakeSleep(park_after=4)
    fleet.script("u1", *[error] * 5)
    with capture_logs() as logs:
        async with _running(_supervisor(store, fleet, sleep)) as sup:
            store.insert_mapping(_mapping("u1", State.CREATING))
            sup.notify("u1")
            await _until(lambda: len(sleep.delays) == 5)
            await _quiet()
            m = store.get_mapping("u1")
            assert m is not None
            assert m.state is State.ENABLED  # the state settles; LastProcessingResult says what is wrong
            assert m.last_processing_result == "PROBLEM: broker unreachable"
            assert m.state_transition_reason == USER_INITIATED
            assert len(fleet.seen("run", "u1")) == 5  # parked in the fifth back-off

    # attempt n waits between half and all of min(cap, base * 2**n)
    for delay, ceiling in zip(sleep.delays, [1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert store.reports == [("result", "", "PROBLEM: broker unreachable")]
    events = [e["event"] for e in logs if e.get("mapping") == "u1"]
    assert events.count("mapping_interrupted") == 1
    assert events.count("mapping_restart_scheduled") == 5


async def test_each_new_problem_is_reported_and_a_working_runner_ends_the_restarts() -> None:
    store, fleet, sleep = RecordingStore(), Fleet(), FakeSleep()
    fleet.script("u1", *[Plan(error=SourceError(t)) for t in ("timeout", "timeout", "refused", "timeout")])
    async with _running(_supervisor(store, fleet, sleep)) as sup:
        store.insert_mapping(_mapping("u1", State.CREATING))
        sup.notify("u1")
        await _until(lambda: len(fleet.seen("run", "u1")) == 5)
        await _quiet()
        assert sup.running() == {"u1"} and len(sleep.delays) == 4
    assert [r for _, _, r in store.reports] == ["PROBLEM: timeout", "PROBLEM: refused", "PROBLEM: timeout"]


async def test_an_unexpected_exception_crashes_the_supervisor() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    fleet.script("u1", Plan(error=RuntimeError("bug")))
    with pytest.raises(BaseExceptionGroup) as crash:
        async with _running(_supervisor(store, fleet)) as sup:
            store.insert_mapping(_mapping("u1", State.CREATING))
            sup.notify("u1")
            await anyio.sleep_forever()
    assert crash.group_contains(RuntimeError, match="bug")


# --- a missing source --------------------------------------------------------------------------------


async def test_a_missing_source_is_reported_once_and_cleared_when_it_is_back() -> None:
    store, fleet, sleep = RecordingStore(), Fleet(), FakeSleep()
    back = anyio.Event()
    gone = "PROBLEM: The specified queue does not exist."
    fleet.script(
        "u1", *[Plan(error=SourceNotFound(gone.removeprefix("PROBLEM: ")))] * 3, Plan(ready_gate=back)
    )
    with capture_logs() as logs:
        async with _running(_supervisor(store, fleet, sleep)) as sup:
            store.insert_mapping(_mapping("u1", State.CREATING))
            sup.notify("u1")
            await _until(lambda: len(fleet.seen("run", "u1")) == 4)
            m = store.get_mapping("u1")
            assert m is not None and m.state is State.ENABLED
            assert (m.state_transition_reason, m.last_processing_result) == (SOURCE_MISSING_REASON, gone)
            assert store.reports == [("stopped", SOURCE_MISSING_REASON, gone)]
            assert len(sleep.delays) == 3

            back.set()
            await _until(lambda: _reason(store, "u1") == USER_INITIATED)
            m = store.get_mapping("u1")
            assert m is not None and m.last_processing_result is None
            assert store.reports[1:] == [("stopped", USER_INITIATED, None)]
    events = [e["event"] for e in logs if e.get("mapping") == "u1"]
    assert events.count("mapping_source_missing") == events.count("mapping_source_found") == 1


async def test_a_source_missing_before_a_restart_of_the_engine_is_cleared_once_read() -> None:
    store, fleet = RecordingStore(), Fleet()
    m = _mapping("u1", State.ENABLED)
    store.insert_mapping(m.with_state(State.ENABLED, state_transition_reason=SOURCE_MISSING_REASON))
    store.set_last_processing_result("u1", "PROBLEM: gone")
    async with _running(_supervisor(store, fleet)):
        m2 = store.get_mapping("u1")
        assert m2 is not None
        assert (m2.state_transition_reason, m2.last_processing_result) == (USER_INITIATED, None)


# --- a stopped consumer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason", "problem"),
    [
        (
            ConsumerStopped("FilterCriteria: too many", reason=ESM_CONFIG_NOT_VALID),
            ESM_CONFIG_NOT_VALID,
            "FilterCriteria: too many",
        ),
        (
            SourceAccessDenied("bad credentials", reason="EVENT_SOURCE_AUTHN_ERROR"),
            "EVENT_SOURCE_AUTHN_ERROR",
            "bad credentials",
        ),
        (
            ExceptionGroup(
                "runner", [SourceError("flaky"), SourceAccessDenied("no", reason="EVENT_SOURCE_AUTHZ_ERROR")]
            ),
            "EVENT_SOURCE_AUTHZ_ERROR",
            "no",
        ),
    ],
    ids=["config", "access-denied", "denied-beside-another-error"],
)
async def test_a_stopped_consumer_stays_stopped_until_its_mapping_changes(
    error: BaseException, reason: str, problem: str
) -> None:
    store, fleet, sleep = SqliteStore(":memory:"), Fleet(), FakeSleep()
    fleet.script("u1", Plan(error=error))
    async with _running(_supervisor(store, fleet, sleep)) as sup:
        m = store.insert_mapping(_mapping("u1", State.CREATING))
        sup.notify("u1")
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        sup.notify("u1")  # a change that is no change (the state is settled): nothing restarts
        await _quiet()
        stopped = store.get_mapping("u1")
        assert stopped is not None
        assert (stopped.state_transition_reason, stopped.last_processing_result) == (
            reason,
            f"PROBLEM: {problem}",
        )
        assert fleet.seen("run", "u1") == [10] and sleep.delays == []

        _change(sup, m, State.UPDATING, params={**m.params, "BatchSize": 3})
        await _until(lambda: fleet.seen("run", "u1") == [10, 3])
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        assert sup.running() == {"u1"}


# --- shutdown ------------------------------------------------------------------------------------


def _drained_or_cancelled(fleet: Fleet) -> list[tuple[str, str]]:
    return sorted((w, u) for w, u, _ in fleet.events if w != "run")


#: a runner that drains at once and one that ignores the drain: the deadline cancels it
_PROMPT_AND_STUCK = [("cancelled", "stuck"), ("drain", "prompt"), ("drain", "stuck"), ("returned", "prompt")]


def _prompt_and_stuck(fleet: Fleet) -> SqliteStore:
    store = SqliteStore(":memory:")
    fleet.script("stuck", Plan(drain_gate=anyio.Event()))  # never set
    for uuid in ("prompt", "stuck"):
        store.insert_mapping(_mapping(uuid, State.CREATING))
    return store


async def test_stopping_all_drains_every_runner_and_cancels_one_that_outlives_the_deadline() -> None:
    fleet = Fleet()
    async with _running(_supervisor(_prompt_and_stuck(fleet), fleet)) as sup:
        assert sup.running() == {"prompt", "stuck"}
        begun = anyio.current_time()
        await sup.stop_all()
        assert DRAIN_S <= anyio.current_time() - begun < 1.0
        assert _drained_or_cancelled(fleet) == _PROMPT_AND_STUCK
        assert sup.running() == set()


async def test_shutdown_drains_every_runner_within_the_deadline() -> None:
    fleet = Fleet()
    async with _running(_supervisor(_prompt_and_stuck(fleet), fleet)) as sup:
        assert sup.running() == {"prompt", "stuck"}
    assert _drained_or_cancelled(fleet) == _PROMPT_AND_STUCK


async def test_disabling_a_runner_that_hangs_on_drain_settles_after_the_deadline() -> None:
    store, fleet = SqliteStore(":memory:"), Fleet()
    fleet.script("u1", Plan(drain_gate=anyio.Event()))
    async with _running(_supervisor(store, fleet)) as sup:
        m = store.insert_mapping(_mapping("u1", State.CREATING))
        sup.notify("u1")
        await _until(lambda: _state(store, "u1") is State.ENABLED)
        _change(sup, m, State.DISABLING, enabled=False)
        await _until(lambda: _state(store, "u1") is State.DISABLED)
        assert [w for w, _, _ in fleet.events] == ["run", "drain", "cancelled"]


def test_notifications_beyond_the_pending_limit_are_throttled() -> None:
    sup = Supervisor(SqliteStore(":memory:"), Fleet(), max_pending_changes=2)
    sup.notify("a")
    sup.notify("b")
    with pytest.raises(TooManyRequestsException):
        sup.notify("c")
