"""Settings the API accepts and returns but the engine does not apply are named in a warning."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from engine.api.app import _log_not_applied
from engine.model import EventSourceMapping, SourceKind, State


def _kafka(**params: Any) -> EventSourceMapping:
    return EventSourceMapping(
        uuid="u",
        kind=SourceKind.SELF_MANAGED_KAFKA,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        params={"Topics": ["t"], **params},
        enabled=True,
        state=State.CREATING,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, None),
        ({"SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g"}}, None),
        ({"LoggingConfig": {"SystemLogLevel": "WARN"}}, ["LoggingConfig"]),
        (
            {
                "LoggingConfig": {"SystemLogLevel": "DEBUG"},
                "SelfManagedKafkaEventSourceConfig": {"SchemaRegistryConfig": {"EventRecordFormat": "JSON"}},
            },
            ["LoggingConfig", "SchemaRegistryConfig"],
        ),
    ],
)
def test_settings_not_applied_are_logged(params: dict[str, Any], named: list[str] | None) -> None:
    with capture_logs() as logs:
        _log_not_applied(_kafka(**params))
    warnings = [e for e in logs if e["event"] == "mapping_settings_not_applied"]
    assert [e["settings"] for e in warnings] == ([named] if named else [])
    assert all(e["log_level"] == "warning" and e["mapping"] == "u" for e in warnings)
