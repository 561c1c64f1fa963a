"""Real AWS clients with injected SDK errors, for the pollers' error paths (no emulator throttles)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from pollers.aws import AwsClients, AwsService


class FaultyClients(AwsClients):
    """Real clients whose calls named in ``faults`` first raise the given SDK error codes, in order."""

    def __init__(self, service: AwsService, endpoint_url: str, faults: dict[str, list[str]]) -> None:
        super().__init__(service, endpoint_url, max_attempts=0)
        self.faults = faults

    async def client(self, region: str) -> Any:
        return _FaultyClient(await super().client(region), self.faults)


class _FaultyClient:
    def __init__(self, client: Any, faults: dict[str, list[str]]) -> None:
        self._client = client
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        pending = self._faults.get(name)
        if not pending:
            return attr

        async def failing(**kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": pending.pop(0), "Message": "injected"}}, name)

        return failing
