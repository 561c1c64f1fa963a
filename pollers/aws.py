"""aiobotocore clients owned by the engine: one per (service, region), closed with it."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

AwsService = Literal["sqs", "kinesis", "dynamodbstreams", "mq", "secretsmanager", "kafka"]


class AwsClients:
    """aiobotocore clients of one AWS service, one per region, owned by the engine (closed by it)."""

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
        self.pool_size = pool_size
        #: botocore's own retries of one call (connection errors, 5xx, throttling) before it surfaces
        self.max_attempts = max_attempts
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = anyio.Lock()

    async def client(self, region: str) -> Any:
        async with self._lock:
            if region not in self._clients:
                config = AioConfig(
                    max_pool_connections=self.pool_size, retries={"max_attempts": self.max_attempts}
                )
                ctx = self.session.create_client(
                    self.service, region_name=region, endpoint_url=self.endpoint_url, config=config
                )
                self._clients[region] = await self._stack.enter_async_context(ctx)
            return self._clients[region]

    async def aclose(self) -> None:
        await self._stack.aclose()
