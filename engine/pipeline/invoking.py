"""Invoking the function with a batch's event.

A throttled or unreachable function (InvokeError) is not a function error: the same event is tried again
after a back-off, within a budget. A queue's budget is time (its messages go back to the broker when it is
spent, SQS: the visibility timeout); a stream's is the records' age, which engine.stream_policy checks
before every try, so a stream invocation here is one try, journaled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine.pipeline.journal import Journal, LastProcessingResult
from engine.pipeline.verdict import FUNCTION_ERROR
from engine.ports import InvokeError, Invoker, InvokeResult
from engine.retry import Backoff

if TYPE_CHECKING:  # engine.metrics reads this module's outcomes
    from engine.metrics import MappingMetrics

INVOKED = "invoked"
INVOKE_ERROR = "invoke_error"


async def invoke_within(
    invoker: Invoker,
    payload: bytes,
    *,
    budget_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    log: Any,
) -> InvokeResult | InvokeError:
    """The function's result, or the last InvokeError once the next try would end past the budget."""
    backoff = Backoff()
    budget_ends = clock() + budget_s
    while True:
        try:
            return await invoker.invoke(payload)
        except InvokeError as e:
            delay = backoff.next_delay()
            log.warning("invoke_failed", error=str(e), throttled=e.throttled, retry_in_s=delay)
            if clock() + delay >= budget_ends:
                return e
            await sleep(delay)


class MeteredInvoker:
    """The function-side metrics of each invocation: count, errors, throttles, duration, concurrency
    (implements Invoker; every runner's invoker is one)."""

    def __init__(self, invoker: Invoker, metrics: MappingMetrics) -> None:
        self.invoker = invoker
        self.metrics = metrics
        self.info = invoker.info

    async def invoke(self, payload: bytes) -> InvokeResult:
        with self.metrics.invocation():
            try:
                result = await self.invoker.invoke(payload)
            except InvokeError as e:
                if e.throttled:
                    self.metrics.throttled()
                raise
        self.metrics.invoked(result.duration_ms / 1000, function_error=result.function_error is not None)
        return result


class JournaledInvoker:
    """One try per call, journaled (invoked / function_error / invoke_error) with LastProcessingResult."""

    def __init__(self, invoker: Invoker, journal: Journal, status: LastProcessingResult) -> None:
        self.invoker = invoker
        self.journal = journal
        self.status = status

    async def invoke(
        self, scope: str, items: Sequence[str], payload: bytes, *, attempt: int, bisect_depth: int
    ) -> InvokeResult:
        try:
            result = await self.invoker.invoke(payload)
        except InvokeError as e:
            await self.journal.write(
                scope,
                items,
                attempt=attempt,
                bisect_depth=bisect_depth,
                outcome=INVOKE_ERROR,
                detail={"error": str(e)},
                payload=payload,
            )
            raise
        failed = result.function_error is not None
        await self.journal.write(
            scope,
            items,
            attempt=attempt,
            bisect_depth=bisect_depth,
            outcome=FUNCTION_ERROR if failed else INVOKED,
            duration_ms=result.duration_ms,
            payload=payload,
        )
        await self.status.report(function_failed=failed)
        return result
