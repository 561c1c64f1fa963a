"""Where a stream mapping's positions go, typed: the checkpoint sink the pipeline settles into, and the
engine's own store of positions and shard state.

The store keeps, per mapping, one row per scope of its checkpoint table: a shard's position or SHARD_END,
the stream's identity, the LATEST pin of a shard, the state of a shard's open tumbling window. Only
:class:`ShardPositions` reads or writes those rows, so no one else knows the scope strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from engine.ports import SourceCommits
from engine.store.ports import RunnerStore

SHARD_END = "SHARD_END"
IDENTITY_SCOPE = "stream-identity"
LATEST_PIN_PREFIX = "latest-at:"
WINDOW_PREFIX = "window:"


class CheckpointSink(Protocol):
    async def commit(self, shard_id: str, position: str) -> None:
        """Every record of the shard up to ``position`` is finished."""
        ...


@dataclass(frozen=True)
class SourcePositions:
    """The source keeps the positions itself (Kafka: the consumer group's committed offsets)."""

    commits: SourceCommits

    async def commit(self, shard_id: str, position: str) -> None:
        await self.commits.commit(shard_id, position)


@dataclass(frozen=True)
class ShardState:
    """A mapping's rows as read when a shard starts (the stream's identity is adopt_identity's alone)."""

    positions: Mapping[str, str]
    finished: frozenset[str]
    latest_pins: Mapping[str, float]
    windows: Mapping[str, dict[str, Any]]


class ShardPositions:
    """The engine's store of one mapping's positions and shard state (a CheckpointSink)."""

    def __init__(self, store: RunnerStore, mapping_uuid: str) -> None:
        self.store = store
        self.mapping_uuid = mapping_uuid

    async def load(self) -> ShardState:
        rows = await self.store.offload(self.store.checkpoints, self.mapping_uuid)
        positions: dict[str, str] = {}
        pins: dict[str, float] = {}
        windows: dict[str, dict[str, Any]] = {}
        for scope, value in rows.items():
            if scope == IDENTITY_SCOPE:
                continue
            if scope.startswith(LATEST_PIN_PREFIX):
                pins[scope.removeprefix(LATEST_PIN_PREFIX)] = float(value)
            elif scope.startswith(WINDOW_PREFIX):
                windows[scope.removeprefix(WINDOW_PREFIX)] = json.loads(value)
            else:
                positions[scope] = value
        return ShardState(
            positions={s: p for s, p in positions.items() if p != SHARD_END},
            finished=frozenset(s for s, p in positions.items() if p == SHARD_END),
            latest_pins=pins,
            windows=windows,
        )

    async def adopt_identity(self, identity: str) -> str | None:
        """Record the stream's identity. When another was stored (a stream deleted and re-created under
        the same name), the old rows mean nothing here: they are cleared, and the old identity returned."""

        def adopt() -> str | None:
            stored = self.store.checkpoints(self.mapping_uuid).get(IDENTITY_SCOPE)
            replaced = stored if stored is not None and stored != identity else None
            if replaced is not None:
                self.store.clear_checkpoints(self.mapping_uuid)
            self.store.put_checkpoint(self.mapping_uuid, IDENTITY_SCOPE, identity)
            return replaced

        return await self.store.offload(adopt)

    async def commit(self, shard_id: str, position: str) -> None:
        await self._put(shard_id, position)

    async def finish(self, shard_id: str) -> None:
        """The shard is read to its end and every record settled: its children may start."""
        await self._put(shard_id, SHARD_END)

    async def pin_latest(self, shard_id: str, at: float) -> None:
        await self._put(LATEST_PIN_PREFIX + shard_id, repr(at))

    async def save_window(self, shard_id: str, state: Mapping[str, Any]) -> None:
        await self._put(WINDOW_PREFIX + shard_id, json.dumps(state))

    async def _put(self, scope: str, value: str) -> None:
        await self.store.offload(self.store.put_checkpoint, self.mapping_uuid, scope, value)
