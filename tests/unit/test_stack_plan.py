"""`esm up --plan` on real-world templates (tests/stack/templates/, one app per source kind, written in
the styles of public SAM examples): every request, function and resource checked field by field."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from stack.physical import Where, physical
from stack.plan import StackPlan, build_plan
from stack.template import expand

TEMPLATES = Path(__file__).resolve().parent.parent / "stack" / "templates"
REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(autouse=True)
def _no_esm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's ARNs and queue URLs come from the command line alone (ESM_ENDPOINTS would move a URL)."""
    for key in [k for k in os.environ if k.startswith("ESM_")]:
        monkeypatch.delenv(key)


@dataclass
class Plan:
    #: (kind, logical id) of each line, in printed order
    order: list[tuple[str, str]]
    mappings: dict[str, Any]
    functions: dict[str, Any]
    resources: dict[str, Any]


def template_of(app: str) -> Path:
    return TEMPLATES / app / ("template.json" if app == "dynamodb" else "template.yaml")


def run_up(template: Path, stack: str, overrides: tuple[str, ...]) -> int:
    args = ["up", "--plan", str(template), "--stack-name", stack, "--region", REGION, "--account-id", ACCOUNT]
    if overrides:
        args += ["--parameter-overrides", *overrides]
    try:
        main(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def plan(capsys: pytest.CaptureFixture[str], app: str, stack: str, *overrides: str) -> Plan:
    status = run_up(template_of(app), stack, overrides)
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    found = Plan([], {}, {}, {})
    for line in out.splitlines():
        data = json.loads(line)
        ((kind, body),) = ((k, v) for k, v in data.items() if k != "LogicalId")
        found.order.append((kind, data["LogicalId"]))
        group = {
            "CreateEventSourceMapping": found.mappings,
            "Function": found.functions,
            "Resource": found.resources,
        }[kind]
        assert data["LogicalId"] not in group
        group[data["LogicalId"]] = body
    return found


def sqs_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def sqs_url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"


def role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def tags(stack: str, logical_id: str, **more: str) -> dict[str, str]:
    return {**more, "esm:stack": stack, "esm:logical-id": logical_id}


def code(app: str, folder: str = "src") -> str:
    return str(TEMPLATES / app / folder)


# --- SQS: standard and FIFO queues, dead-letter queues, filters as YAML and as JSON text -----------------

SQS_ORDERS_FILTERS = [
    {"Pattern": '{"body": {"type": ["order_placed", "order_updated"], "total": [{"numeric": [">", 0]}]}}'},
    {"Pattern": '{"body": {"type": ["order_cancelled"]}}'},
]


def test_sqs_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "sqs", "shop")
    assert p.mappings == {
        "OrdersFunctionOrders": {
            "EventSourceArn": sqs_arn("shop-OrdersQueue"),
            "FunctionName": "shop-OrdersFunction",
            "BatchSize": 25,
            "MaximumBatchingWindowInSeconds": 5,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
            "FilterCriteria": {"Filters": SQS_ORDERS_FILTERS},
            "Tags": tags("shop", "OrdersFunctionOrders"),
        },
        "PaymentsFunctionPayments": {
            "EventSourceArn": sqs_arn("shop-PaymentsQueue.fifo"),
            "FunctionName": "shop-PaymentsFunction",
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "FilterCriteria": {
                "Filters": [{"Pattern": '{"attributes": {"MessageGroupId": [{"prefix": "card-"}]}}'}]
            },
            "Tags": tags("shop", "PaymentsFunctionPayments"),
        },
        "NotifierFunctionDeadLetters": {
            "EventSourceArn": sqs_arn("shop-OrdersDeadLetterQueue"),
            "FunctionName": "shop-NotifierFunction",
            "Enabled": False,
            "Tags": tags("shop", "NotifierFunctionDeadLetters"),
        },
    }
    # a YAML pattern becomes the JSON text the API takes; it still says what the YAML said
    assert json.loads(SQS_ORDERS_FILTERS[0]["Pattern"]) == {
        "body": {"type": ["order_placed", "order_updated"], "total": [{"numeric": [">", 0]}]}
    }


def test_sqs_functions_take_globals_and_override_them(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "sqs", "shop")
    shared = {"STAGE": "dev", "LOG_LEVEL": "DEBUG", "POWERTOOLS_SERVICE_NAME": "shop"}
    assert p.functions == {
        "OrdersFunction": {
            "FunctionName": "shop-OrdersFunction",
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "CodeUri": code("sqs"),
            "Timeout": 30,
            "MemorySize": 512,
            "Environment": {
                "Variables": {
                    **shared,
                    "DLQ_URL": sqs_url("shop-OrdersDeadLetterQueue"),
                    # nested Fn::Sub: a variables map whose values are a Fn::Sub and a Fn::GetAtt
                    "DLQ_NAME": f"arn:aws:sqs:{REGION}:{ACCOUNT}/shop-OrdersDeadLetterQueue",
                }
            },
            "Role": role("shop-OrdersFunctionRole"),
            "Runnable": True,
        },
        "PaymentsFunction": {
            "FunctionName": "shop-PaymentsFunction",
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "CodeUri": code("sqs"),
            "Timeout": 60,
            "MemorySize": 512,
            "Environment": {"Variables": {**shared, "LOG_LEVEL": "WARNING", "TABLE_PREFIX": "shop-dev"}},
            "ReservedConcurrentExecutions": 5,
            "Role": role("shop-PaymentsFunctionRole"),
            "Runnable": True,
        },
        "NotifierFunction": {
            "FunctionName": "shop-NotifierFunction",
            "Runtime": "nodejs20.x",
            "Handler": "index.handler",
            "CodeUri": code("sqs", "notifier"),
            "Timeout": 30,
            "MemorySize": 128,
            "Environment": {"Variables": shared},
            "Role": role("shop-NotifierFunctionRole"),
            "Runnable": False,
            "NotRunnable": "runtime nodejs20.x is not runnable yet "
            "(the engine runs Python functions in-process)",
        },
    }


def test_sqs_dead_letter_queues_come_before_their_queues(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "sqs", "shop")
    assert p.order == [
        ("CreateEventSourceMapping", "OrdersFunctionOrders"),
        ("CreateEventSourceMapping", "PaymentsFunctionPayments"),
        ("CreateEventSourceMapping", "NotifierFunctionDeadLetters"),
        ("Function", "OrdersFunction"),
        ("Function", "PaymentsFunction"),
        ("Function", "NotifierFunction"),
        # the template declares each queue before its dead-letter queue
        ("Resource", "OrdersDeadLetterQueue"),
        ("Resource", "OrdersQueue"),
        ("Resource", "PaymentsDeadLetterQueue"),
        ("Resource", "PaymentsQueue"),
    ]
    assert p.resources == {
        "OrdersDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Name": "shop-OrdersDeadLetterQueue",
            "Ref": sqs_url("shop-OrdersDeadLetterQueue"),
            "Arn": sqs_arn("shop-OrdersDeadLetterQueue"),
            "Properties": {"MessageRetentionPeriod": 1209600},
        },
        "OrdersQueue": {
            "Type": "AWS::SQS::Queue",
            "Name": "shop-OrdersQueue",
            "Ref": sqs_url("shop-OrdersQueue"),
            "Arn": sqs_arn("shop-OrdersQueue"),
            "Properties": {
                "VisibilityTimeout": 180,
                "RedrivePolicy": {
                    "deadLetterTargetArn": sqs_arn("shop-OrdersDeadLetterQueue"),
                    "maxReceiveCount": 5,
                },
            },
        },
        "PaymentsDeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Name": "shop-payments-dlq.fifo",
            "Ref": sqs_url("shop-payments-dlq.fifo"),
            "Arn": sqs_arn("shop-payments-dlq.fifo"),
            "Properties": {"QueueName": "shop-payments-dlq.fifo", "FifoQueue": True},
        },
        "PaymentsQueue": {
            "Type": "AWS::SQS::Queue",
            "Name": "shop-PaymentsQueue.fifo",
            "Ref": sqs_url("shop-PaymentsQueue.fifo"),
            "Arn": sqs_arn("shop-PaymentsQueue.fifo"),
            "Properties": {
                "FifoQueue": True,
                "ContentBasedDeduplication": True,
                "VisibilityTimeout": 180,
                "RedrivePolicy": {
                    "deadLetterTargetArn": sqs_arn("shop-payments-dlq.fifo"),
                    "maxReceiveCount": 3,
                },
            },
        },
    }


@pytest.mark.parametrize(
    "overrides",
    [
        ("Stage=prod", "OrdersBatchSize=100"),
        ("ParameterKey=Stage,ParameterValue=prod", "ParameterKey=OrdersBatchSize,ParameterValue=100"),
    ],
    ids=["key-value", "sam-style"],
)
def test_sqs_parameter_overrides(capsys: pytest.CaptureFixture[str], overrides: tuple[str, ...]) -> None:
    p = plan(capsys, "sqs", "shop", *overrides)
    orders = p.mappings["OrdersFunctionOrders"]
    # the Number parameter arrives as a number; the mapping's stage row is prod's
    assert (orders["BatchSize"], orders["ScalingConfig"]) == (100, {"MaximumConcurrency": 50})
    assert p.functions["OrdersFunction"]["Environment"]["Variables"]["STAGE"] == "prod"
    assert p.functions["OrdersFunction"]["Environment"]["Variables"]["LOG_LEVEL"] == "INFO"
    assert p.functions["PaymentsFunction"]["Environment"]["Variables"] == {
        "STAGE": "prod",
        "LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "shop",
        "TABLE_PREFIX": "shop-prod",
    }


def test_sqs_plan_knows_which_mappings_run() -> None:
    built = _built("sqs", "shop")
    runs = {m.logical_id: (m.function, built.runnable(m)) for m in built.mappings}
    assert runs == {
        "OrdersFunctionOrders": ("OrdersFunction", True),
        "PaymentsFunctionPayments": ("PaymentsFunction", True),
        "NotifierFunctionDeadLetters": ("NotifierFunction", False),
    }


def test_a_derived_fifo_queue_name_keeps_within_80_characters() -> None:
    where = Where(REGION, ACCOUNT, "s" * 100)
    name = physical("PaymentsQueue", "AWS::SQS::Queue", None, {"FifoQueue": True}, where).name
    assert len(name) == 80
    assert name.startswith("s" * 37) and name.endswith("-PaymentsQueue.fifo")


# --- Kinesis: every stream setting, failures sent to SQS and to SNS, AT_TIMESTAMP ------------------------

KINESIS_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/staging-clicks-{REGION}"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:clicks-FailedBatchesTopic"


def test_kinesis_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "kinesis", "clicks")
    assert p.mappings == {
        "AggregateFunctionClicks": {
            "EventSourceArn": KINESIS_ARN,
            "FunctionName": "clicks-AggregateFunction",
            "StartingPosition": "LATEST",
            "BatchSize": 500,
            "MaximumBatchingWindowInSeconds": 10,
            "ParallelizationFactor": 4,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 3,
            "MaximumRecordAgeInSeconds": 3600,
            "TumblingWindowInSeconds": 60,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            # SAM's Type: SQS is SAM's own (it writes the policy): the request names only the ARN
            "DestinationConfig": {"OnFailure": {"Destination": sqs_arn("clicks-failed-batches")}},
            "Tags": tags("clicks", "AggregateFunctionClicks"),
        },
        "ReplayFunctionReplay": {
            "EventSourceArn": KINESIS_ARN,
            "FunctionName": "clicks-ReplayFunction",
            "StartingPosition": "AT_TIMESTAMP",
            "StartingPositionTimestamp": 1704067200,
            "BatchSize": 100,
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {"Destination": TOPIC_ARN}},
            "Tags": tags("clicks", "ReplayFunctionReplay"),
        },
    }


def test_kinesis_functions_and_resources(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "kinesis", "clicks")
    shared = {"ENVIRONMENT": "staging", "STREAM_NAME": f"staging-clicks-{REGION}"}
    assert p.functions == {
        "AggregateFunction": {
            "FunctionName": "clicks-AggregateFunction",
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "CodeUri": code("kinesis"),
            "Timeout": 120,
            "MemorySize": 1024,
            "Environment": {"Variables": shared},
            "Role": role("clicks-AggregateFunctionRole"),
            "Runnable": True,
        },
        "ReplayFunction": {
            "FunctionName": "clicks-ReplayFunction",
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "CodeUri": code("kinesis"),
            "Timeout": 120,
            "MemorySize": 256,
            "Environment": {"Variables": {**shared, "ALERT_TOPIC": TOPIC_ARN}},
            "Role": role("clicks-ReplayFunctionRole"),
            "Runnable": True,
        },
    }
    assert [lid for kind, lid in p.order if kind == "Resource"] == [
        "ClickStream",
        "FailedBatchesQueue",
        "FailedBatchesTopic",
    ]
    assert p.resources == {
        "ClickStream": {
            "Type": "AWS::Kinesis::Stream",
            "Name": f"staging-clicks-{REGION}",
            "Ref": f"staging-clicks-{REGION}",
            "Arn": KINESIS_ARN,
            "Properties": {"Name": f"staging-clicks-{REGION}", "ShardCount": 2, "RetentionPeriodHours": 48},
        },
        "FailedBatchesQueue": {
            "Type": "AWS::SQS::Queue",
            "Name": "clicks-failed-batches",
            "Ref": sqs_url("clicks-failed-batches"),
            "Arn": sqs_arn("clicks-failed-batches"),
            "Properties": {"QueueName": "clicks-failed-batches"},
        },
        # a topic's Ref is its ARN (its attribute is TopicArn, not Arn)
        "FailedBatchesTopic": {
            "Type": "AWS::SNS::Topic",
            "Name": "clicks-FailedBatchesTopic",
            "Ref": TOPIC_ARN,
            "Arn": TOPIC_ARN,
            "Properties": {},
        },
    }


def test_kinesis_parameter_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "kinesis", "clicks", "Environment=production", "ReplayFrom=1717200000")
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/production-clicks-{REGION}"
    aggregate, replay = p.mappings["AggregateFunctionClicks"], p.mappings["ReplayFunctionReplay"]
    assert (aggregate["EventSourceArn"], aggregate["ParallelizationFactor"]) == (stream, 10)
    assert (replay["EventSourceArn"], replay["StartingPositionTimestamp"]) == (stream, 1717200000)
    assert p.resources["ClickStream"]["Properties"] == {
        "Name": f"production-clicks-{REGION}",
        "ShardCount": 8,
        "RetentionPeriodHours": 48,
    }


# --- DynamoDB (a JSON template): Conditions choose the batch size, the functions, the Enabled flag -------

TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders-OrdersTable"
STREAM_ARN = f"{TABLE_ARN}/stream/created-with-the-table"


def dynamodb_function(logical_id: str, env: str, **more: Any) -> dict[str, Any]:
    return {
        "FunctionName": f"orders-{logical_id}",
        "Runtime": "python3.13",
        "Handler": "app.handler",
        "CodeUri": code("dynamodb"),
        "Timeout": 15,
        "MemorySize": 256,
        "Environment": {"Variables": {"TABLE": "orders-OrdersTable", "ENV": env}},
        **more,
        "Role": role(f"orders-{logical_id}Role"),
        "Runnable": True,
    }


def test_dynamodb_dev(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "dynamodb", "orders")
    assert p.mappings == {
        "ProjectionFunctionOrderChanges": {
            "EventSourceArn": STREAM_ARN,
            "FunctionName": "orders-ProjectionFunction",
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 10,
            "MaximumRetryAttempts": 5,
            "BisectBatchOnFunctionError": True,
            "FilterCriteria": {"Filters": [{"Pattern": '{"eventName": ["INSERT", "MODIFY"]}'}]},
            "Tags": tags("orders", "ProjectionFunctionOrderChanges"),
        },
        "DebugFunctionTail": {
            "EventSourceArn": STREAM_ARN,
            "FunctionName": "orders-DebugFunction",
            "StartingPosition": "LATEST",
            "Enabled": True,
            "Tags": tags("orders", "DebugFunctionTail"),
        },
    }
    # AuditFunction's condition is false: neither it nor its mapping is planned
    assert p.functions == {
        "ProjectionFunction": dynamodb_function("ProjectionFunction", "dev"),
        "DebugFunction": dynamodb_function("DebugFunction", "dev"),
    }
    assert p.resources == {
        "OrdersTable": {
            "Type": "AWS::DynamoDB::Table",
            "Name": "orders-OrdersTable",
            "Ref": "orders-OrdersTable",
            "Arn": TABLE_ARN,
            # TableName: Fn::If [HasTableName, ..., AWS::NoValue] leaves no TableName
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            },
        }
    }


def test_dynamodb_prod(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "dynamodb", "orders", "Env=prod")
    assert p.order[:3] == [
        ("CreateEventSourceMapping", "ProjectionFunctionOrderChanges"),
        ("CreateEventSourceMapping", "AuditFunctionAudit"),
        ("CreateEventSourceMapping", "DebugFunctionTail"),
    ]
    assert p.mappings["ProjectionFunctionOrderChanges"]["BatchSize"] == 1000
    assert p.mappings["AuditFunctionAudit"] == {
        "EventSourceArn": STREAM_ARN,
        "FunctionName": "orders-AuditFunction",
        "StartingPosition": "LATEST",
        "FilterCriteria": {"Filters": [{"Pattern": '{"eventName": ["REMOVE"]}'}]},
        "Tags": tags("orders", "AuditFunctionAudit"),
    }
    # the debugging tail is declared but disabled in prod
    assert p.mappings["DebugFunctionTail"]["Enabled"] is False
    assert p.functions == {
        "ProjectionFunction": dynamodb_function(
            "ProjectionFunction", "prod", ReservedConcurrentExecutions=20
        ),
        "AuditFunction": dynamodb_function("AuditFunction", "prod"),
        "DebugFunction": dynamodb_function("DebugFunction", "prod"),
    }


def test_dynamodb_table_named_by_a_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "dynamodb", "orders", "TableName=ledger")
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ledger"
    assert {m["EventSourceArn"] for m in p.mappings.values()} == {f"{arn}/stream/created-with-the-table"}
    table = p.resources["OrdersTable"]
    assert (table["Name"], table["Ref"], table["Arn"]) == ("ledger", "ledger", arn)
    assert table["Properties"]["TableName"] == "ledger"
    assert p.functions["ProjectionFunction"]["Environment"]["Variables"]["TABLE"] == "ledger"


# --- MSK, self-managed Kafka, RabbitMQ ------------------------------------------------------------------

MSK_CLUSTER = f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/inventory/6f3b2a1c-0d4e-4f5a-9b8c-7d6e5f4a3b2c-3"


def test_msk(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "msk", "stock")
    assert p.mappings == {
        "InventoryFunctionUpdates": {
            "EventSourceArn": MSK_CLUSTER,
            "FunctionName": "stock-InventoryFunction",
            "Topics": ["inventory.updates"],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 200,
            "MaximumBatchingWindowInSeconds": 2,
            # SAM's ConsumerGroupId goes where the API wants it
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "stock-inventory"},
            "SourceAccessConfigurations": [
                {
                    "Type": "SASL_SCRAM_512_AUTH",
                    "URI": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:AmazonMSK_inventory",
                }
            ],
            "Tags": tags("stock", "InventoryFunctionUpdates"),
        }
    }
    assert p.functions == {
        "InventoryFunction": {
            "FunctionName": "stock-InventoryFunction",
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "CodeUri": code("msk"),
            "Timeout": 60,
            "MemorySize": 512,
            "Environment": {"Variables": {"CLUSTER_NAME": "inventory"}},
            "Role": role("stock-InventoryFunctionRole"),
            "Runnable": True,
        }
    }
    assert p.resources == {}


def test_msk_cluster_from_an_override(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = (
        f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/staging-inventory/0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9-1"
    )
    p = plan(capsys, "msk", "stock", f"MskClusterArn={cluster}", "TopicName=inventory.v2")
    mapping = p.mappings["InventoryFunctionUpdates"]
    assert (mapping["EventSourceArn"], mapping["Topics"]) == (cluster, ["inventory.v2"])
    assert p.functions["InventoryFunction"]["Environment"] == {
        "Variables": {"CLUSTER_NAME": "staging-inventory"}
    }


KAFKA_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:payments-KafkaCredentials"


def test_self_managed_kafka(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "kafka", "payments")
    assert p.mappings == {
        "PaymentsConsumerPayments": {
            "FunctionName": "payments-PaymentsConsumer",
            # CloudFormation's KafkaBootstrapServers, spelt as the API spells it; list items trimmed
            "SelfManagedEventSource": {
                "Endpoints": {
                    "KAFKA_BOOTSTRAP_SERVERS": [
                        "broker-1.kafka.internal:9096",
                        "broker-2.kafka.internal:9096",
                    ]
                }
            },
            "Topics": ["payments"],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 50,
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "payments-consumer"},
            "SourceAccessConfigurations": [{"Type": "SASL_SCRAM_512_AUTH", "URI": KAFKA_SECRET}],
            "Tags": tags("payments", "PaymentsConsumerPayments"),
        }
    }
    assert p.functions == {
        "PaymentsConsumer": {
            "FunctionName": "payments-PaymentsConsumer",
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "CodeUri": code("kafka"),
            "Timeout": 30,
            "Role": role("payments-PaymentsConsumerRole"),
            "Runnable": True,
        }
    }
    # the secret is not a source or a destination: nothing to create
    assert p.resources == {}


def test_self_managed_kafka_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "kafka", "payments", "BootstrapServers=localhost:9092,localhost:9093")
    endpoints = p.mappings["PaymentsConsumerPayments"]["SelfManagedEventSource"]["Endpoints"]
    assert endpoints == {"KAFKA_BOOTSTRAP_SERVERS": ["localhost:9092", "localhost:9093"]}


def test_self_managed_kafka_secret_is_read_from_the_template() -> None:
    built = _built("kafka", "payments", KafkaUser="svc", KafkaPassword="s3cret")
    assert dict(built.secrets) == {KAFKA_SECRET: {"username": "svc", "password": "s3cret"}}


BROKER_ARN = f"arn:aws:mq:{REGION}:{ACCOUNT}:broker:shipping:b-9f2d5a61-3c7e-4b08-a1d2-6e5f4c3b2a19"


def test_rabbitmq(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "mq", "shipping")
    assert p.mappings == {
        "ShippingFunctionNotifications": {
            "EventSourceArn": BROKER_ARN,
            # AutoPublishAlias: SAM points the mapping at the alias, the function's ARN qualified by it
            "FunctionName": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:shipping-ShippingFunction:live",
            "Queues": ["shipping.notifications"],
            "BatchSize": 20,
            "MaximumBatchingWindowInSeconds": 1,
            "SourceAccessConfigurations": [
                {
                    "Type": "BASIC_AUTH",
                    "URI": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:shipping-broker-AbCdEf",
                },
                {"Type": "VIRTUAL_HOST", "URI": "/shipping"},
            ],
            "Tags": tags("shipping", "ShippingFunctionNotifications"),
        }
    }
    assert p.functions == {
        "ShippingFunction": {
            "FunctionName": "shipping-ShippingFunction",
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "CodeUri": code("mq"),
            "Timeout": 20,
            "MemorySize": 256,
            "Role": role("shipping-ShippingFunctionRole"),
            "Runnable": True,
        }
    }
    assert p.resources == {}


def test_rabbitmq_alias_mapping_runs_the_template_function() -> None:
    built = _built("mq", "shipping")
    assert [(m.function, built.runnable(m)) for m in built.mappings] == [("ShippingFunction", True)]


def test_rabbitmq_virtual_host_override(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "mq", "shipping", "VirtualHost=/")
    access = p.mappings["ShippingFunctionNotifications"]["SourceAccessConfigurations"]
    assert access[1] == {"Type": "VIRTUAL_HOST", "URI": "/"}


# --- plain CloudFormation: an inline function and its own mapping ---------------------------------------


def test_plain_cloudformation(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "cfn", "ingest")
    assert p.order == [
        ("CreateEventSourceMapping", "IngestMapping"),
        ("Function", "IngestFunction"),
        ("Resource", "IngestQueue"),
    ]
    assert p.mappings == {
        "IngestMapping": {
            "EventSourceArn": sqs_arn("ingest-ingest"),
            "FunctionName": "ingest-ingest",
            "BatchSize": 10,
            "Enabled": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"source": ["web", "mobile"]}}'}]},
            # the template's tags become the API's map, the stack's beside them
            "Tags": tags("ingest", "IngestMapping", team="ingest"),
        }
    }
    assert p.functions == {
        "IngestFunction": {
            "FunctionName": "ingest-ingest",
            "Runtime": "python3.12",
            "Handler": "index.handler",
            "InlineCode": 'def handler(event, context):\n    return {"batchItemFailures": []}\n',
            "Timeout": 10,
            "MemorySize": 128,
            "Environment": {
                "Variables": {
                    "QUEUE_URL": sqs_url("ingest-ingest"),
                    "QUEUE_ARN": sqs_arn("ingest-ingest"),
                    "REGION_CODE": "eu",
                }
            },
            "ReservedConcurrentExecutions": 2,
            "Role": role("ingest-IngestRole"),
            "Runnable": True,
        }
    }
    assert p.resources == {
        "IngestQueue": {
            "Type": "AWS::SQS::Queue",
            "Name": "ingest-ingest",
            "Ref": sqs_url("ingest-ingest"),
            "Arn": sqs_arn("ingest-ingest"),
            "Properties": {"QueueName": "ingest-ingest", "VisibilityTimeout": 60},
        }
    }


def test_plain_cloudformation_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    p = plan(capsys, "cfn", "ingest", "BatchSize=500", "ServiceFqdn=ingest.ap.example.com")
    assert p.mappings["IngestMapping"]["BatchSize"] == 500
    assert p.functions["IngestFunction"]["Environment"]["Variables"]["REGION_CODE"] == "ap"


# --- what the engine cannot run: exit status 2, one line naming resource, property and why -------------


def _edited(tmp_path: Path, app: str, old: str = "", new: str = "") -> Path:
    """A copy of `app` with `old` (found exactly once) replaced by `new`."""
    folder = shutil.copytree(TEMPLATES / app, tmp_path / app)
    template = folder / template_of(app).name
    if old:
        text = template.read_text()
        assert text.count(old) == 1, old
        template.write_text(text.replace(old, new))
    return template


@pytest.mark.parametrize(
    ("app", "overrides", "why"),
    [
        pytest.param(
            "kinesis",
            ("Environment=production", "Nope=1"),
            "Parameters: override 'Nope' names no parameter of the template "
            "(parameters: Environment, ReplayFrom)",
            id="unknown-override",
        ),
        pytest.param(
            "sqs",
            ("Stage=qa",),
            "Parameters.Stage: 'qa' is not one of AllowedValues: dev, prod",
            id="not-an-allowed-value",
        ),
        pytest.param(
            "sqs", ("Stage",), "--parameter-overrides: 'Stage' is not KEY=VALUE", id="not-key-value"
        ),
    ],
)
def test_bad_overrides(
    capsys: pytest.CaptureFixture[str], app: str, overrides: tuple[str, ...], why: str
) -> None:
    _assert_refused(capsys, template_of(app), overrides, why)


@pytest.mark.parametrize(
    ("app", "old", "new", "why"),
    [
        pytest.param(
            "kinesis",
            "QueueName: !Join ['-', [!Ref AWS::StackName, failed, batches]]",
            "QueueName: !ImportValue shared-failed-batches-queue",
            "Resources.FailedBatchesQueue.Properties.QueueName: Fn::ImportValue is not supported "
            "(cross-stack exports do not exist locally)",
            id="import-value",
        ),
        pytest.param(
            "kinesis",
            "Destination: !GetAtt FailedBatchesQueue.Arn",
            "Destination: !GetAtt FailedBatchesQueue.Url",
            "Resources.AggregateFunctionClicks.Properties.DestinationConfig.OnFailure.Destination: "
            "Fn::GetAtt FailedBatchesQueue.Url: 'FailedBatchesQueue' has no attribute 'Url' "
            "(known: Arn, QueueName, QueueUrl)",
            id="unknown-attribute",
        ),
        pytest.param(
            "cfn",
            "Role: !GetAtt IngestRole.Arn",
            "Role: !GetAtt IngestRole.RoleArn",
            "Resources.IngestFunction.Properties.Role: Fn::GetAtt IngestRole.RoleArn: "
            "'IngestRole' has no attribute 'RoleArn' (known: Arn, RoleId)",
            id="unknown-attribute-plain-cloudformation",
        ),
        pytest.param(
            "kinesis",
            "Transform: AWS::Serverless-2016-10-31",
            "Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]",
            "Transform: only AWS::Serverless-2016-10-31 is run locally, not AWS::LanguageExtensions",
            id="unknown-transform",
        ),
        pytest.param(
            "sqs",
            "CodeUri: notifier/",
            "CodeUri: notifer/",
            "Resources.NotifierFunction.Properties.CodeUri: {dir}/notifer is not a folder",
            id="missing-code-folder",
        ),
        pytest.param(
            "kinesis",
            "TumblingWindowInSeconds: 60",
            "TumblingWindowInSecond: 60",
            "SAM's transform refused the template: Resource with id [AggregateFunctionClicks] is invalid. "
            "property TumblingWindowInSecond not defined for resource of type Kinesis",
            id="sam-event-property-typo",
        ),
        pytest.param(
            "kinesis",
            "StartingPosition: LATEST",
            "StartingPosition: TRIM_HORIZN",
            "cfn-lint: Resources.AggregateFunctionClicks.Properties.StartingPosition: 'TRIM_HORIZN' does not "
            "match '(LATEST|TRIM_HORIZON|AT_TIMESTAMP)+' (cfn-lint E3031)",
            id="cfn-lint-sam",
        ),
        pytest.param(
            "cfn",
            "      Enabled: true\n",
            "      Enabled: true\n      StartingPosition: TRIM_HORIZN\n",
            "cfn-lint: Resources.IngestMapping.Properties.StartingPosition: 'TRIM_HORIZN' does not "
            "match '(LATEST|TRIM_HORIZON|AT_TIMESTAMP)+' (cfn-lint E3031)",
            id="cfn-lint-plain-cloudformation",
        ),
        pytest.param(
            "msk",
            "URI: !Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "${ScramSecretName}",
            "URI: '{{resolve:ssm:/inventory/scram-secret-arn}}'",
            "Resources.InventoryFunctionUpdates.Properties.SourceAccessConfigurations[0].URI: "
            "dynamic reference {{resolve:ssm:...}} is not supported (no AWS lookups)",
            id="dynamic-reference",
        ),
        pytest.param(
            "msk",
            "  TopicName:\n    Type: String",
            "  TopicName:\n    Type: AWS::SSM::Parameter::Value<String>",
            "Parameters.TopicName: parameter 'TopicName' is read from SSM Parameter Store, which the engine "
            "does not read: give its value with --parameter-overrides TopicName=VALUE",
            id="ssm-parameter-type",
        ),
    ],
)
def test_refused_templates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, app: str, old: str, new: str, why: str
) -> None:
    template = _edited(tmp_path, app, old, new)
    _assert_refused(capsys, template, (), why.replace("{dir}", str(template.parent)))


def test_the_unedited_templates_are_accepted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The edits above are what the errors are about: a plain copy plans."""
    for app in ("sqs", "kinesis", "cfn"):
        assert run_up(_edited(tmp_path / "copy", app), "copy", ()) == 0
    assert capsys.readouterr().err == ""


def test_an_ssm_parameter_takes_its_value_from_an_override(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    template = _edited(
        tmp_path,
        "msk",
        "  TopicName:\n    Type: String",
        "  TopicName:\n    Type: AWS::SSM::Parameter::Value<String>",
    )
    assert run_up(template, "stock", ("TopicName=inventory.v3",)) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["CreateEventSourceMapping"]["Topics"] == ["inventory.v3"]


def test_a_stack_name_cloudformation_would_refuse_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    template = template_of("sqs")
    status = run_up(template, "1-orders", ())
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.startswith(f"esm up: {template}: stack name '1-orders': a letter, then letters")


def test_a_queue_made_fifo_by_a_condition_is_named_as_a_fifo_queue(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Parameters: {Ordered: {Type: String, Default: 'yes'}}\n"
        "Conditions: {IsOrdered: !Equals [!Ref Ordered, 'yes']}\n"
        "Resources:\n"
        "  Jobs: {Type: AWS::SQS::Queue, Properties: {FifoQueue: !If [IsOrdered, true, !Ref AWS::NoValue]}}\n"
    )
    for ordered, name in (("yes", "s-Jobs.fifo"), ("no", "s-Jobs")):
        template = expand(
            tmp_path / "template.yaml", region=REGION, account_id=ACCOUNT, stack_name="s", overrides={}
        )
        plan = build_plan(template, Where(REGION, ACCOUNT, "s"), {"Ordered": ordered})
        assert plan.physical["Jobs"].name == name


def _assert_refused(
    capsys: pytest.CaptureFixture[str], template: Path, overrides: tuple[str, ...], why: str
) -> None:
    status = run_up(template, "broken", overrides)
    out, err = capsys.readouterr()
    assert (status, out, err.splitlines()) == (2, "", [f"esm up: {template}: {why}"])


def _built(app: str, stack: str, **overrides: str) -> StackPlan:
    template = expand(
        template_of(app), region=REGION, account_id=ACCOUNT, stack_name=stack, overrides=overrides
    )
    return build_plan(template, Where(REGION, ACCOUNT, stack), overrides)


def test_cloudformation_spellings_become_the_apis(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  Jobs: {Type: AWS::SQS::Queue}\n"
        "  Map:\n"
        "    Type: AWS::Lambda::EventSourceMapping\n"
        "    Properties:\n"
        "      FunctionName: elsewhere\n"
        "      EventSourceArn: !GetAtt Jobs.Arn\n"
        "      KmsKeyArn: arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab\n"
        "      Tags: [{Key: team, Value: shop}]\n"
    )
    template = expand(
        tmp_path / "template.yaml", region=REGION, account_id=ACCOUNT, stack_name="s", overrides={}
    )
    (mapping,) = build_plan(template, Where(REGION, ACCOUNT, "s"), {}).mappings
    assert mapping.request == {
        "FunctionName": "elsewhere",
        "EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:s-Jobs",
        "KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "Tags": {"team": "shop", "esm:stack": "s", "esm:logical-id": "Map"},
    }
    assert mapping.function is None  # a function outside the template


def test_the_readme_example_app_plans_three_runnable_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).parents[2] / "examples" / "sam-app" / "template.yaml"
    assert run_up(example, "sam-app", ("Stage=prod",)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [next(iter(line)) for line in lines] == ["CreateEventSourceMapping"] * 3 + ["Function"] * 2 + [
        "Resource"
    ] * 4
    functions = {line["LogicalId"]: line["Function"] for line in lines if "Function" in line}
    assert functions["OrderFunction"]["ReservedConcurrentExecutions"] == 20
    assert all(f["Runnable"] for f in functions.values())
