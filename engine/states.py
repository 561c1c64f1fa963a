"""The one state machine of a mapping (spec 8.3), used by the control plane and the supervisor alike.

The control plane moves a mapping into a transitional state and answers at once; the supervisor makes it
so and settles it:

    Create  -> Creating (Enabled: false -> Disabled at once)  -> Enabled
    Update  -> Enabling / Disabling when Enabled changes, else Updating -> Enabled or Disabled
    Delete  -> Deleting -> gone

A change is refused while another is under way: ResourceInUseException for the two cases the API names
(an update while Creating, a delete while Creating or Updating), ResourceConflictException otherwise.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from engine.errors import ResourceConflictException, ResourceInUseException
from engine.model import EventSourceMapping, SourceKind, State
from engine.sources.registry import profile_of

#: the states after which the supervisor (re)starts the runner with the mapping's configuration
_RESTARTS = frozenset({State.CREATING, State.ENABLING, State.UPDATING})


def user_initiated_reason(kind: SourceKind) -> str:
    """StateTransitionReason after a user's change: AWS words it per source (spec 8.2)."""
    return profile_of(kind).user_initiated_reason


def on_create(enabled: bool) -> State:
    return State.CREATING if enabled else State.DISABLED


def on_update(current: EventSourceMapping, enabled: bool) -> State:
    """The state an accepted update answers with (``check_update`` first)."""
    if enabled != current.enabled:
        return State.ENABLING if enabled else State.DISABLING
    return State.UPDATING


def check_update(current: EventSourceMapping) -> None:
    if current.state is State.CREATING:
        raise ResourceInUseException(
            f"Cannot update the event source mapping {current.uuid} because it is in the Creating state."
        )
    if current.state.is_transitional:
        raise ResourceConflictException(
            f"The operation cannot be performed at this time. The event source mapping is currently in "
            f"the {current.state.value} state."
        )


def check_delete(current: EventSourceMapping) -> None:
    if current.state in (State.UPDATING, State.CREATING):
        raise ResourceInUseException(
            f"Cannot delete the event source mapping {current.uuid} because it is in the "
            f"{current.state.value} state."
        )
    if current.state is State.DELETING:
        raise ResourceConflictException(f"The event source mapping {current.uuid} is already being deleted.")


def restarts_runner(state: State) -> bool:
    """The runner starts again with the stored configuration (an update applies by a restart)."""
    return state in _RESTARTS


def settled(enabled: bool) -> State:
    """Where a transition ends once the supervisor has made it so."""
    return State.ENABLED if enabled else State.DISABLED
