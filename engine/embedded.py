"""The embedded AWS-API emulator: moto's server in a thread, for a demo with nothing else installed."""

from __future__ import annotations

import socket
from typing import Any

import structlog

log = structlog.get_logger("engine.embedded")


class EmbeddedAws:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as e:  # moto is an optional extra
            raise SystemExit("--embedded-aws needs moto: pip install 'esm-engine[embedded]'") from e
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        log.info("embedded_aws_started", endpoint_url=self.endpoint_url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            log.info("embedded_aws_stopped")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
