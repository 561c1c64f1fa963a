"""The supervisor: reconciles the store's mappings with running runners, one runner per enabled mapping.

The control plane writes a mapping (in a transitional state) and notifies; the supervisor starts, stops or
restarts that mapping's runner and settles the state (Creating -> Enabled, Disabling -> Disabled, ...).
Each mapping has its own reconcile worker (Kopf's one worker per object): a mapping's changes apply in
order, and no mapping's start or stop waits for another's.
A temporary source failure (SourceError) stays inside its mapping: its runner restarts with back-off,
and each new problem is reported once (LastProcessingResult, one log event), not once per retry. A
source that no longer exists (SourceNotFound) also says so in StateTransitionReason, since SQS
mappings show no LastProcessingResult; both are restored when the source is back.
A source that refuses the mapping's credentials, or a configuration that cannot run (ConsumerStopped),
stops the mapping's consumer until the mapping changes, as Lambda does (spec 6.6): no restart loop.
Any other exception is a bug and crashes the engine loudly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine import states
from engine.errors import TooManyRequestsException
from engine.model import EventSourceMapping, State
from engine.ports import (
    ESM_CONFIG_NOT_VALID,
    ConsumerStopped,
    FunctionNotFound,
    InvokeError,
    Runner,
    SourceError,
    SourceNotFound,
)
from engine.retry import Backoff
from engine.store.ports import MappingStore

log = structlog.get_logger("engine.supervisor")

#: errors that keep a mapping from running for now; the runner is restarted with back-off
TEMPORARY_ERRORS = (SourceError, SourceNotFound, FunctionNotFound, InvokeError)
#: StateTransitionReason while the mapping's source does not exist [UNVERIFIED]: AWS's code for a
#: mapping whose configuration no longer works (it keeps the mapping and retries, as the engine does)
SOURCE_MISSING_REASON = ESM_CONFIG_NOT_VALID


RunnerFactory = Callable[[EventSourceMapping], Awaitable[Runner]]


def _runner_scope() -> anyio.CancelScope:
    # the engine's own cancellation reaches a runner only through the supervisor, which drains it first
    # (stop_all, _stop) and then cancels this scope: the shield's deadline is drain_timeout_s
    return anyio.CancelScope(shield=True)


@dataclass
class _Handle:
    mapping: EventSourceMapping
    scope: anyio.CancelScope = field(default_factory=_runner_scope)
    done: anyio.Event = field(default_factory=anyio.Event)
    #: the runner fixed its read positions (LATEST means from here), or its first start failed
    ready: anyio.Event = field(default_factory=anyio.Event)
    runner: Runner | None = None


class Supervisor:
    def __init__(
        self,
        store: MappingStore,
        runner_factory: RunnerFactory,
        *,
        drain_timeout_s: float = 10.0,
        settle_timeout_s: float = 30.0,
        max_pending_changes: int = 1000,
        restart_backoff: Callable[[], Backoff] = lambda: Backoff(base_s=0.5, cap_s=60.0),
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        on_deleted: Callable[[str], None] = lambda uuid: None,
    ) -> None:
        self.store = store
        #: told when a mapping is gone from the store (its metrics go with it)
        self.on_deleted = on_deleted
        self.runner_factory = runner_factory
        self.drain_timeout_s = drain_timeout_s
        self.settle_timeout_s = settle_timeout_s
        self.restart_backoff = restart_backoff
        #: waits out a restart's back-off (tests count the delays instead of sleeping)
        self.sleep = sleep
        self._send: MemoryObjectSendStream[str]
        self._recv: MemoryObjectReceiveStream[str]
        self._send, self._recv = anyio.create_memory_object_stream[str](max_pending_changes)
        self._handles: dict[str, _Handle] = {}
        #: the reconcile workers running, by mapping: set when the mapping changed again meanwhile
        self._changed: dict[str, anyio.Event] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def notify(self, uuid: str) -> None:
        """A mapping changed in the store; raises TooManyRequestsException when changes pile up."""
        try:
            self._send.send_nowait(uuid)
        except anyio.WouldBlock:
            raise TooManyRequestsException("Rate exceeded") from None

    def running(self) -> set[str]:
        return set(self._handles)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                # started once every stored mapping has settled, each on its own
                async with anyio.create_task_group() as first:
                    for m in self.store.list_mappings():
                        self._dispatch(m.uuid, first)
                task_status.started()
                async with self._recv:
                    async for uuid in self._recv:
                        self._dispatch(uuid, tg)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop_all()

    async def stop_all(self) -> None:
        async with anyio.create_task_group() as tg:
            for uuid in list(self._handles):
                tg.start_soon(self._stop, uuid, True)

    def _dispatch(self, uuid: str, tg: anyio.abc.TaskGroup) -> None:
        changed = self._changed.get(uuid)
        if changed is None:
            self._changed[uuid] = changed = anyio.Event()
            tg.start_soon(self._reconcile_worker, uuid, name=f"esm-reconcile-{uuid}")
        changed.set()

    async def _reconcile_worker(self, uuid: str) -> None:
        """Reconciles one mapping until no change is left; changes that arrive meanwhile coalesce."""
        try:
            while self._changed[uuid].is_set():
                self._changed[uuid] = anyio.Event()
                await self._reconcile(uuid)
        finally:
            del self._changed[uuid]

    async def _reconcile(self, uuid: str) -> None:
        m = self.store.get_mapping(uuid)
        if m is None:
            await self._stop(uuid)
            return
        if m.state is State.DELETING:
            await self._stop(uuid)
            self.store.delete_mapping(uuid)
            self.on_deleted(uuid)
            log.info("mapping_deleted", mapping=uuid)
            return
        if states.restarts_runner(m.state):
            await self._stop(uuid)
        if m.enabled:
            handle = self._start(m)
            # Enabled means polling: a LATEST mapping sees what is written once it reports Enabled
            with anyio.move_on_after(self.settle_timeout_s):
                await handle.ready.wait()
        else:
            await self._stop(uuid)
        settled = states.settled(m.enabled)
        if m.state is not settled:
            # re-read: the runner may have recorded a problem (LastProcessingResult) meanwhile, and the
            # control plane may have accepted another change (a Delete while Disabling, an Update while
            # Enabling): that change is the next reconcile's, never overwritten by this one's settling
            current = self.store.get_mapping(uuid)
            if current is None or (current.state, current.last_modified) != (m.state, m.last_modified):
                return
            self.store.save_mapping(current.with_state(settled))
            log.info("mapping_state_changed", mapping=uuid, state=settled.value, previous=m.state.value)

    def _start(self, m: EventSourceMapping) -> _Handle:
        if m.uuid in self._handles:
            return self._handles[m.uuid]
        assert self._tg is not None
        handle = _Handle(m)
        self._handles[m.uuid] = handle
        self._tg.start_soon(self._run_mapping, handle, name=f"esm-mapping-{m.uuid}")
        return handle

    async def _stop(self, uuid: str, engine_stops: bool = False) -> None:
        handle = self._handles.get(uuid)
        if handle is None:
            return
        if handle.runner is not None:
            handle.runner.drain(abandon_waits=engine_stops)
            with anyio.move_on_after(self.drain_timeout_s):
                await handle.done.wait()
        handle.scope.cancel()
        await handle.done.wait()

    async def _run_mapping(self, handle: _Handle) -> None:
        m = handle.mapping
        backoff = self.restart_backoff()
        bound = log.bind(mapping=m.uuid, source=m.event_source_arn, function=m.function_arn)
        reported: str | None = None  # the problem the store and the log show now
        source_missing = False

        def ready() -> None:
            nonlocal reported, source_missing
            if source_missing or m.state_transition_reason == SOURCE_MISSING_REASON:
                self.store.set_stopped_reason(m.uuid, states.user_initiated_reason(m.kind), None)
                bound.info("mapping_source_found")
            reported, source_missing = None, False
            handle.ready.set()

        try:
            with handle.scope:
                while True:
                    try:
                        handle.runner = await self.runner_factory(m)
                        bound.info("mapping_started", kind=m.kind.value)
                        await handle.runner.run(ready)
                        return
                    except* TEMPORARY_ERRORS as group:  # raised directly or from a runner's task group
                        e = _first_leaf(group)
                        handle.runner = None
                        problem = f"PROBLEM: {e}"
                        if isinstance(e, ConsumerStopped):
                            self.store.set_stopped_reason(m.uuid, e.reason, problem)
                            bound.error("mapping_consumer_stopped", reason=e.reason, error=str(e))
                            handle.ready.set()
                            await anyio.sleep_forever()  # until the mapping is updated, disabled or deleted
                        delay = backoff.next_delay()
                        if problem != reported:
                            reported = problem
                            if isinstance(e, SourceNotFound):
                                source_missing = True
                                self.store.set_stopped_reason(m.uuid, SOURCE_MISSING_REASON, problem)
                                bound.error("mapping_source_missing", error=str(e))
                            else:
                                self.store.set_last_processing_result(m.uuid, problem)
                                bound.warning(
                                    "mapping_interrupted", error=str(e), error_type=type(e).__name__
                                )
                        bound.debug("mapping_restart_scheduled", restart_in_s=round(delay, 2))
                        handle.ready.set()  # the state settles; LastProcessingResult says what is wrong
                        await self.sleep(delay)
        finally:
            self._handles.pop(m.uuid, None)
            handle.done.set()
            bound.info("mapping_stopped")


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first reason to stop (it decides what happens), else the first error."""
    denied, _ = group.split(ConsumerStopped)
    first = (denied or group).exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
