"""Fakes and helpers shared by the unit tests of the runners and the source profiles."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.model import EventSourceMapping, RetryPolicy
from engine.ports import FunctionInfo, InvokeError, InvokeResult
from engine.sources.registry import profile_of


def retry_of(m: EventSourceMapping) -> RetryPolicy:
    """The retry policy ``m``'s source profile derives from its parameters."""
    return profile_of(m.kind).retry(m)


class ScriptedInvoker:
    """Answers each invocation with ``script(event)``: an InvokeResult, or an InvokeError to raise."""

    info = FunctionInfo("arn:aws:lambda:us-east-1:123456789012:function:f", 3.0, "arn:aws:iam::1:role/r")

    def __init__(self, script: Callable[[dict[str, Any]], InvokeResult | InvokeError]) -> None:
        self.script = script
        self.events: list[dict[str, Any]] = []

    async def invoke(self, payload: bytes) -> InvokeResult:
        event = json.loads(payload)
        self.events.append(event)
        outcome = self.script(event)
        if isinstance(outcome, InvokeError):
            raise outcome
        return outcome


def ok(_: dict[str, Any]) -> InvokeResult:
    return InvokeResult(payload=b"null")
