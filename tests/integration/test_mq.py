"""Amazon MQ end to end against real brokers (RabbitMQ and ActiveMQ Classic): batching by size and
window, filters, failure and redelivery, a broker restart mid-run, RabbitMQ virtual hosts."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.contract.admin import activemq_dead_letters, open_rabbit_admin
from tests.integration.conftest import RunningEngine, esm_test_fns, functions_config, wait_for
from tests.services import ACTIVEMQ_PASSWORD, ACTIVEMQ_USER, endpoint_for, require_service, setting

ROOT = Path(__file__).parents[2]
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mq-{engine}-AbCdEf"


def _broker_arn(engine: str) -> str:
    return f"arn:aws:mq:us-east-1:123456789012:broker:{engine}:b-{uuid.uuid4()}"


class Broker:
    """One broker under test: its engine's config sections and a way to publish."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.arn = _broker_arn(engine)
        self.secret = SECRET.format(engine=engine)
        #: RabbitMQ queue arguments by queue name (a queue is re-declared with the same ones)
        self.arguments: dict[str, dict[str, Any]] = {}
        if engine == "rabbitmq":
            self.url = require_service("rabbitmq", endpoint_for("rabbitmq"))
            self.endpoint = self.url.replace("guest:guest@", "")
            self.creds = {"username": "guest", "password": "guest"}
        else:
            stomp = require_service("activemq", endpoint_for("activemq"))
            self.endpoint = f"stomp://{stomp}"
            self.creds = {"username": setting(ACTIVEMQ_USER), "password": setting(ACTIVEMQ_PASSWORD)}

    def sections(self) -> dict[str, Any]:
        return {"brokers": {self.arn: {"endpoints": [self.endpoint]}}, "secrets": {self.secret: self.creds}}

    def access(self, vhost: str | None = None) -> list[dict[str, str]]:
        out = [{"Type": "BASIC_AUTH", "URI": self.secret}]
        if vhost:
            out.append({"Type": "VIRTUAL_HOST", "URI": vhost})
        return out

    def publish(
        self, queue: str, bodies: list[str], vhost: str = "/", headers: dict[str, str] | None = None
    ) -> None:
        anyio.run(self._publish, queue, bodies, vhost, {"origin": "test", **(headers or {})})

    async def _publish(self, queue: str, bodies: list[str], vhost: str, headers: dict[str, str]) -> None:
        if self.engine == "rabbitmq":
            import aio_pika

            url = self.url.rstrip("/") + "/" + ("%2F" if vhost == "/" else vhost)
            conn = await aio_pika.connect(url)
            async with conn:
                ch = await conn.channel()
                await ch.declare_queue(queue, durable=True, arguments=self.arguments.get(queue))
                for b in bodies:
                    await ch.default_exchange.publish(
                        aio_pika.Message(
                            b.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=headers
                        ),
                        routing_key=queue,
                    )
        else:
            import stompman

            host, port = endpoint_for("activemq").rsplit(":", 1)
            servers = [
                stompman.ConnectionParameters(
                    host=host, port=int(port), login=self.creds["username"], passcode=self.creds["password"]
                )
            ]
            async with stompman.Client(servers=servers) as client:
                for b in bodies:
                    await client.send(
                        b.encode(),
                        destination=f"/queue/{queue}",
                        headers={"persistent": "true", **headers},
                    )

    def declare(self, queue: str, vhost: str = "/") -> None:
        if self.engine == "rabbitmq":
            self.publish(queue, [], vhost)

    def declare_with_dead_letters(self, queue: str) -> None:
        """RabbitMQ: ``queue`` dead-letters into ``<queue>-dlq``; ActiveMQ: its broker-wide ActiveMQ.DLQ."""
        if self.engine == "rabbitmq":
            self.declare(f"{queue}-dlq")
            dlx = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}-dlq"}
            self.arguments[queue] = dlx
            self.declare(queue)

    def dead_letters(self, queue: str, token: str) -> list[bytes]:
        """The bodies dead-lettered from ``queue`` (published with header ``esmTest`` = ``token``)."""
        return anyio.run(self._dead_letters, queue, token)

    async def _dead_letters(self, queue: str, token: str) -> list[bytes]:
        if self.engine == "rabbitmq":
            admin = await open_rabbit_admin()
            try:
                return await admin.wait_for(f"{queue}-dlq")
            finally:
                await admin.connection.close()
        return [frame.body for frame in await activemq_dead_letters(token, expect=1)]


@pytest.fixture(params=["rabbitmq", "activemq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return Broker(request.param)


def _engine(start_engine: Any, broker: Broker) -> RunningEngine:
    return start_engine(None, config=functions_config(sections=broker.sections()))  # type: ignore[no-any-return]


def _map(
    eng: RunningEngine,
    broker: Broker,
    queue: str,
    function: str = "fn-mq_ok",
    vhost: str | None = None,
    **params: Any,
) -> str:
    resp = eng.lambda_client.create_event_source_mapping(
        EventSourceArn=broker.arn,
        FunctionName=function,
        Queues=[queue],
        SourceAccessConfigurations=broker.access(vhost),
        **params,
    )
    assert resp["State"] == "Creating" and resp["Queues"] == [queue]
    eng.wait_state(resp["UUID"], "Enabled")
    return str(resp["UUID"])


def _events(broker: Broker) -> list[dict[str, Any]]:
    return esm_test_fns.mq_calls(broker.arn)


def test_batches_by_size_with_the_exact_envelope(broker: Broker, start_engine: Any, unique_name: Any) -> None:
    queue = unique_name("batch")
    broker.declare(queue)
    eng = _engine(start_engine, broker)
    uuid_ = _map(eng, broker, queue, BatchSize=5, MaximumBatchingWindowInSeconds=1)
    broker.publish(queue, [f"m{i}" for i in range(12)])
    wait_for(lambda: len(esm_test_fns.mq_bodies(broker.arn)) >= 12)
    assert sorted(esm_test_fns.mq_bodies(broker.arn)) == sorted(f"m{i}" for i in range(12))
    events = _events(broker)
    first = events[0]
    if broker.engine == "rabbitmq":
        assert list(first) == ["eventSource", "eventSourceArn", "rmqMessagesByQueue"]
        assert first["eventSource"] == "aws:rmq" and list(first["rmqMessagesByQueue"]) == [f"{queue}::/"]
        msg = first["rmqMessagesByQueue"][f"{queue}::/"][0]
        assert msg["basicProperties"]["headers"]["origin"] == {"bytes": list(b"test")}
        sizes = [len(e["rmqMessagesByQueue"][f"{queue}::/"]) for e in events]
    else:
        assert list(first) == ["eventSource", "eventSourceArn", "messages"]
        assert first["eventSource"] == "aws:mq"
        msg = first["messages"][0]
        assert msg["destination"] == {"physicalName": queue} and msg["properties"]["origin"] == "test"
        sizes = [len(e["messages"]) for e in events]
    assert first["eventSourceArn"] == broker.arn and msg["redelivered"] is False
    assert max(sizes) <= 5 and sum(sizes) == 12
    wait_for(lambda: eng.lambda_client.get_event_source_mapping(UUID=uuid_)["LastProcessingResult"] == "OK")


def test_window_collects_a_trickle_into_one_batch(
    broker: Broker, start_engine: Any, unique_name: Any
) -> None:
    queue = unique_name("window")
    broker.declare(queue)
    eng = _engine(start_engine, broker)
    _map(eng, broker, queue, BatchSize=100, MaximumBatchingWindowInSeconds=2)
    for i in range(3):
        broker.publish(queue, [f"t{i}"])
        time.sleep(0.2)
    wait_for(lambda: len(esm_test_fns.mq_bodies(broker.arn)) >= 3)
    assert len(_events(broker)) == 1


def test_filters_on_data_and_acknowledges_the_rest(
    broker: Broker, start_engine: Any, unique_name: Any
) -> None:
    queue = unique_name("filter")
    broker.declare(queue)
    eng = _engine(start_engine, broker)
    _map(
        eng,
        broker,
        queue,
        BatchSize=10,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"data": {"kind": ["keep"]}})}]},
    )
    broker.publish(
        queue,
        [
            json.dumps({"kind": "keep", "n": 1}),
            json.dumps({"kind": "drop"}),
            "plain",
            json.dumps({"kind": "keep", "n": 2}),
        ],
    )
    wait_for(lambda: len(esm_test_fns.mq_bodies(broker.arn)) >= 3)
    time.sleep(1.0)
    # a plain-text body against a JSON pattern is matched on the other properties only (spec 2.3): it passes
    assert sorted(esm_test_fns.mq_bodies(broker.arn)) == sorted(
        [json.dumps({"kind": "keep", "n": 1}), "plain", json.dumps({"kind": "keep", "n": 2})]
    )


def test_failure_redelivers_with_the_redelivered_flag(
    broker: Broker, start_engine: Any, unique_name: Any
) -> None:
    queue = unique_name("redeliver")
    broker.declare(queue)
    eng = _engine(start_engine, broker)
    _map(eng, broker, queue, "fn-mq_first_delivery_fails", BatchSize=10, MaximumBatchingWindowInSeconds=1)
    broker.publish(queue, ["x", "y"])

    def redelivered() -> bool:
        msgs = [m for e in _events(broker) for m in esm_test_fns._mq_messages(e)]
        return sum(m["redelivered"] for m in msgs) >= 2

    wait_for(redelivered, timeout=60)


def test_a_message_over_6_mb_is_dead_lettered_and_journaled_never_dropped(
    broker: Broker, start_engine: Any, unique_name: Any
) -> None:
    queue = unique_name("big")
    token = uuid.uuid4().hex
    broker.declare_with_dead_letters(queue)
    eng = _engine(start_engine, broker)
    uuid_ = _map(eng, broker, queue, BatchSize=10, MaximumBatchingWindowInSeconds=1)
    big = "x" * 5_000_000  # 6.7 MB once base64-encoded in the event: never invocable
    broker.publish(queue, [big, "after"], headers={"esmTest": token})
    wait_for(lambda: "after" in esm_test_fns.mq_bodies(broker.arn))
    assert esm_test_fns.mq_bodies(broker.arn) == ["after"]
    assert broker.dead_letters(queue, token) == [big.encode()]
    [discarded] = [e for e in eng.engine.store.journal(uuid_) if e.outcome == "discarded"]
    assert discarded.batch_size == 1 and discarded.attempt == 1
    assert discarded.detail["reason"] == "MaximumPayloadSizeExceeded"
    assert discarded.detail["bytes"] > 6 * 1024 * 1024


def test_activemq_dead_letters_after_six_redeliveries_and_the_journal_says_so(
    start_engine: Any, unique_name: Any
) -> None:
    broker = Broker("activemq")
    queue = unique_name("poison")
    token = uuid.uuid4().hex
    eng = _engine(start_engine, broker)
    uuid_ = _map(eng, broker, queue, "fn-mq_fails", BatchSize=1, MaximumBatchingWindowInSeconds=0)
    broker.publish(queue, ["poison"], headers={"esmTest": token})
    assert broker.dead_letters(queue, token) == [b"poison"]
    journal = list(eng.engine.store.journal(uuid_))
    assert [e.outcome for e in journal] == ["function_error"] * 7 + ["discarded"]
    assert journal[-1].attempt == 7
    assert journal[-1].detail == {"reason": "MaximumRedeliveriesExceeded"}


def test_partial_batch_responses_are_not_supported_for_mq(broker: Broker, start_engine: Any) -> None:
    eng = _engine(start_engine, broker)
    with pytest.raises(
        eng.lambda_client.exceptions.InvalidParameterValueException, match="FunctionResponseTypes"
    ):
        eng.lambda_client.create_event_source_mapping(
            EventSourceArn=broker.arn,
            FunctionName="fn-mq_ok",
            Queues=["q"],
            SourceAccessConfigurations=broker.access(),
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )


def test_broker_restart_mid_run_loses_nothing(broker: Broker, start_engine: Any, unique_name: Any) -> None:
    queue = unique_name("restart")
    broker.declare(queue)
    eng = _engine(start_engine, broker)
    uuid_ = _map(eng, broker, queue, BatchSize=10, MaximumBatchingWindowInSeconds=1)
    broker.publish(queue, [f"before-{i}" for i in range(20)])
    wait_for(lambda: len(esm_test_fns.mq_bodies(broker.arn)) >= 20)
    _services("stop", broker.engine)
    _services("start", broker.engine)
    # the engine reconnects with back-off; nothing published meanwhile or left unacked is lost
    broker.publish(queue, [f"after-{i}" for i in range(20)])
    wait_for(lambda: {f"after-{i}" for i in range(20)} <= set(esm_test_fns.mq_bodies(broker.arn)), timeout=90)
    assert {f"before-{i}" for i in range(20)} <= set(esm_test_fns.mq_bodies(broker.arn))
    wait_for(lambda: eng.lambda_client.get_event_source_mapping(UUID=uuid_)["LastProcessingResult"] == "OK")


def test_rabbitmq_virtual_host_selects_the_queue(start_engine: Any, unique_name: Any) -> None:
    broker = Broker("rabbitmq")
    vhost = unique_name("vh")
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    queue = unique_name("vq")
    broker.publish(queue, ["in-vhost"], vhost=vhost)
    broker.publish(queue, ["in-default"])
    eng = _engine(start_engine, broker)
    _map(eng, broker, queue, vhost=vhost, BatchSize=10, MaximumBatchingWindowInSeconds=1)
    wait_for(lambda: esm_test_fns.mq_bodies(broker.arn) == ["in-vhost"])
    assert list(_events(broker)[0]["rmqMessagesByQueue"]) == [f"{queue}::{vhost}"]
    time.sleep(1.0)
    assert esm_test_fns.mq_bodies(broker.arn) == ["in-vhost"]


def _services(action: str, name: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts/services.sh"), action, name], check=True, capture_output=True, timeout=180
    )


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts/services.sh"), "rabbitmqctl", *args], check=True, capture_output=True, timeout=60
    )
