"""Fakes shared by the runner unit tests (tests/unit/test_queue_runner.py, test_stream_runner.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.ports import FunctionInfo, InvokeError, InvokeResult


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
