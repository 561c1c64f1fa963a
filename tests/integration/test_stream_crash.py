"""Kill the engine with SIGKILL in the middle of a Kinesis run and start it again on the same data dir:
every record is delivered at least once, only the batches in flight at the kill are delivered again,
and each shard's first deliveries stay in shard order (the checkpoint is the contiguous position after
each finished batch, spec 4.2). A clean SIGTERM then exits 0 and leaves nothing to deliver again."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import boto3

from tests.integration.conftest import wait_for
from tests.integration.engine_process import free_port, serve, stop

REGION = "us-east-1"
SHARDS = 2
RECORDS = 400
BATCH_SIZE = 20

# One line per record: "<request id> <shardId>:<sequence number> <data>". A batch is written with one
# write(2) on an O_APPEND descriptor, so a kill never leaves half a batch in the file.
HANDLER = """
import base64, os, time

def record(event, context):
    lines = "".join(
        f"{context.aws_request_id} {r['eventID']} {base64.b64decode(r['kinesis']['data']).decode()}\\n"
        for r in event["Records"]
    )
    fd = os.open(os.environ["ESM_CRASH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)
    time.sleep(float(os.environ["ESM_CRASH_SLEEP"]))
"""


class Line:
    def __init__(self, text: str) -> None:
        self.batch, event_id, self.data = text.split(" ")
        self.shard, seq = event_id.split(":")
        self.seq = int(seq)


def _lines(out: Path) -> list[Line]:
    if not out.exists():
        return []
    return [Line(t) for t in out.read_text().splitlines()]


def _stream(kinesis: Any, name: str) -> str:
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)

    def summary() -> dict[str, Any]:
        return dict(kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"])

    wait_for(lambda: summary()["StreamStatus"] == "ACTIVE")
    return str(summary()["StreamARN"])


def test_sigkill_mid_run_on_a_kinesis_stream(tmp_path: Path, kinesis_endpoint: str, unique_name: Any) -> None:
    out = tmp_path / "seen.txt"
    (tmp_path / "stream_crash_fns.py").write_text(textwrap.dedent(HANDLER))
    (tmp_path / "esm.yaml").write_text(
        textwrap.dedent(f"""
        functions:
          stream-crash-recorder:
            handler: stream_crash_fns.record
            timeout: 5
            environment: {{ESM_CRASH_OUT: "{out}", ESM_CRASH_SLEEP: "0.05"}}
    """)
    )
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_endpoint, region_name=REGION)
    name = unique_name("stream-crash")
    arn = _stream(kinesis, name)
    seq_of: dict[str, tuple[str, int]] = {}  # data -> (shard, sequence number)
    for i in range(0, RECORDS, 100):
        batch = [(f"pk-{j}", str(j)) for j in range(i, i + 100)]
        resp = kinesis.put_records(
            StreamName=name, Records=[{"Data": d.encode(), "PartitionKey": k} for k, d in batch]
        )
        assert resp["FailedRecordCount"] == 0
        for (_, data), r in zip(batch, resp["Records"], strict=True):
            seq_of[data] = (r["ShardId"], int(r["SequenceNumber"]))
    per_shard: dict[str, list[int]] = defaultdict(list)
    for shard, seq in seq_of.values():
        per_shard[shard].append(seq)
    assert len(per_shard) == SHARDS and all(len(s) >= 4 * BATCH_SIZE for s in per_shard.values())

    port = free_port()
    engine = serve(tmp_path, port, f"kinesis={kinesis_endpoint}")
    lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION)
    try:
        uuid = lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName="stream-crash-recorder",
            StartingPosition="TRIM_HORIZON",
            BatchSize=BATCH_SIZE,
        )["UUID"]
        # both shards under way, far from done (each shard needs >= 10 batches of >= 50 ms)
        wait_for(
            lambda: len({ln.shard for ln in _lines(out)}) == SHARDS and len(_lines(out)) >= 80, interval=0.01
        )
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait(10)
        before = _lines(out)
        assert len({ln.data for ln in before}) < RECORDS  # the kill really happened mid-run
        assert len({ln.data for ln in before}) == len(before)  # no duplicate before the kill

        engine = serve(tmp_path, port, f"kinesis={kinesis_endpoint}")
        assert lam.get_event_source_mapping(UUID=uuid)["State"] in ("Enabled", "Creating")
        wait_for(lambda: {ln.data for ln in _lines(out)} == set(seq_of), timeout=60)
        time.sleep(1.5)  # whatever else the restarted engine would deliver
        lines = _lines(out)
        assert stop(engine) == 0  # graceful stop on SIGTERM
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(5)
        kinesis.delete_stream(StreamName=name)  # kinesis-mock allows 200 shards per account

    after = lines[len(before) :]
    assert all(seq_of[ln.data] == (ln.shard, ln.seq) for ln in lines)  # every line is a real record
    duplicates = len(lines) - RECORDS
    assert 0 <= duplicates <= 2 * BATCH_SIZE * SHARDS, duplicates

    batches_before: dict[str, dict[str, list[int]]] = defaultdict(dict)  # shard -> batch -> records
    for ln in before:
        batches_before[ln.shard].setdefault(ln.batch, []).append(ln.seq)
    for shard, seqs in per_shard.items():
        first_run = [ln.seq for ln in before if ln.shard == shard]
        second_run = [ln.seq for ln in after if ln.shard == shard]
        # each run reads the shard in order, and the second one starts at the checkpoint
        assert first_run == sorted(first_run) and second_run == sorted(second_run)
        redelivered = sorted(set(first_run) & set(second_run))
        assert second_run[: len(redelivered)] == redelivered == first_run[len(first_run) - len(redelivered) :]
        # what came twice is exactly the whole last batch(es) invoked before the kill, those in flight
        batches = list(batches_before[shard].values())
        in_flight = [sorted(s for b in batches[len(batches) - k :] for s in b) for k in range(3)]
        assert redelivered in in_flight, (redelivered, batches[-2:])
        # first deliveries: every record of the shard once, in shard order
        first_deliveries = list(dict.fromkeys(first_run + second_run))
        assert first_deliveries == sorted(seqs)

    # the clean stop left the checkpoints at the end: a third start delivers nothing again
    engine = serve(tmp_path, port, f"kinesis={kinesis_endpoint}")
    try:
        assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"
        time.sleep(3.0)  # two poll intervals (1 s) after the shards are opened
        assert len(_lines(out)) == len(lines)
    finally:
        assert stop(engine) == 0
