"""The composition root: wires store, function registry, pollers (by source kind), supervisor and API.

The only module of engine/ that imports pollers/.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import anyio.abc
import structlog
from aiohttp import web

from engine.api.app import ControlPlane, build_app
from engine.api.dashboard import Dashboard, History
from engine.config import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, AwsSettings, EngineConfig
from engine.filtering import FilterPatternError, compile_filters
from engine.invoke.registry import FunctionRegistry
from engine.metrics import EngineMetrics
from engine.model import EventSourceMapping, SourceKind
from engine.ports import ESM_CONFIG_NOT_VALID, ConsumerStopped, Invoker, Runner
from engine.runner.queue import QueueRunnerSettings
from engine.runner.stream import StreamRunnerSettings
from engine.senders import DestinationSender
from engine.sources.dynamodb import DynamoDbRunners
from engine.sources.kafka import KafkaRunners
from engine.sources.kinesis import KinesisRunners
from engine.sources.kit import RunnerKit, Runners
from engine.sources.mq import MqRunners
from engine.sources.registry import profile_of
from engine.sources.sqs import SqsRunners
from engine.store.sqlite import SqliteStore
from engine.supervisor import Supervisor
from engine.timescale import TimeScale
from pollers.aws import AwsClients
from pollers.dynamodb import DynamoDbSourceFactory
from pollers.kafka_factory import MskSourceFactory, SelfManagedKafkaSourceFactory
from pollers.kinesis import KinesisSourceFactory
from pollers.mq import MqSourceFactory
from pollers.resolve import BrokerDirectory
from pollers.sqs import SqsSourceFactory

log = structlog.get_logger("engine.app")


@dataclass(frozen=True)
class EngineSettings:
    host: str = "127.0.0.1"
    port: int = 9001
    data_dir: Path = Path(".data")
    # The four AWS settings are final: `esm serve` merges them (engine.config.merge_aws: command line >
    # ESM_* environment > config file's aws section > defaults) and every AWS client reads them from here.
    #: endpoint of every AWS API the engine calls (None: AWS itself)...
    aws_endpoint_url: str | None = None
    #: ...unless a service has its own here, keyed by botocore service name ("sqs", "lambda", ...)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    queue: QueueRunnerSettings = field(default_factory=QueueRunnerSettings)
    #: Kinesis: AWS polls a shard about once a second
    stream: StreamRunnerSettings = field(default_factory=StreamRunnerSettings)
    #: DynamoDB Streams: four times a second
    dynamodb_poll_interval_s: float = 0.25
    #: Kafka: reads wait on the broker (no poll interval); a rebalance's new partitions are picked up
    #: this often
    kafka_discovery_interval_s: float = 1.0
    drain_timeout_s: float = 10.0
    #: how often the journal's retention (the config file's ``journal`` section) is applied
    journal_retention_interval_s: float = 60.0
    #: every mapping's journal keeps the exact payloads (a function's ``capture_payloads`` does it for
    #: that function's mappings)
    capture_payloads: bool = False
    #: --time-scale: what the engine times runs this many times faster (engine.timescale)
    time_scale: float = 1.0

    @property
    def aws(self) -> AwsSettings:
        return AwsSettings(self.aws_endpoint_url, self.endpoints, self.region, self.account_id)

    def endpoint_for(self, service: str) -> str | None:
        return self.aws.endpoint_for(service)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "esm.sqlite3"


class Engine:
    def __init__(
        self,
        settings: EngineSettings,
        config: EngineConfig,
        *,
        clock: Callable[[], float] = time.time,
        wrap_invoker: Callable[[str, Invoker], Invoker] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.time_scale = TimeScale(settings.time_scale)
        #: wall clock for record age and destination timestamps (tests shift it; --time-scale scales it)
        self.clock = self.time_scale.now if self.time_scale.scaled_time else clock
        self.store = SqliteStore(settings.store_path)
        self.functions = FunctionRegistry(
            config,
            lambda_endpoint_url=settings.endpoint_for("lambda"),
            region=settings.region,
            account_id=settings.account_id,
            wrap=wrap_invoker,
        )
        self.sqs = SqsSourceFactory(AwsClients("sqs", settings.endpoint_for("sqs")))
        self.kinesis = KinesisSourceFactory(AwsClients("kinesis", settings.endpoint_for("kinesis")))
        self.dynamodb = DynamoDbSourceFactory(
            AwsClients("dynamodbstreams", settings.endpoint_for("dynamodbstreams"))
        )
        self.destinations = DestinationSender(settings.endpoint_for, region=settings.region)
        self.brokers = BrokerDirectory(config.sections, settings.endpoint_for)
        self.mq = MqSourceFactory(self.brokers)
        pem_dir, kafka_discovery_s = settings.data_dir / "pem", settings.kafka_discovery_interval_s
        msk = KafkaRunners(MskSourceFactory(self.brokers, pem_dir), kafka_discovery_s)
        smk = KafkaRunners(SelfManagedKafkaSourceFactory(self.brokers, pem_dir), kafka_discovery_s)
        #: each source kind's runner builder, bound to its transports
        self.runners: dict[SourceKind, Runners] = {
            SourceKind.SQS: SqsRunners(self.sqs),
            SourceKind.KINESIS: KinesisRunners(self.kinesis),
            SourceKind.DYNAMODB: DynamoDbRunners(self.dynamodb, settings.dynamodb_poll_interval_s),
            SourceKind.MQ: MqRunners(self.mq),
            SourceKind.MSK: msk,
            SourceKind.SELF_MANAGED_KAFKA: smk,
        }
        self.metrics = EngineMetrics()
        self.supervisor = Supervisor(
            self.store,
            self.build_runner,
            drain_timeout_s=settings.drain_timeout_s,
            on_deleted=self.metrics.forget,
        )
        self.plane = ControlPlane(
            store=self.store,
            supervisor=self.supervisor,
            functions=self.functions,
            describe_source={kind: runners.describe for kind, runners in self.runners.items()},
            function_arn=self.functions.function_arn,
            max_filters=config.limits.filters_per_mapping,
        )
        self.history = History(self.metrics)
        self.dashboard = Dashboard(self.store, self.store, self.store, self.metrics, self.history)
        self.port = settings.port

    async def build_runner(self, m: EventSourceMapping) -> Runner:
        invoker = await self.functions.resolve(m.function_arn)
        try:
            record_filter = compile_filters(
                m.filter_patterns,
                profile_of(m.kind).filters,
                max_filters=self.config.limits.filters_per_mapping,
            )
        except FilterPatternError as e:  # e.g. stored under a larger limits.filters_per_mapping
            raise ConsumerStopped(f"FilterCriteria: {e}", reason=ESM_CONFIG_NOT_VALID) from e
        function = self.config.functions.get(m.function_name)
        capture = self.settings.capture_payloads or (function is not None and function.capture_payloads)
        kit = RunnerKit(
            invoker=invoker,
            record_filter=record_filter,
            store=self.store,
            destinations=self.destinations,
            queue=replace(self.settings.queue, capture_payloads=capture),
            stream=replace(self.settings.stream, capture_payloads=capture),
            now=self.clock,
            metrics=self.metrics,
            time_scale=self.time_scale,
        )
        return await self.runners[m.kind].build(m, kit)

    async def serve(
        self,
        run_supervisor: bool = True,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until cancelled: the supervisor, then the HTTP API. Reports the bound port when started.

        Without the supervisor, mappings stay in the state the API gave them (tests of the transitions).
        """
        runner = web.AppRunner(build_app(self.plane, self.metrics, self.dashboard), access_log=None)
        await runner.setup()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_journal, name="esm-journal-retention")
                tg.start_soon(self.history.run, name="esm-dashboard-history")
                if run_supervisor:
                    await tg.start(self.supervisor.run, name="esm-supervisor")
                site = web.TCPSite(runner, self.settings.host, self.settings.port)
                await site.start()
                self.port = int(runner.addresses[0][1]) if runner.addresses else self.settings.port
                log.info(
                    "engine_started",
                    host=self.settings.host,
                    port=self.port,
                    store=str(self.settings.store_path),
                    mappings=len(self.store.list_mappings()),
                )
                task_status.started(self.port)
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.drain_timeout_s + 5):
                await runner.cleanup()
                await self.functions.aclose()
                await self.sqs.clients.aclose()
                await self.kinesis.clients.aclose()
                await self.dynamodb.clients.aclose()
                await self.destinations.aclose()
                await self.brokers.aclose()
            self.store.close()
            log.info("engine_stopped")

    async def _keep_journal(self) -> None:
        """The journal's retention, applied at start (with rows of mappings long gone) and then
        periodically, off the event loop."""
        retention = self.config.journal
        orphans = True
        while True:
            pruned = await self.store.offload(
                self.store.prune_journal,
                max_rows_per_mapping=retention.max_rows_per_mapping,
                max_age_s=retention.max_age_s,
                now=time.time(),  # rows are stamped with the wall clock, whatever the engine's clock
                orphans=orphans,
                max_payload_bytes=retention.max_payload_mb * 2**20,
            )
            orphans = False
            if pruned:
                log.info("journal_pruned", rows=pruned)
            await anyio.sleep(self.settings.journal_retention_interval_s)

    async def serve_until_signal(self, started: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Serve until SIGINT or SIGTERM; `started(port)` runs once the API serves (`esm up` applies
        its template then)."""
        async with anyio.create_task_group() as tg:
            port = await tg.start(self.serve, name="esm-engine")
            if started is not None:
                await started(port)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("shutdown_requested", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    break
