"""`esm up` end to end, as a real subprocess: a SAM app's sources created on the embedded AWS and a
record of each kind reaching the function from its CodeUri; Kafka, RabbitMQ and ActiveMQ mappings on
the real brokers; the update path (a property changed in place, a source changed, an event removed,
one added, a mapping outside the stack left alone, a second apply that changes nothing)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from stack.cli import ACTIONS
from tests.integration.conftest import wait_for
from tests.integration.engine_process import free_port
from tests.integration.test_kafka import create_topic, produce
from tests.integration.test_mq import Broker
from tests.services import endpoint_for, require_service

ROOT = Path(__file__).parents[2]

HANDLER = '''\
import base64, json, os

def texts(node):
    """Every record's payload as text, whatever the source's event shape."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("data", "value") and isinstance(value, str):
                yield base64.b64decode(value).decode()
            elif key in ("body", "S") and isinstance(value, str):
                yield value
            else:
                yield from texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from texts(value)

def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        for text in texts(event):
            out.write(json.dumps({"function": context.function_name, "text": text}) + "\\n")
'''


def _app(tmp_path: Path, template: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "app.py").write_text(HANDLER)
    path = tmp_path / "template.yaml"
    path.write_text(template)
    return path


class Up:
    """One `esm up` process: its output lines, its API port."""

    def __init__(self, proc: subprocess.Popen[str], out: Path) -> None:
        self.proc = proc
        self.out = out

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def actions(self) -> dict[str, tuple[str, str]]:
        """logical id -> (action, UUID) as `esm up` printed them."""
        found = {}
        for line in self.lines():
            parts = line.split()
            # esm up: STACK: ACTION LOGICAL-ID [UUID]
            if len(parts) >= 5 and parts[3] in ACTIONS:
                found[parts[4]] = (parts[3], parts[5] if len(parts) > 5 else "")
        return found


@contextmanager
def esm_up(tmp_path: Path, template: Path, *args: str) -> Iterator[tuple[Up, Any]]:
    """`esm up` until its template is applied; a Lambda client on its API; SIGINT at the end."""
    port = free_port()
    out = tmp_path / f"up-{time.monotonic_ns()}.out"
    with out.open("w") as stdout, (tmp_path / "up.log").open("a") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "up",
                str(template),
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--log-level",
                "warning",
                *args,
            ],
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
            text=True,
        )
    up = Up(proc, out)
    try:

        def applied() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"esm up exited {proc.returncode}: {(tmp_path / 'up.log').read_text()[-3000:]}")
            return any(": applied (" in line for line in up.lines())

        wait_for(applied, timeout=60)
        client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        yield up, client
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _received(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def _tags(client: Any, mapping: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = client.list_tags(Resource=mapping["EventSourceMappingArn"])["Tags"]
    return tags


STREAMS_AND_QUEUES = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  OutFile: {Type: String}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
    CodeUri: src/
    Environment: {Variables: {OUT: !Ref OutFile}}
Resources:
  Orders:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dead.Arn, maxReceiveCount: 3}
  Dead: {Type: AWS::SQS::Queue}
  Clicks: {Type: AWS::Kinesis::Stream, Properties: {ShardCount: 1}}
  Users:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      BillingMode: PAY_PER_REQUEST
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Events:
        FromQueue:
          Type: SQS
          Properties:
            Queue: !GetAtt Orders.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
        FromStream:
          Type: Kinesis
          Properties:
            Stream: !GetAtt Clicks.Arn
            StartingPosition: TRIM_HORIZON
            DestinationConfig: {OnFailure: {Destination: !GetAtt Dead.Arn}}
        FromTable:
          Type: DynamoDB
          Properties: {Stream: !GetAtt Users.StreamArn, StartingPosition: TRIM_HORIZON}
  Legacy:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: nodejs20.x
      Handler: index.handler
      Events:
        FromQueue: {Type: SQS, Properties: {Queue: !GetAtt Orders.Arn}}
"""


def test_a_sam_app_runs_on_the_embedded_aws_with_its_sources_created(tmp_path: Path) -> None:
    out = tmp_path / "received.jsonl"
    aws_port = free_port()
    template = _app(tmp_path, STREAMS_AND_QUEUES)
    args = (
        "--embedded-aws",
        "--embedded-aws-port",
        str(aws_port),
        "--create-resources",
        "--stack-name",
        "shop",
        "--parameter-overrides",
        f"OutFile={out}",
    )
    with esm_up(tmp_path, template, *args) as (up, client):
        actions = up.actions()
        assert {k: a for k, (a, _) in actions.items()} == {
            "WorkerFromQueue": "created",
            "WorkerFromStream": "created",
            "WorkerFromTable": "created",
        }
        assert any("Legacy (shop-Legacy) is not runnable: runtime nodejs20.x" in line for line in up.lines())
        mappings = client.list_event_source_mappings()["EventSourceMappings"]
        assert {m["UUID"] for m in mappings} == {uuid for _, uuid in actions.values()}
        for m in mappings:
            assert _tags(client, m)["esm:stack"] == "shop"
            assert m["FunctionArn"].endswith(":function:shop-Worker")

        endpoint = f"http://127.0.0.1:{aws_port}"
        kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        sqs = boto3.client("sqs", **kw)
        url = sqs.get_queue_url(QueueName="shop-Orders")["QueueUrl"]
        redrive = json.loads(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["RedrivePolicy"]
        )
        assert redrive["deadLetterTargetArn"] == "arn:aws:sqs:us-east-1:123456789012:shop-Dead"
        marker = uuid.uuid4().hex
        sqs.send_message(QueueUrl=url, MessageBody=f"queue-{marker}")
        boto3.client("kinesis", **kw).put_record(
            StreamName="shop-Clicks", Data=f"stream-{marker}".encode(), PartitionKey="k"
        )
        boto3.client("dynamodb", **kw).put_item(TableName="shop-Users", Item={"pk": {"S": f"table-{marker}"}})

        wanted = {f"{kind}-{marker}" for kind in ("queue", "stream", "table")}
        wait_for(lambda: wanted <= {r["text"] for r in _received(out)}, timeout=30)
        assert {r["function"] for r in _received(out)} == {"shop-Worker"}


BROKERS = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  OutFile: {Type: String}
  KafkaServers: {Type: CommaDelimitedList}
  Topic: {Type: String}
  ActiveBroker: {Type: String}
  ActiveLogin: {Type: String}
Resources:
  Rabbit:
    Type: AWS::AmazonMQ::Broker
    Properties: {BrokerName: !Sub "${AWS::StackName}-rabbit", EngineType: RABBITMQ}
  BrokerLogin:
    Type: AWS::SecretsManager::Secret
    Properties: {SecretString: '{"username": "guest", "password": "guest"}'}
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      CodeUri: src/
      Handler: app.handler
      Environment: {Variables: {OUT: !Ref OutFile}}
      Events:
        FromKafka:
          Type: SelfManagedKafka
          Properties:
            KafkaBootstrapServers: !Ref KafkaServers
            Topics: [!Ref Topic]
            StartingPosition: TRIM_HORIZON
            ConsumerGroupId: !Sub "${AWS::StackName}-group"
            # a broker without authentication is reached in a VPC on AWS (accepted and ignored here)
            SourceAccessConfigurations:
              - {Type: VPC_SUBNET, URI: "subnet:subnet-0123456789abcdef0"}
              - {Type: VPC_SECURITY_GROUP, URI: "security_group:sg-0123456789abcdef0"}
        FromRabbit:
          Type: MQ
          Properties:
            Broker: !GetAtt Rabbit.Arn
            Queues: [!Sub "${AWS::StackName}-jobs"]
            SourceAccessConfigurations: [{Type: BASIC_AUTH, URI: !Ref BrokerLogin}]
        FromActive:
          Type: MQ
          Properties:
            Broker: !Ref ActiveBroker
            Queues: [!Sub "${AWS::StackName}-jobs"]
            SourceAccessConfigurations: [{Type: BASIC_AUTH, URI: !Ref ActiveLogin}]
"""


@pytest.mark.service("kafka", "rabbitmq", "activemq")
def test_kafka_rabbitmq_and_activemq_mappings_of_a_template_reach_the_function(tmp_path: Path) -> None:
    out = tmp_path / "received.jsonl"
    bootstrap = require_service("kafka", endpoint_for("kafka"))
    stack = f"b{uuid.uuid4().hex[:8]}"
    topic = create_topic(bootstrap, f"{stack}-orders")
    rabbit, active = Broker("rabbitmq"), Broker("activemq")
    # brokers by the template's logical id (Rabbit) or by ARN (a parameter); the login from the template
    (tmp_path / "esm.yaml").write_text(
        json.dumps(
            {
                "brokers": {
                    "Rabbit": {"endpoints": [rabbit.endpoint]},
                    active.arn: {"endpoints": [active.endpoint]},
                },
                "secrets": {active.secret: active.creds},
            }
        )
    )
    template = _app(tmp_path, BROKERS)
    args = (
        "--config",
        str(tmp_path / "esm.yaml"),
        "--stack-name",
        stack,
        "--parameter-overrides",
        f"OutFile={out}",
        f"KafkaServers={bootstrap}",
        f"Topic={topic}",
        f"ActiveBroker={active.arn}",
        f"ActiveLogin={active.secret}",
    )
    with esm_up(tmp_path, template, *args) as (up, client):
        assert {k for k, (a, _) in up.actions().items() if a == "created"} == {
            "ConsumerFromKafka",
            "ConsumerFromRabbit",
            "ConsumerFromActive",
        }
        marker = uuid.uuid4().hex
        produce(bootstrap, topic, [(b"k", f"kafka-{marker}".encode(), None)])
        rabbit.publish(f"{stack}-jobs", [f"rabbit-{marker}"])
        active.publish(f"{stack}-jobs", [f"active-{marker}"])
        wanted = {f"{kind}-{marker}" for kind in ("kafka", "rabbit", "active")}
        wait_for(lambda: wanted <= {r["text"] for r in _received(out)}, timeout=60)
        states = {m["State"] for m in client.list_event_source_mappings()["EventSourceMappings"]}
        assert states == {"Enabled"}


def _updating_app(events: str) -> str:
    return f"""\
Transform: AWS::Serverless-2016-10-31
Resources:
  First: {{Type: AWS::SQS::Queue}}
  Second: {{Type: AWS::SQS::Queue}}
  Third: {{Type: AWS::SQS::Queue}}
  Fourth: {{Type: AWS::SQS::Queue}}
  Fifth: {{Type: AWS::SQS::Queue}}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      CodeUri: src/
      Handler: app.handler
      Environment: {{Variables: {{OUT: /dev/null}}}}
      Events:
{events}"""


V1 = """\
        Kept: {Type: SQS, Properties: {Queue: !GetAtt First.Arn, BatchSize: 5}}
        Moved: {Type: SQS, Properties: {Queue: !GetAtt Second.Arn, Enabled: false}}
        Dropped: {Type: SQS, Properties: {Queue: !GetAtt Third.Arn}}
"""
V2 = """\
        Kept:
          Type: SQS
          Properties:
            Queue: !GetAtt First.Arn
            BatchSize: 7
            FilterCriteria: {Filters: [{Pattern: '{"body": ["go"]}'}]}
        Moved: {Type: SQS, Properties: {Queue: !GetAtt Fourth.Arn, Enabled: false}}
        # the queue of the event taken out: that mapping goes first (one mapping per queue and function)
        Added: {Type: SQS, Properties: {Queue: !GetAtt Third.Arn, MaximumBatchingWindowInSeconds: 2}}
"""


@pytest.mark.service("moto")
def test_a_changed_template_updates_replaces_creates_and_deletes_only_the_stacks_mappings(
    tmp_path: Path,
) -> None:
    moto = require_service("moto", endpoint_for("moto"))
    stack = f"u{uuid.uuid4().hex[:8]}"
    common = ("--aws-endpoint-url", moto, "--create-resources", "--stack-name", stack)
    template = _app(tmp_path, _updating_app(V1))
    with esm_up(tmp_path, template, *common) as (up, client):
        first = up.actions()
        assert {k: a for k, (a, _) in first.items()} == {
            "WorkerKept": "created",
            "WorkerMoved": "created",
            "WorkerDropped": "created",
        }
        # a mapping of the same function made through the API: not the stack's
        other = client.create_event_source_mapping(
            FunctionName=f"{stack}-Worker",
            EventSourceArn=f"arn:aws:sqs:us-east-1:123456789012:{stack}-Fifth",
            BatchSize=3,
        )["UUID"]

    template.write_text(_updating_app(V2))
    with esm_up(tmp_path, template, *common) as (up, client):
        second = up.actions()
        assert {k: a for k, (a, _) in second.items()} == {
            "WorkerKept": "updated",
            "WorkerMoved": "replaced",
            "WorkerAdded": "created",
            "WorkerDropped": "deleted",
        }
        assert second["WorkerKept"][1] == first["WorkerKept"][1]  # updated in place: the same mapping
        assert second["WorkerMoved"][1] != first["WorkerMoved"][1]
        kept = client.get_event_source_mapping(UUID=first["WorkerKept"][1])
        assert kept["BatchSize"] == 7
        assert kept["FilterCriteria"] == {"Filters": [{"Pattern": '{"body": ["go"]}'}]}
        moved = client.get_event_source_mapping(UUID=second["WorkerMoved"][1])
        assert moved["EventSourceArn"].endswith(f":{stack}-Fourth")
        assert moved["State"] == "Disabled"
        added = client.get_event_source_mapping(UUID=second["WorkerAdded"][1])
        assert added["MaximumBatchingWindowInSeconds"] == 2
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_event_source_mapping(UUID=first["WorkerDropped"][1])
        untouched = client.get_event_source_mapping(UUID=other)
        assert (untouched["BatchSize"], untouched["State"]) == (3, "Enabled")

    with esm_up(tmp_path, template, *common) as (up, client):
        assert {a for a, _ in up.actions().values()} == {"unchanged"}
        assert len(client.list_event_source_mappings()["EventSourceMappings"]) == 4

    template.write_text(_updating_app(V2.replace("            BatchSize: 7\n", "")))
    with esm_up(tmp_path, template, *common) as (up, client):
        assert up.actions()["WorkerKept"][0] == "updated"
        # a property taken out of the template goes back to its default, as CloudFormation does
        assert client.get_event_source_mapping(UUID=first["WorkerKept"][1])["BatchSize"] == 10
