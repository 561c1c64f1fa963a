"""A soak, start to end: the sources and the engine, the mappings over the Lambda API, a producer per
mapping, the faults on their schedule, a sample every interval; then the drain, the ledger's verdict and
the report. Ctrl-C stops the load and drains (a second one skips the drain); the report is written
either way."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
import psutil  # type: ignore[import-untyped]
import yaml
from aiobotocore.session import get_session
from prometheus_client.parser import text_string_to_metric_families

from engine.store.ports import JournalEntry
from engine.store.sqlite import SqliteStore
from soak import cost, report
from soak.ledger import Ledger, percentile, settle_counts
from soak.load import PlanError, Record
from soak.model import FaultEvent, MappingReport, Sample, SoakResult
from soak.plan import MappingSpec, SoakPlan
from soak.sources import PROFILES, Endpoints, Put, SoakSource
from soak.tap import POISON_MARKER

ROOT = Path(__file__).resolve().parents[1]
#: a producer's tick: its records of the last tick go in one put
TICK_S = 0.05
#: at most this many records in one put (a producer that fell behind catches up in steps)
MAX_PUT = 500
#: a record the source keeps refusing (the broker down) is given up on after this long, and counted
REFUSED_AFTER_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Produced:
    """A mapping's producer: what it sent, and whether its load is over."""

    spec: MappingSpec
    source: SoakSource
    uuid: str = ""
    sent: int = 0
    refused: int = 0  # records the source refused for REFUSED_AFTER_S: never in the ledger
    last_refusal: str = ""
    done: bool = False
    ordering: str = ""
    seq: int = 0


@dataclass
class Controls:
    """What the user asked while it runs: stop the load (Ctrl-C), skip the drain (a second Ctrl-C)."""

    stop_load: anyio.Event = field(default_factory=anyio.Event)
    skip_drain: anyio.Event = field(default_factory=anyio.Event)
    stopped_early: bool = False


class EngineProcess:
    """The engine in its own process (soak.engine_main), restartable on the same port and store."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec = spec
        self.spec_path = workdir / "engine-spec.json"
        self.spec_path.write_text(json.dumps(spec, indent=2))
        self.log: IO[bytes] = (workdir / "engine.log").open("ab")
        self.proc: anyio.abc.Process | None = None
        self.port = int(spec["port"])

    async def start(self) -> None:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", **os.environ, "PYTHONPATH": path}
        self.proc = await anyio.open_process(
            [sys.executable, "-m", "soak.engine_main", str(self.spec_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        with anyio.fail_after(60):
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the engine exited with {self.proc.returncode}: see {self.log.name}")
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    return
                await anyio.sleep(0.05)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        with anyio.move_on_after(timeout_s):
            await self.proc.wait()
        await self.kill()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None


class Soak:
    def __init__(self, plan: SoakPlan, *, on_sample: Callable[[Soak], None] | None = None) -> None:
        self.plan = plan
        self.run = uuid.uuid4().hex[:8]
        self.dir = plan.report_dir
        self.ledger = Ledger()
        self.samples: list[Sample] = []
        self.faults: list[FaultEvent] = []
        self.producers: list[Produced] = []
        self.controls = Controls()
        self.on_sample = on_sample or (lambda soak: None)
        self.t0 = time.time()
        self.load_ended_at: float | None = None
        self.metrics: dict[str, dict[str, float]] = {}
        self._uuids: set[str] = set()
        self.embedded: Any = None
        self.endpoints: Endpoints | None = None
        #: how far the tap file and the journal were read; the engine's store, read beside it
        self._tap_at = 0
        self._journal_after = 0
        self._store: SqliteStore | None = None
        self._bisects = 0  # attempts of bisected halves since the last sample
        self._cpu_at: tuple[float, float] | None = None
        self.engine: EngineProcess | None = None
        self.rng = random.Random(plan.seed)

    @property
    def elapsed(self) -> float:
        return time.time() - self.t0

    # --- the run -------------------------------------------------------------------------------------

    async def __call__(self) -> SoakResult:
        self.dir.mkdir(parents=True, exist_ok=True)
        # the report folder is the run's own: an earlier run's store would bring its mappings back
        for stale in ("invocations.jsonl", "engine.log", "missing.txt"):
            (self.dir / stale).unlink(missing_ok=True)
        for stale_dir in ("engine-data", "aws-data"):
            shutil.rmtree(self.dir / stale_dir, ignore_errors=True)
        async with AsyncExitStack() as stack:
            self._aws(stack)
            await self._sources(stack)
            self.engine = EngineProcess(self._engine_spec(), self.dir)
            await self.engine.start()
            stack.push_async_callback(self.engine.stop)
            await self._mappings()
            self.t0 = time.time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._follow, name="soak-follow")
                tg.start_soon(self._faults, name="soak-faults")
                async with anyio.create_task_group() as producers:
                    for p in self.producers:
                        producers.start_soon(self._produce, p, name=f"soak-produce-{p.spec.name}")
                    tg.start_soon(self._stop_producers_on_request, producers.cancel_scope)
                self.load_ended_at = self.elapsed
                await self._drain()
                tg.cancel_scope.cancel()
            await self._read_journal()  # the last rows
            await self._dead_letters()
            pending = await self._pending()
            await self.engine.stop()
            result = self._result(pending)
            if self._store is not None:
                self._store.close()
        report.write_report(result, self.dir)
        return result

    def _aws(self, stack: AsyncExitStack) -> None:
        e = self.plan.engine
        url = e.aws_endpoint_url
        if e.embedded_aws:
            from engine.embedded import EmbeddedAws

            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
            self.embedded = EmbeddedAws(port=free_port(), data_dir=self.dir / "aws-data")
            self.embedded.start()
            stack.callback(self.embedded.stop)
            url = self.embedded.endpoint_url
        self.aws_endpoint_url = url
        self.endpoints = Endpoints({"*": url, **e.endpoints}, e.region)

    async def _sources(self, stack: AsyncExitStack) -> None:
        assert self.endpoints is not None
        for spec in self.plan.mappings:
            source = await stack.enter_async_context(
                PROFILES[spec.source.kind](spec.source, self.endpoints, self.run)
            )
            fixed = await self._create(stack, source)
            params = {**spec.params, **{k: v for k, v in fixed.items() if k not in spec.params}}
            if spec.failure_queue:
                params["DestinationConfig"] = {
                    "OnFailure": {"Destination": await self._failure_queue(stack, spec)}
                }
            spec = replace(spec, params=params)
            self.producers.append(Produced(spec, source, ordering=source.ordering(params)))

    async def _failure_queue(self, stack: AsyncExitStack, spec: MappingSpec) -> str:
        from soak.plan import SourceSpec

        assert self.endpoints is not None
        queue = SourceSpec(kind="sqs", name=f"{spec.source.name}-failures", dlq=False)
        failures = await stack.enter_async_context(PROFILES["sqs"](queue, self.endpoints, self.run))
        return str((await self._create(stack, failures))["EventSourceArn"])

    async def _create(self, stack: AsyncExitStack, source: SoakSource) -> dict[str, Any]:
        """The source, created; deleted when the run ends, however it ends (unless keep_sources)."""
        fixed = await source.create()
        if not self.plan.keep_sources:
            stack.push_async_callback(source.delete)
        return fixed

    def _engine_spec(self) -> dict[str, Any]:
        e = self.plan.engine
        config: dict[str, Any] = {}
        if e.config is not None:
            try:
                config = yaml.safe_load(e.config.read_text()) or {}
            except (OSError, yaml.YAMLError) as err:
                raise PlanError(f"engine.config: {e.config}: {err}") from None
        config = _with_brokers(config, self.plan)
        config_path = self.dir / "engine-config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return {
            "port": free_port(),
            "data_dir": str(self.dir / "engine-data"),
            "config": str(config_path),
            "base_dir": str(e.config.resolve().parent if e.config else Path.cwd()),
            "aws_endpoint_url": self.aws_endpoint_url,
            "endpoints": dict(e.endpoints),
            "region": e.region,
            "time_scale": e.time_scale,
            "capture_payloads": e.capture_payloads,
            "kinesis_poll_interval_s": e.kinesis_poll_interval_s,
            "tap": str(self.dir / "invocations.jsonl"),
            "faults": asdict(self.plan.faults),
            "seed": self.plan.seed,
        }

    def _lambda(self) -> Any:
        assert self.engine is not None
        return get_session().create_client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{self.engine.port}",
            region_name=self.plan.engine.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    async def _mappings(self) -> None:
        async with self._lambda() as lam:
            for p in self.producers:
                try:
                    got = await lam.create_event_source_mapping(**p.spec.params)
                except Exception as e:
                    raise PlanError(
                        f"mappings[{p.spec.name}]: CreateEventSourceMapping refused it: {e}"
                    ) from None
                p.uuid = got["UUID"]
            with anyio.fail_after(60):
                for p in self.producers:
                    while (state := (await lam.get_event_source_mapping(UUID=p.uuid))["State"]) != "Enabled":
                        if state == "Disabled":
                            break
                        await anyio.sleep(0.1)

    # --- producing -----------------------------------------------------------------------------------

    async def _produce(self, p: Produced) -> None:
        load = p.spec.load
        records = load.records.stream(
            random.Random(self.rng.random()), time.time, f"mappings[{p.spec.name}].load"
        )
        started = last = time.monotonic()
        owed = 0.0
        while not self.controls.stop_load.is_set():
            now = time.monotonic()
            elapsed = now - started
            if load.duration_s is not None and elapsed >= load.duration_s:
                break
            owed += load.rate.at(elapsed) * (now - last)
            last = now
            n = min(int(owed), MAX_PUT)
            if load.count is not None:
                n = min(n, load.count - p.sent)
            if n > 0:
                batch = [r for _, r in zip(range(n), records, strict=False)]
                if not batch:
                    break  # a JSONL file or a generator ran out
                await self._put(p, batch)
                owed -= n
            if load.count is not None and p.sent + p.refused >= load.count:
                break
            await anyio.sleep(TICK_S)
        p.done = True

    async def _put(self, p: Produced, batch: list[Record], poison: bool = False) -> None:
        """Put until the source took every record: a refused record (throttled, the broker away) goes
        again with back-off, for up to REFUSED_AFTER_S; only then is it counted as refused, never sent."""
        seqs = list(range(p.seq + 1, p.seq + 1 + len(batch)))
        p.seq += len(batch)
        todo = list(zip(seqs, batch, strict=True))
        backoff, given_up_at = 0.1, time.monotonic() + REFUSED_AFTER_S
        while todo:
            put_t = time.time()
            try:
                puts: list[Put | None] = await p.source.put([r for _, r in todo], [n for n, _ in todo])
            except Exception as e:  # the service is away (restarting): the whole batch goes again
                puts = [None] * len(todo)
                p.last_refusal = f"{type(e).__name__}: {e}"
            for (n, _), put in zip(todo, puts, strict=True):
                if put is not None:
                    p.sent += 1
                    self.ledger.sent(
                        put.key,
                        seq=n,
                        mapping=p.spec.name,
                        put_t=put_t,
                        group=put.group,
                        position=put.position,
                        scope=put.scope,
                        poison=poison,
                    )
            todo = [(n, r) for (n, r), put in zip(todo, puts, strict=True) if put is None]
            if todo and time.monotonic() > given_up_at:
                p.refused += len(todo)
                return
            if todo:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _stop_producers_on_request(self, scope: anyio.CancelScope) -> None:
        await self.controls.stop_load.wait()
        scope.cancel()

    # --- faults --------------------------------------------------------------------------------------

    async def _faults(self) -> None:
        f = self.plan.faults
        schedule = sorted(
            [(t, "poison") for t in f.poison_at]
            + [(t, "engine_kill") for t in f.engine_kill_at]
            + [(t, "broker_restart") for t in f.broker_restart_at]
        )
        for at, kind in schedule:
            await anyio.sleep(max(0.0, at - self.elapsed))
            if self.controls.stop_load.is_set():
                return
            await getattr(self, f"_{kind}")()

    def _event(self, kind: str, detail: str = "") -> None:
        t = self.elapsed
        self.faults.append(FaultEvent(round(t, 3), kind, detail))
        self.ledger.fault(time.time(), kind)

    async def _poison(self) -> None:
        for p in self.producers:
            body = json.dumps({"poison": POISON_MARKER, "at": time.time()}).encode()
            await self._put(p, [Record(body=body, key="poison", doc={"poison": POISON_MARKER})], poison=True)
        self._event("poison", f"one poison record to each of {len(self.producers)} mapping(s)")

    async def _engine_kill(self) -> None:
        assert self.engine is not None
        await self.engine.kill()
        self._event("engine_kill", "SIGKILL")
        await self.engine.start()
        self._event("engine_restart", f"pid {self.engine.pid}")

    async def _broker_restart(self) -> None:
        command = self.plan.faults.broker_restart_command
        if command:
            started = time.monotonic()
            done = await anyio.run_process(shlex.split(command), check=False)
            detail = f"{command}: exit {done.returncode} after {time.monotonic() - started:.1f} s"
        elif self.embedded is not None:
            self.embedded.stop()
            self.embedded.start()
            detail = "the embedded AWS emulator, stopped and started (its state saved and restored)"
        else:
            raise PlanError("faults.broker_restart: give a command (faults.broker_restart.command)")
        self._event("broker_restart", detail)

    # --- following the run ---------------------------------------------------------------------------

    async def _follow(self) -> None:
        tap_path = self.dir / "invocations.jsonl"
        interval = self.plan.interval_s()
        next_sample = time.monotonic() + interval
        while True:
            self._read_tap(tap_path)
            await self._read_journal()
            if time.monotonic() >= next_sample:
                next_sample += interval
                await self._sample(interval)
            await anyio.sleep(0.25)

    def _read_tap(self, path: Path) -> None:
        if not path.exists():
            return
        with path.open("rb") as f:
            f.seek(self._tap_at)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line half written waits for the next read
        self._tap_at += end
        for raw in chunk[:end].splitlines():
            if raw.strip():
                self.ledger.invocation(json.loads(raw))
        self.ledger.retry()

    async def _read_journal(self) -> None:
        store_path = self.dir / "engine-data" / "esm.sqlite3"
        if not store_path.exists():
            return
        if self._store is None:
            self._store = SqliteStore(store_path)
        store = self._store
        names = {p.uuid: p.spec.name for p in self.producers}
        while True:
            rows: list[JournalEntry] = await anyio.to_thread.run_sync(
                lambda: store.journal(None, 5000, after_id=self._journal_after)
            )
            if not rows:
                return
            self._journal_after = rows[-1].id
            self.ledger.journal_rows((r, names[r.mapping_uuid]) for r in rows if r.mapping_uuid in names)
            self._bisects += sum(
                1 for r in rows if r.bisect_depth > 0 and r.outcome not in ("discarded", "destination_sent")
            )

    async def _scrape(self) -> dict[str, dict[str, float]]:
        """The engine's /metrics, per mapping UUID: family -> value (summed over partitions)."""
        assert self.engine is not None
        out: dict[str, dict[str, float]] = {}
        raw = b""
        with contextlib.suppress(OSError):  # the engine is restarting
            async with await anyio.connect_tcp("127.0.0.1", self.engine.port) as conn:
                await conn.send(b"GET /metrics HTTP/1.0\r\nHost: engine\r\n\r\n")
                with anyio.move_on_after(5):
                    async for chunk in conn:
                        raw += chunk
        text = raw.partition(b"\r\n\r\n")[2].decode(errors="replace")
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                u = s.labels.get("mapping_uuid")
                if u:
                    per = out.setdefault(u, {})
                    per[s.name] = per.get(s.name, 0.0) + s.value
        return out

    def _gauge(self, name: str, combine: Callable[[list[float]], float]) -> float | None:
        values = [m[name] for u, m in self.metrics.items() if u in self._uuids and name in m]
        return combine(values) if values else None

    async def _sample(self, interval: float) -> None:
        iv = self.ledger.take()
        self.metrics = await self._scrape()
        self._uuids = {p.uuid for p in self.producers}
        depths = [d for d in [await _quietly(p.source.depth) for p in self.producers] if d is not None]
        rss = cpu = None
        if self.engine is not None and self.engine.pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.engine.pid)
                rss = proc.memory_info().rss / 2**20
                times = proc.cpu_times()
                used, now = times.user + times.system, time.monotonic()
                if self._cpu_at is not None and self._cpu_at[0] <= used:
                    cpu = (used - self._cpu_at[0]) / max(now - self._cpu_at[1], 1e-9) * 100
                self._cpu_at = (used, now)
        sent = sum(p.sent for p in self.producers)
        invoked = sum(1 for e in self.ledger.records.values() if e.first_t is not None)
        previous_sent = self.samples[-1].sent if self.samples else 0
        lat = iv.latencies_ms
        bisects, self._bisects = self._bisects, 0
        self.samples.append(
            Sample(
                t=round(self.elapsed, 3),
                sent=sent,
                invoked=invoked,
                sent_per_s=(sent - previous_sent) / interval,
                invoked_per_s=iv.first_invoked / interval,
                latency_p50_ms=percentile(lat, 50),
                latency_p95_ms=percentile(lat, 95),
                latency_p99_ms=percentile(lat, 99),
                duration_p50_ms=percentile(iv.durations_ms, 50),
                duration_p99_ms=percentile(iv.durations_ms, 99),
                invocations=iv.invocations,
                errors=iv.errors,
                timeouts=iv.timeouts,
                throttles=iv.throttles,
                retries=iv.retries,
                bisects=bisects,
                to_destination=iv.to_destination,
                filtered_out=iv.filtered_out,
                duplicates=iv.duplicates,
                iterator_age_ms=self._gauge("esm_iterator_age_milliseconds", max),
                offset_lag=self._gauge("esm_offset_lag", sum),
                queue_depth=float(sum(depths)) if depths else self._gauge("esm_queue_depth", sum),
                concurrency=iv.concurrency,
                engine_rss_mib=rss,
                engine_cpu_pct=cpu,
                function_busy_pct=iv.busy_s / interval * 100,
            )
        )
        self.on_sample(self)

    # --- the end -------------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Until every record is accounted for, or nothing moved for ``drain_s``."""
        last, moved_at, read_at = -1, time.monotonic(), 0.0
        while not self.controls.skip_drain.is_set():
            if time.monotonic() - read_at > 5:  # a queue's redrive moves records out of the engine's sight
                await self._dead_letters()
                read_at = time.monotonic()
            left = len(self.ledger.unaccounted())
            if left == 0:
                return
            if left != last:
                last, moved_at = left, time.monotonic()
            elif time.monotonic() - moved_at > self.plan.drain_s:
                return
            with anyio.move_on_after(0.5):
                await self.controls.skip_drain.wait()

    async def _dead_letters(self) -> None:
        """What an SQS queue's redrive policy moved to its DLQ (the engine never sees that move)."""
        for p in self.producers:
            moved = await p.source.dead_letters()
            self.ledger.mark(
                [k for k in moved if k in self.ledger.records],
                "to_destination",
                "maxReceiveCount (the queue's redrive policy)",
            )

    async def _pending(self) -> dict[str, int]:
        """Per mapping, how many records the source still holds for it: queue depth, offset lag, or
        records past the shard's checkpoint."""
        self.metrics = await self._scrape()
        out = {}
        store = self._store
        for p in self.producers:
            m = self.metrics.get(p.uuid, {})
            held = int(m.get("esm_queue_depth", 0) + m.get("esm_offset_lag", 0))
            depth = await p.source.depth()
            if depth is not None:
                held = depth
            elif p.spec.source.kind in ("kinesis", "dynamodb") and store is not None:
                checkpoints = store.checkpoints(p.uuid)
                held = 0
                for key in self.ledger.unaccounted(p.spec.name):
                    e = self.ledger.records[key]
                    mark = checkpoints.get(key.split(":")[0], "")
                    if not mark.isdigit() or e.position > int(mark):
                        held += 1 if mark != "SHARD_END" else 0
            out[p.spec.name] = held
        return out

    def _result(self, pending_by: dict[str, int]) -> SoakResult:
        self.ledger.retry(final=True)
        led = self.ledger
        mappings, pending, lost = [], [], []
        for p in self.producers:
            pend, gone = settle_counts(led, p.spec.name, pending_by.get(p.spec.name, 0))
            pending += pend
            lost += gone
            counts = led.by_mapping(p.spec.name)
            mappings.append(
                MappingReport(
                    name=p.spec.name,
                    source=p.spec.source.kind,
                    uuid=p.uuid,
                    event_source=str(
                        p.spec.params.get("EventSourceArn") or p.spec.params.get("Topics") or ""
                    ),
                    params=dict(p.spec.params),
                    sent=counts["sent"],
                    invoked=counts["invoked"],
                    duplicates=counts["duplicates"],
                    lost=len(gone),
                    pending=len(pend),
                    filtered_out=counts["filtered_out"],
                    to_destination=counts["to_destination"],
                    order_violations=counts["order_violations"],
                    latency_p50_ms=_round(percentile(led.latencies_by[p.spec.name], 50)),
                    latency_p99_ms=_round(percentile(led.latencies_by[p.spec.name], 99)),
                    ordering=p.ordering,
                )
            )
        entries = led.records.values()
        lat = led.latencies_ms
        summary: dict[str, Any] = {
            "sent": len(led.records),
            "invoked": sum(1 for e in entries if e.first_t is not None),
            "succeeded": sum(1 for e in entries if e.successes),
            "duplicates": led.duplicates,
            "lost": len(lost),
            "pending": len(pending),
            "filtered_out": sum(m.filtered_out for m in mappings),
            "to_destination": sum(m.to_destination for m in mappings),
            "discarded": sum(1 for e in entries if e.end == "discarded" and not e.successes),
            "order_violations": sum(led.order_violations.values()),
            "latency_ms": {f"p{p}": _round(percentile(lat, p)) for p in (50, 95, 99)},
            "duration_s": round(self.load_ended_at or self.elapsed, 3),
            "drain_s": round(self.elapsed - (self.load_ended_at or self.elapsed), 3),
            "invocations": led.invocations,
            "errors": led.errors,
            "error_rate": round(led.errors / led.invocations, 4) if led.invocations else 0.0,
            "retries": led.retries,
            "throttles": led.throttles,
            "refused_by_source": sum(p.refused for p in self.producers),
            "foreign_records": led.foreign,
            "function_duration_ms": {f"p{p}": _round(percentile(led.durations_ms, p)) for p in (50, 99)},
            "max_iterator_age_ms": max((s.iterator_age_ms or 0 for s in self.samples), default=0),
            "max_lag_records": max(
                ((s.offset_lag or 0) + (s.queue_depth or 0) for s in self.samples), default=0
            ),
            "time_scale": self.plan.engine.time_scale,
            "stopped_early": self.controls.stopped_early,
            "faults": [asdict(f) for f in self.faults],
            "run": self.run,
        }
        failures = self._fail_on(summary)
        if lost:
            failures.insert(0, f"{len(lost)} record(s) lost (first: {', '.join(lost[:5])})")
        verdict = ("FAIL: " + "; ".join(failures)) if failures else "PASS"
        if not lost:
            verdict += (
                f" (every one of {summary['sent']:,} records accounted for: "
                f"{summary['succeeded']:,} processed, {summary['filtered_out']:,} filtered out, "
                f"{summary['to_destination']:,} at a destination, {summary['discarded']:,} discarded, "
                f"{summary['pending']:,} still pending at the source)"
            )
        summary["verdict"] = verdict
        summary["failed_checks"] = failures
        return SoakResult(
            summary=summary,
            samples=self.samples,
            mappings=mappings,
            faults=self.faults,
            duplicate_causes=dict(led.duplicate_causes),
            destination_reasons=dict(led.destination_reasons),
            cost=cost.estimate(self._usage(summary), self.plan.prices or None),
            verdict=verdict,
            failures=failures,
            missing=lost[:1000],
            plan_text=self.plan.text,
            time_scale=self.plan.engine.time_scale,
        )

    def _fail_on(self, s: dict[str, Any]) -> list[str]:
        f = self.plan.fail_on
        out = []
        p99 = s["latency_ms"]["p99"]
        if f.p99_ms is not None and p99 is not None and p99 > f.p99_ms:
            out.append(f"put-to-invoke p99 {p99:,.0f} ms > {f.p99_ms:g} ms")
        if f.error_rate is not None and s["error_rate"] > f.error_rate:
            out.append(f"error rate {s['error_rate']:.4f} > {f.error_rate:g}")
        if f.lag_records is not None and s["max_lag_records"] > f.lag_records:
            out.append(f"lag {s['max_lag_records']:,.0f} records > {f.lag_records:g}")
        if f.iterator_age_ms is not None and s["max_iterator_age_ms"] > f.iterator_age_ms:
            out.append(f"iterator age {s['max_iterator_age_ms']:,.0f} ms > {f.iterator_age_ms:g} ms")
        if f.order and s["order_violations"]:
            out.append(f"{s['order_violations']} order violation(s)")
        if f.duplicates and s["duplicates"]:
            out.append(f"{s['duplicates']} duplicate(s)")
        if f.pending and s["pending"]:
            out.append(f"{s['pending']} record(s) still pending at the source when the soak stopped")
        return out

    def _memory_mb(self, function: str) -> int:
        """The function's configured MemorySize (the config file's memory_size), else Lambda's 128."""
        from engine.config import ConfigError, load_config

        path = self.plan.engine.config
        try:
            fn = load_config(path).functions.get(function) if path else None
        except ConfigError:
            fn = None
        return fn.memory_size if fn is not None else 128

    def _usage(self, s: dict[str, Any]) -> cost.Usage:
        kinds = [p.spec.source.kind for p in self.producers]
        sent_by = {k: sum(p.sent for p in self.producers if p.spec.source.kind == k) for k in set(kinds)}
        sqs_sent = sent_by.get("sqs", 0)
        duration = max(s["duration_s"], 1e-9)
        # sends in batches of 10; a receive and a delete per batch; AWS's 5 idle pollers' 20 s long polls
        sqs_requests = math.ceil(sqs_sent / 10) * 3 + (kinds.count("sqs") * 5 * duration / 20)
        shards = sum(p.spec.source.shards for p in self.producers if p.spec.source.kind == "kinesis")
        return cost.Usage(
            duration_s=duration,
            lambda_invocations=self.ledger.invocations,
            lambda_gb_seconds=sum(
                seconds * self._memory_mb(function) / 1024
                for function, seconds in self.ledger.seconds_by_function.items()
            ),
            sqs_requests=sqs_requests,
            sqs_fifo=any(p.spec.source.fifo for p in self.producers if p.spec.source.kind == "sqs"),
            kinesis_shards=shards,
            kinesis_put_units=sent_by.get("kinesis", 0),
            dynamodb_write_units=sent_by.get("dynamodb", 0),
            kafka_mappings=kinds.count("kafka"),
            mq_mappings=kinds.count("rabbitmq") + kinds.count("activemq"),
        )


async def _quietly(call: Callable[[], Any]) -> Any:
    """A figure for the report, None when the service cannot give it now (restarting)."""
    try:
        return await call()
    except Exception:
        return None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _with_brokers(config: dict[str, Any], plan: SoakPlan) -> dict[str, Any]:
    """The one-line form's MQ mappings name a broker ARN of the soak's making: its endpoint and
    credentials go into the engine's config (brokers, secrets), as a user's file would have them."""
    from soak.sources import broker_credentials

    out = dict(config)
    for m in plan.mappings:
        if m.source.kind not in ("rabbitmq", "activemq") or not m.source.broker_url:
            continue
        arn = str(m.params.get("EventSourceArn"))
        secret = next(
            (
                a["URI"]
                for a in m.params.get("SourceAccessConfigurations", [])
                if a.get("Type") == "BASIC_AUTH"
            ),
            None,
        )
        if arn in (out.get("brokers") or {}) or secret is None:
            continue
        endpoint, user, password = broker_credentials(m.source.broker_url)
        if m.source.kind == "activemq":
            endpoint = endpoint.replace("stomp://", "stomp://", 1)
        out.setdefault("brokers", {})[arn] = {"endpoints": [endpoint]}
        out.setdefault("secrets", {})[secret] = {"username": user, "password": password}
    return out
