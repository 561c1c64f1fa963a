"""The mapping state machine (spec 8.3), shared by the control plane and the supervisor."""

from __future__ import annotations

import pytest

from engine import states
from engine.errors import ResourceConflictException, ResourceInUseException
from engine.model import EventSourceMapping, SourceKind, State


def _mapping(state: State, enabled: bool = True, kind: SourceKind = SourceKind.SQS) -> EventSourceMapping:
    return EventSourceMapping(
        uuid="u1",
        kind=kind,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        params={"BatchSize": 10},
        enabled=enabled,
        state=state,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def test_create_is_creating_or_disabled_at_once() -> None:
    assert states.on_create(True) is State.CREATING
    assert states.on_create(False) is State.DISABLED


@pytest.mark.parametrize(
    ("enabled_before", "enabled_after", "expected"),
    [
        (True, True, State.UPDATING),
        (False, False, State.UPDATING),
        (False, True, State.ENABLING),
        (True, False, State.DISABLING),
    ],
)
def test_update_answers_with_the_transition(
    enabled_before: bool, enabled_after: bool, expected: State
) -> None:
    settled = states.settled(enabled_before)
    current = _mapping(settled, enabled=enabled_before)
    states.check_update(current)
    assert states.on_update(current, enabled_after) is expected
    assert states.restarts_runner(expected) is (expected is not State.DISABLING)


def test_update_while_creating_is_in_use_and_while_changing_a_conflict() -> None:
    with pytest.raises(ResourceInUseException, match="Creating state"):
        states.check_update(_mapping(State.CREATING))
    for state in (State.ENABLING, State.DISABLING, State.UPDATING, State.DELETING):
        with pytest.raises(ResourceConflictException, match=f"currently in the {state.value} state"):
            states.check_update(_mapping(state))


def test_delete_is_refused_while_creating_updating_or_deleting_only() -> None:
    for state in (State.CREATING, State.UPDATING):
        with pytest.raises(ResourceInUseException, match=f"{state.value} state"):
            states.check_delete(_mapping(state))
    with pytest.raises(ResourceConflictException, match="already being deleted"):
        states.check_delete(_mapping(State.DELETING))
    for state in (State.ENABLED, State.DISABLED, State.ENABLING, State.DISABLING):
        states.check_delete(_mapping(state))


def test_settled_and_restarts() -> None:
    assert states.settled(True) is State.ENABLED and states.settled(False) is State.DISABLED
    assert {s for s in State if states.restarts_runner(s)} == {State.CREATING, State.ENABLING, State.UPDATING}


def test_user_initiated_reason_is_worded_per_source() -> None:
    assert states.user_initiated_reason(SourceKind.KINESIS) == "User action"
    assert states.user_initiated_reason(SourceKind.DYNAMODB) == "User action"
    for kind in (SourceKind.SQS, SourceKind.MSK, SourceKind.SELF_MANAGED_KAFKA, SourceKind.MQ):
        assert states.user_initiated_reason(kind) == "USER_INITIATED"
