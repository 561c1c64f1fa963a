"""Wrapped around the function in the engine's process, without changing it: every invocation is written
to the tap file (which records, the outcome, the duration), and the plan's function faults are injected
(errors, timeouts, throttles, added latency, a poison record's failure).

A tap line: ``{"t0": start, "t1": end, "f": function, "k": [record keys], "o": outcome, "i": their
item ids where they differ, "x": [keys a batch response reported failed], "inj": injected fault or
null, "c": invocations running at its start, "pid": process}``.
Outcomes: ok, partial (a batch response named failures), error, timeout, throttle, invoke_error.
The file outlives a SIGKILL: a line is flushed as each invocation ends.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import IO, Any

import anyio

from engine.invoke.registry import WrappedInvoker
from engine.ports import InvokeError, Invoker, InvokeResult
from soak.plan import Faults
from soak.sources import profile_of

#: a poison record's body holds this; the tap fails every invocation that holds one
POISON_MARKER = "esm-soak-poison"


class Tap:
    """One per engine process: the tap file and the faults' random draws."""

    def __init__(self, path: Path, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed * 1_000_003 + os.getpid())
        # appended, line-buffered by hand (flushed per invocation); kept open for the process's life
        self.out: IO[str] = path.open("a", encoding="utf-8")
        self.running = 0

    def wrap(self, function_name: str, invoker: Invoker) -> Invoker:
        return TappedInvoker(self, function_name, invoker)

    def draw(self) -> str | None:
        """The injected fault of one invocation, if any: one draw against the stacked rates."""
        f = self.faults
        x = self.rng.random()
        for name, rate in (("error", f.errors), ("timeout", f.timeouts), ("throttle", f.throttles)):
            if x < rate:
                return name
            x -= rate
        return None

    def write(self, line: dict[str, Any]) -> None:
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.out.flush()


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": []}).encode()


class TappedInvoker(WrappedInvoker):
    """An Invoker around another: same FunctionInfo, same results, plus the tap line and the faults."""

    def __init__(self, tap: Tap, function_name: str, inner: Invoker) -> None:
        super().__init__(inner)
        self.tap = tap
        self.function_name = function_name

    async def invoke(self, payload: bytes) -> InvokeResult:
        tap = self.tap
        t0 = time.time()
        event = json.loads(payload)
        profile = profile_of(event) if isinstance(event, dict) else None
        keys = profile.keys(event) if profile else []
        line: dict[str, Any] = {
            "t0": t0,
            "f": self.function_name,
            "k": [k for k, _ in keys],
            "c": tap.running,
        }
        if any(k != item for k, item in keys):  # the journal names these records by their item ids
            line["i"] = [item for _, item in keys]
        tap.running += 1
        try:
            result = await self._invoke(payload, event, profile, line)
        except InvokeError as e:
            line["o"] = "throttle" if e.throttled else "invoke_error"
            raise
        except BaseException:
            line["o"] = "cancelled"
            raise
        else:
            line["o"] = _outcome(result)
            if line["o"] == "partial":
                failed = _failed_items(result.payload)
                line["x"] = [k for k, item in keys if item in failed]
            return result
        finally:
            tap.running -= 1
            line["t1"] = time.time()
            line["pid"] = os.getpid()
            tap.write(line)

    async def _invoke(self, payload: bytes, event: Any, profile: Any, line: dict[str, Any]) -> InvokeResult:
        faults = self.tap.faults
        if faults.latency_rate and self.tap.rng.random() < faults.latency_rate:
            line["inj"] = "latency"
            await anyio.sleep(faults.latency_ms / 1000)
        poisoned = faults.poison_at and profile is not None
        if poisoned and any(POISON_MARKER.encode() in body for body in profile.bodies(event)):
            line["inj"] = "poison"
            return InvokeResult(_error("SoakPoisonRecord", "esm soak: a poison record"), "Unhandled")
        fault = self.tap.draw()
        if fault is not None:
            line["inj"] = fault
        if fault == "error":
            return InvokeResult(
                _error("SoakInjectedError", "esm soak: an injected function error"), "Unhandled"
            )
        if fault == "throttle":
            raise InvokeError("Rate Exceeded. (esm soak: an injected throttle)", throttled=True)
        if fault == "timeout":
            timeout_s = self.info.timeout_s
            await anyio.sleep(timeout_s)
            message = f"Task timed out after {timeout_s:.2f} seconds (esm soak: an injected timeout)"
            return InvokeResult(_error("Sandbox.Timedout", message), "Unhandled")
        return await self.inner.invoke(payload)


def _outcome(result: InvokeResult) -> str:
    if result.function_error:
        return "timeout" if b"Sandbox.Timedout" in result.payload[:200] else "error"
    return "partial" if _failed_items(result.payload) else "ok"


def _failed_items(payload: bytes) -> set[str]:
    if b"batchItemFailures" not in payload:
        return set()
    try:
        doc = json.loads(payload)
        return {str(f["itemIdentifier"]) for f in doc.get("batchItemFailures") or []}
    except (ValueError, TypeError, KeyError):
        return set()
