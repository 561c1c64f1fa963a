"""How the engine reaches a Kafka cluster and what the cluster's refusals mean.

:class:`KafkaSecurity` is the mapping's SourceAccessConfigurations (spec 6.1) as aiokafka settings;
:class:`KafkaConnection` adds the servers and client id every aiokafka client of one mapping shares, and
turns aiokafka errors into the engine's :class:`SourceError` (a refused credential or permission into
:class:`SourceAccessDenied` with its StateTransitionReason, spec 6.6).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from aiokafka.conn import create_conn  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from engine.ports import SourceAccessDenied, SourceError

SaslMechanism = Literal["SASL_SCRAM_256", "SASL_SCRAM_512", "PLAIN"]
_SASL_NAMES: dict[str, str] = {
    "SASL_SCRAM_256": "SCRAM-SHA-256",
    "SASL_SCRAM_512": "SCRAM-SHA-512",
    "PLAIN": "PLAIN",
}
_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
_DENIED_ERRORS: tuple[type[BaseException], ...] = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
#: StateTransitionReason codes of a stopped consumer (spec 6.6)
AUTHN_ERROR = "EVENT_SOURCE_AUTHN_ERROR"
AUTHZ_ERROR = "EVENT_SOURCE_AUTHZ_ERROR"
#: the deadline of each step of a close (leaving the group, the last commit, stopping the producer)
CLOSE_TIMEOUT_S = 10.0
#: how long the diagnostic connection of a failed bootstrap may take
_DIAGNOSE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach the cluster (SourceAccessConfigurations, spec 6.1).

    ``sasl``: SASL_SCRAM_256_AUTH / SASL_SCRAM_512_AUTH / BASIC_AUTH (PLAIN) with ``username`` and
    ``password``; ``tls``: TLS to the brokers (``ca_file``: SERVER_ROOT_CA_CERTIFICATE; ``cert_file`` +
    ``key_file``: CLIENT_CERTIFICATE_TLS_AUTH). SASL without TLS is SASL_PLAINTEXT (local brokers).
    """

    sasl: SaslMechanism | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None

    def __post_init__(self) -> None:
        if self.sasl is not None:
            if self.sasl not in _SASL_NAMES:
                raise ValueError(f"unsupported SASL mechanism {self.sasl!r}")
            if not self.username or self.password is None:
                raise ValueError(f"{self.sasl} needs a username and a password")

    @property
    def security_protocol(self) -> str:
        if self.sasl is not None:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def describe(self) -> str:
        """For messages: the protocol, mechanism and user, never the password."""
        if self.sasl is None:
            return self.security_protocol
        return f"{self.security_protocol} {_SASL_NAMES[self.sasl]} as user {self.username!r}"

    def client_kwargs(self) -> dict[str, Any]:
        """The aiokafka keyword arguments (consumer, producer, admin client and connection alike)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl is not None:
            kwargs |= {
                "sasl_mechanism": _SASL_NAMES[self.sasl],
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.tls:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ca_file,
                certfile=self.cert_file,
                keyfile=self.key_file,
                password=self.key_password,
            )
            kwargs["ssl_context"] = context
        return kwargs


@dataclass(frozen=True)
class KafkaConnection:
    """One mapping's way to its cluster: what every aiokafka client it makes is given, and the errors it
    raises. ``where`` names the consumer in messages (servers, topic, group)."""

    bootstrap_servers: tuple[str, ...]
    client_id: str
    security: KafkaSecurity
    where: str

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            **self.security.client_kwargs(),
        }

    def refused(self, e: KafkaError, operation: str) -> SourceError:
        """The SourceError for an aiokafka error of ``operation``."""
        if isinstance(e, _AUTH_ERRORS):
            return self._auth_error(e)
        if isinstance(e, _DENIED_ERRORS):
            return SourceAccessDenied(f"{self.where}: {operation} not authorized: {e}", reason=AUTHZ_ERROR)
        return SourceError(f"{self.where}: {operation} failed: {e}")

    async def bootstrap_error(self, e: BaseException) -> SourceError:
        """The bootstrap failure, with the broker's reason when it refused the credentials (aiokafka only
        logs that and reports "Unable to bootstrap"): one diagnostic connection finds it out."""
        if isinstance(e, _AUTH_ERRORS):
            return self._auth_error(e)
        if self.security.sasl is not None:
            host, port = _split_server(self.bootstrap_servers[0])
            try:
                with anyio.fail_after(_DIAGNOSE_TIMEOUT_S):
                    conn = await create_conn(
                        host, port, client_id=self.client_id, **self.security.client_kwargs()
                    )
            except _AUTH_ERRORS as auth:
                return self._auth_error(auth)
            except (KafkaError, OSError, TimeoutError):
                pass  # unreachable as well: the original error says it
            else:
                conn.close()
        return SourceError(f"{self.where}: cannot connect ({self.security.describe()}): {e}")

    def _auth_error(self, e: BaseException) -> SourceError:
        return SourceAccessDenied(
            f"{self.where}: SASL authentication failed ({self.security.describe()}): the broker refused "
            f"the credentials: {e}",
            reason=AUTHN_ERROR,
        )


def _split_server(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, 9092
    return host.strip("[]"), int(port)
