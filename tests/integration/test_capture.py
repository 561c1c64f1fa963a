"""Payload capture, `esm journal show` and `esm replay`: the journal keeps the exact bytes of every attempt's
event and of every destination record; a captured attempt replays on a function of a config file, and its
response is printed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.integration.conftest import esm_test_fns, functions_config, wait_for
from tests.integration.test_sqs import _map, _queue, _send, _sqs

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def _esm(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def _capturing(*names: str) -> Any:
    """The test functions, those named capturing their mappings' payloads (the config file's
    capture_payloads)."""
    config = functions_config()
    functions = {
        n: replace(f, capture_payloads=True) if n in names else f for n, f in config.functions.items()
    }
    return replace(config, functions=functions)


def test_sqs_attempts_are_captured_shown_and_replayed(
    sqs_endpoint: str, start_engine: Any, unique_name: Any, tmp_path: Path
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("capture"), VisibilityTimeout="30")
    eng = start_engine(sqs_endpoint, config=_capturing("fn-partial"))
    # a window of 1 s: the three messages make one batch
    _map(
        eng,
        arn,
        "fn-partial",
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    ids = _send(sqs, url, ["a", "b FAIL", "c"])
    wait_for(lambda: len(esm_test_fns.records_for(arn)) == 3)
    data_dir = str(eng.engine.settings.data_dir)
    [row] = wait_for(lambda: json.loads(_esm("journal", "--data-dir", data_dir, "--json").stdout))
    assert row["outcome"] == "partial_failure" and row["detail"] == {"failed": [ids[1]]}
    # the payload is the very event the function got; the row names each of its messages, in its order
    [call] = esm_test_fns.calls_for(arn)
    assert row["items"] == [r["messageId"] for r in call["event"]["Records"]] and sorted(
        row["items"]
    ) == sorted(ids)
    assert "payload" not in row  # a listing leaves the payloads on disk
    one = json.loads(_esm("journal", "show", str(row["id"]), "--data-dir", data_dir, "--json").stdout)
    assert json.loads(one["payload"]) == call["event"]
    assert f"{row['id']:>8}  " in _esm("journal", "--data-dir", data_dir).stdout  # the ID column

    shown = _esm("journal", "show", str(row["id"]), "--data-dir", data_dir).stdout
    assert "outcome:      partial_failure" in shown and f"items:        {', '.join(row['items'])}" in shown
    payload = shown[shown.index("bytes\n") + len("bytes\n") :]
    assert json.loads(payload) == call["event"]

    # replay on the function of a config file: the same function, then another (--function)
    (tmp_path / "replay_fns.py").write_text(
        textwrap.dedent("""
        def partial(event, context):
            return {"batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if "FAIL" in r["body"]]}

        def bodies(event, context):
            return [r["body"] for r in event["Records"]]

        def crash(event, context):
            raise RuntimeError("still broken")
        """)
    )
    (tmp_path / "esm.yaml").write_text(
        "functions:\n"
        "  fn-partial: {handler: replay_fns.partial}\n"
        "  bodies: {handler: replay_fns.bodies}\n"
        "  crash: {handler: replay_fns.crash}\n"
    )
    config = str(tmp_path / "esm.yaml")
    replayed = _esm("replay", str(row["id"]), "--data-dir", data_dir, "--config", config)
    assert json.loads(replayed.stdout) == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert f"replayed journal row {row['id']} (partial_failure" in replayed.stderr
    other = _esm("replay", str(row["id"]), "--function", "bodies", "--data-dir", data_dir, "--config", config)
    assert json.loads(other.stdout) == [r["body"] for r in call["event"]["Records"]]
    crashed = _esm(
        "replay", str(row["id"]), "--function", "crash", "--data-dir", data_dir, "--config", config, ok=False
    )
    assert crashed.returncode == 1 and json.loads(crashed.stdout)["errorMessage"] == "still broken"
    assert "function error (Unhandled)" in crashed.stderr
    missing = _esm("journal", "show", "999999", "--data-dir", data_dir, ok=False)
    assert missing.returncode != 0 and "no journal row 999999" in missing.stderr


def test_uncaptured_rows_say_so(sqs_endpoint: str, start_engine: Any, unique_name: Any) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("nocapture"))
    eng = start_engine(sqs_endpoint)
    _map(eng, arn, "fn-ok", BatchSize=10)
    _send(sqs, url, ["x"])
    wait_for(lambda: len(esm_test_fns.records_for(arn)) == 1)
    data_dir = str(eng.engine.settings.data_dir)
    [row] = wait_for(lambda: json.loads(_esm("journal", "--data-dir", data_dir, "--json").stdout))
    assert "payload" not in row
    assert "not captured" in _esm("journal", "show", str(row["id"]), "--data-dir", data_dir).stdout
    refused = _esm("replay", str(row["id"]), "--data-dir", data_dir, ok=False)
    assert refused.returncode != 0 and "has no payload" in refused.stderr


def test_a_destination_record_is_captured_exactly_as_delivered(
    poisoned: Any,
) -> None:
    with poisoned(
        data=["POISON"],
        engine={"config": _capturing("fn-stream_poison")},
    ) as run:
        store = run.eng.engine.store
        [failed, discarded, delivered] = [store.journal_entry(e.id) for e in store.journal(run.uuid, 100)]
        assert [failed.outcome, discarded.outcome, delivered.outcome] == [
            "function_error",
            "discarded",
            "destination_sent",
        ]
        [call] = esm_test_fns.calls_for(run.arn)
        assert json.loads(failed.payload) == call["event"]
        assert discarded.payload == failed.payload  # the event the discarded records were in
        [message] = run.sqs.receive_message(QueueUrl=run.dlq_url, WaitTimeSeconds=5)["Messages"]
        assert delivered.payload.decode() == message["Body"]  # byte for byte what the queue got


def test_trace_follows_a_poison_record_through_its_bisect_to_the_destination(
    poisoned: Any,
) -> None:
    with poisoned() as run:
        seqs, eng = run.seqs, run.eng
        wait_for(lambda: {esm_test_fns._data(r) for r in esm_test_fns.records_for(run.arn)} == set(run.data))
        data_dir = str(eng.engine.settings.data_dir)
        [poison] = json.loads(_esm("trace", seqs[7], "--data-dir", data_dir, "--json").stdout)
        rows = poison["rows"]
        # the batch of 16, then each half holding it down to the record alone: 16, 8, 4, 2, 1
        attempts = [(r["batch_size"], r["bisect_depth"]) for r in rows if r["outcome"] == "function_error"]
        assert attempts == [(16, 0), (8, 1), (4, 2), (2, 3), (1, 4)]
        assert [r["outcome"] for r in rows][-2:] == ["discarded", "destination_sent"]
        assert (
            poison["end"] == f"discarded (RetryAttemptsExhausted), its failure record sent to {run.dlq_arn}"
        )
        text = _esm("trace", seqs[7], "--data-dir", data_dir).stdout
        assert f"{seqs[7]} in shardId-000000000000 (mapping {run.uuid}):" in text
        assert "        attempt 1" in text  # a bisect half indented under its batch
        [good] = json.loads(_esm("trace", seqs[12], "--data-dir", data_dir, "--json").stdout)
        assert good["end"] == "invoked: succeeded on attempt 1"
        assert [r["batch_size"] for r in good["rows"]] == [16, 8]  # failed with the poison, then its half ok
        nowhere = _esm("trace", "1" + seqs[0], "--data-dir", data_dir).stdout
        assert "not in the journal" in nowhere


def test_trace_says_a_message_was_filtered_out(
    sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("trace-filter"))
    eng = start_engine(sqs_endpoint)
    _map(eng, arn, "fn-ok", BatchSize=10, FilterCriteria={"Filters": [{"Pattern": '{"body": ["go"]}'}]})
    skipped, kept = _send(sqs, url, ["stop", "go"])
    wait_for(lambda: len(esm_test_fns.records_for(arn)) == 1)
    data_dir = str(eng.engine.settings.data_dir)
    wait_for(lambda: "filtered out" in _esm("trace", skipped, "--data-dir", data_dir).stdout)
    [journey] = json.loads(_esm("trace", kept, "--data-dir", data_dir, "--json").stdout)
    assert journey["end"] == "invoked: succeeded on attempt 1" and journey["scope"] == "queue"
