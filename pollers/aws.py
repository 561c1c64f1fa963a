"""aiobotocore clients owned by the engine: per (service, region), two connection pools, closed with it.

A request that holds its connection by design (an SQS long poll for up to 20 s, a Kinesis SubscribeToShard
for up to 5 minutes) never shares a pool with short calls: with one bounded pool, a few dozen idle
mappings' long polls took every connection, and deletes, reads and the control plane's checks queued
behind them until visibility timeouts ran out (duplicates). So:

- ``client(region)``: short calls (deletes, reads, describes, lookups) in a bounded pool; a call may
  wait for another short call, never for a long poll;
- ``waiting_client(region)``: held requests, in a pool without a limit. Each held request is made by one
  poller task and holds one connection, so the pool's size is the number of waiting pollers, which the
  runners bound (an idle SQS mapping keeps one).

aiobotocore runs on asyncio (aiohttp underneath): the engine runs anyio on its asyncio backend, and the
pollers reach these clients through anyio only (cancel scopes cancel their calls as any other await).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

AwsService = Literal["sqs", "kinesis", "dynamodbstreams", "mq", "secretsmanager", "kafka"]

#: aiohttp's "no limit": the waiting pool is bounded by the pollers that use it, not by a number here
UNBOUNDED = 0
#: botocore's default
CALL_READ_TIMEOUT_S = 60.0
#: above the longest held request (SubscribeToShard: 5 minutes), so only a dead connection times out
WAIT_READ_TIMEOUT_S = 330.0


class AwsClients:
    """aiobotocore clients of one AWS service, per region, owned by the engine (closed by it)."""

    def __init__(
        self,
        service: AwsService,
        endpoint_url: str | None,
        session: AioSession | None = None,
        pool_size: int = 64,
        max_attempts: int = 2,
    ) -> None:
        self.service = service
        self.endpoint_url = endpoint_url
        self.session = session or get_session()
        #: connections for short calls, shared by every mapping of this service
        self.pool_size = pool_size
        #: botocore's own retries of one call (connection errors, 5xx, throttling) before it surfaces
        self.max_attempts = max_attempts
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, bool], Any] = {}
        self._lock = anyio.Lock()

    async def client(self, region: str) -> Any:
        """The client for short calls."""
        return await self._client(region, waiting=False)

    async def waiting_client(self, region: str) -> Any:
        """The client for requests that hold their connection (long polls, subscriptions)."""
        return await self._client(region, waiting=True)

    async def _client(self, region: str, *, waiting: bool) -> Any:
        key = (region, waiting)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            if key not in self._clients:
                config = AioConfig(
                    max_pool_connections=UNBOUNDED if waiting else self.pool_size,
                    retries={"max_attempts": self.max_attempts},
                    read_timeout=WAIT_READ_TIMEOUT_S if waiting else CALL_READ_TIMEOUT_S,
                )
                ctx = self.session.create_client(
                    self.service, region_name=region, endpoint_url=self.endpoint_url, config=config
                )
                self._clients[key] = await self._stack.enter_async_context(ctx)
            return self._clients[key]

    async def aclose(self) -> None:
        await self._stack.aclose()
