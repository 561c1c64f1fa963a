"""The Lambda ESM control plane driven by boto3, the AWS CLI and raw HTTP: shapes, codes, states, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from engine.config import LimitsConfig
from tests.integration.conftest import RunningEngine, esm_test_fns, functions_config, wait_for

FN = "fn-ok"


@pytest.fixture
def queue_arn(sqs_endpoint: str, unique_name: Any) -> str:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=unique_name("api"))["QueueUrl"]
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


@pytest.fixture
def eng(start_engine: Any, sqs_endpoint: str) -> RunningEngine:
    return start_engine(sqs_endpoint)  # type: ignore[no-any-return]


@pytest.fixture
def frozen(start_engine: Any, sqs_endpoint: str) -> RunningEngine:
    """An engine whose supervisor does not run: mappings stay in the state the API gave them."""
    return start_engine(sqs_endpoint, run_supervisor=False)  # type: ignore[no-any-return]


def _raw(
    eng: RunningEngine, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(
        eng.url + path, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_create_get_list_update_delete_shapes_and_codes(eng: RunningEngine, queue_arn: str) -> None:
    lam = eng.lambda_client
    created = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=FN)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    body = {k: v for k, v in created.items() if k != "ResponseMetadata"}
    uuid = body["UUID"]
    assert set(body) == {
        "UUID",
        "BatchSize",
        "EventSourceArn",
        "EventSourceMappingArn",
        "FunctionArn",
        "FunctionResponseTypes",
        "LastModified",
        "MaximumBatchingWindowInSeconds",
        "State",
        "StateTransitionReason",
    }
    assert body["BatchSize"] == 10 and body["MaximumBatchingWindowInSeconds"] == 0
    assert body["FunctionResponseTypes"] == [] and body["State"] == "Creating"
    assert body["StateTransitionReason"] == "USER_INITIATED"
    assert body["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:fn-ok"
    assert (
        body["EventSourceMappingArn"] == f"arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{uuid}"
    )
    eng.wait_state(uuid, "Enabled")
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200 and got["State"] == "Enabled"

    listed = lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert lam.list_event_source_mappings(FunctionName="fn-ok")["EventSourceMappings"][0]["UUID"] == uuid
    assert lam.list_event_source_mappings(
        FunctionName="arn:aws:lambda:us-east-1:123456789012:function:fn-ok"
    )["EventSourceMappings"]
    assert lam.list_event_source_mappings(FunctionName="nope")["EventSourceMappings"] == []
    assert lam.list_event_source_mappings(EventSourceArn=queue_arn + "x")["EventSourceMappings"] == []

    updated = lam.update_event_source_mapping(UUID=uuid, BatchSize=20, MaximumBatchingWindowInSeconds=1)
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (updated["State"], updated["BatchSize"], updated["MaximumBatchingWindowInSeconds"]) == (
        "Updating",
        20,
        1,
    )
    eng.wait_state(uuid, "Enabled")
    deleted = lam.delete_event_source_mapping(UUID=uuid)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202 and deleted["State"] == "Deleting"
    assert deleted["BatchSize"] == 20
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        for _ in range(200):
            lam.get_event_source_mapping(UUID=uuid)
            import time

            time.sleep(0.02)


def test_function_name_forms_keep_their_qualifier(
    eng: RunningEngine, queue_arn: str, sqs_endpoint: str, unique_name: Any
) -> None:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    arns = []
    for i in range(3):
        url = sqs.create_queue(QueueName=unique_name(f"forms{i}"))["QueueUrl"]
        arns.append(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )
    forms = {
        "fn-ok:live": "arn:aws:lambda:us-east-1:123456789012:function:fn-ok:live",
        "123456789012:function:fn-ok": "arn:aws:lambda:us-east-1:123456789012:function:fn-ok",
        "arn:aws:lambda:us-east-1:123456789012:function:fn-ok:$LATEST": (
            "arn:aws:lambda:us-east-1:123456789012:function:fn-ok:$LATEST"
        ),
    }
    for arn, (given, expected) in zip(arns, forms.items(), strict=True):
        resp = eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=given)
        assert resp["FunctionArn"] == expected


def test_disabled_on_create_and_enable_disable_states(frozen: RunningEngine, queue_arn: str) -> None:
    lam = frozen.lambda_client
    created = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=FN, Enabled=False)
    assert created["State"] == "Disabled"
    uuid = created["UUID"]
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    # without the supervisor the mapping stays Enabling: a change now conflicts
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.update_event_source_mapping(UUID=uuid, BatchSize=5)


def test_changes_while_in_transition_are_refused(frozen: RunningEngine, queue_arn: str) -> None:
    lam = frozen.lambda_client
    uuid = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=FN)["UUID"]
    with pytest.raises(lam.exceptions.ResourceInUseException):  # "update ... in the CREATING state"
        lam.update_event_source_mapping(UUID=uuid, BatchSize=5)
    with pytest.raises(lam.exceptions.ResourceInUseException):
        lam.delete_event_source_mapping(UUID=uuid)


def test_duplicate_mapping_is_a_conflict_with_aws_text(eng: RunningEngine, queue_arn: str) -> None:
    lam = eng.lambda_client
    uuid = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=FN)["UUID"]
    with pytest.raises(lam.exceptions.ResourceConflictException) as e:
        lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=FN)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert e.value.response["Error"]["Message"] == (
        f'An event source mapping with SQS arn (" {queue_arn} ") and function (" fn-ok ") already exists. '
        f"Please update or delete the existing mapping with UUID {uuid}"
    )


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"FunctionName": "missing-fn"}, "InvalidParameterValueException", "Function does not exist"),
        (
            {"FilterCriteria": {"Filters": [{"Pattern": "simple string"}]}},
            "InvalidParameterValueException",
            "Invalid filter pattern definition.",
        ),
        (
            {"FilterCriteria": {"Filters": [{"Pattern": '{"body": "x"}'}]}},
            "InvalidParameterValueException",
            "Invalid filter pattern definition.",
        ),
        (
            {"BatchSize": 11},
            "InvalidParameterValueException",
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        ),
        (
            {"StartingPosition": "LATEST"},
            "InvalidParameterValueException",
            "Unsupported StartingPosition parameter for given event source mapping type.",
        ),
        (
            {"ParallelizationFactor": 2},
            "InvalidParameterValueException",
            "Unsupported ParallelizationFactor parameter for given event source mapping type.",
        ),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:x"}}},
            "InvalidParameterValueException",
            "Unsupported DestinationConfig parameter for given event source mapping type.",
        ),
        (
            {"BatchSize": 10001, "MaximumBatchingWindowInSeconds": 1},
            "ValidationException",
            "1 validation error detected: Value '10001' at 'batchSize' failed to satisfy constraint: "
            "Member must have value less than or equal to 10000",
        ),
        (
            {"ScalingConfig": {"MaximumConcurrency": 1}},
            "ValidationException",
            "1 validation error detected: Value '1' at 'scalingConfig.maximumConcurrency' failed to satisfy "
            "constraint: Member must have value greater than or equal to 2",
        ),
    ],
)
def test_create_errors(
    eng: RunningEngine, queue_arn: str, params: dict[str, Any], error: str, message: str
) -> None:
    body = {"EventSourceArn": queue_arn, "FunctionName": FN, **params}
    status, headers, reply = _raw(
        eng, "POST", "/2015-03-31/event-source-mappings/", json.dumps(body).encode()
    )
    assert status == 400
    assert headers["x-amzn-ErrorType"] == error
    assert (reply.get("message") or reply.get("Message")) == message
    assert eng.lambda_client.list_event_source_mappings()["EventSourceMappings"] == []  # nothing changed


def test_errors_raise_the_right_boto3_classes(eng: RunningEngine, queue_arn: str) -> None:
    lam = eng.lambda_client
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Function does not exist"):
        lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="ghost")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match=r"Unrecognized event source\."):
        lam.create_event_source_mapping(FunctionName=FN)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="NonExistentQueue"):
        lam.create_event_source_mapping(EventSourceArn=queue_arn + "-gone", FunctionName=FN)
    with pytest.raises(
        lam.exceptions.ResourceNotFoundException, match=r"The resource you requested does not exist\."
    ):
        lam.get_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000", BatchSize=2)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_event_source_mapping(UUID="ffffffff-0000-0000-0000-000000000000")


def test_malformed_requests_get_4xx_never_500(eng: RunningEngine, queue_arn: str) -> None:
    status, headers, reply = _raw(eng, "POST", "/2015-03-31/event-source-mappings/", b"{not json")
    assert status == 400 and headers["x-amzn-ErrorType"] == "SerializationException" and reply["message"]
    status, _, reply = _raw(eng, "POST", "/2015-03-31/event-source-mappings/", b"[1, 2]")
    assert status == 400
    body = json.dumps({"EventSourceArn": queue_arn, "FunctionName": FN, "BatchSize": "ten"}).encode()
    status, headers, reply = _raw(eng, "POST", "/2015-03-31/event-source-mappings/", body)
    assert (
        status == 400
        and headers["x-amzn-ErrorType"] == "SerializationException"
        and "BatchSize" in reply["message"]
    )
    status, headers, _ = _raw(eng, "GET", "/2015-03-31/event-source-mappings/?MaxItems=0")
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    status, _, _ = _raw(eng, "GET", "/2015-03-31/nothing-here")
    assert status == 404


def test_list_pages_with_marker(eng: RunningEngine, sqs_endpoint: str, unique_name: Any) -> None:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    uuids = []
    for i in range(5):
        url = sqs.create_queue(QueueName=unique_name(f"page{i}"))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        uuids.append(
            eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=FN)["UUID"]
        )
    first = eng.lambda_client.list_event_source_mappings(MaxItems=2)
    assert [m["UUID"] for m in first["EventSourceMappings"]] == uuids[:2] and first["NextMarker"]
    second = eng.lambda_client.list_event_source_mappings(MaxItems=2, Marker=first["NextMarker"])
    assert [m["UUID"] for m in second["EventSourceMappings"]] == uuids[2:4]
    pages = eng.lambda_client.get_paginator("list_event_source_mappings").paginate(
        PaginationConfig={"PageSize": 2}
    )
    assert [m["UUID"] for p in pages for m in p["EventSourceMappings"]] == uuids


def test_aws_cli_drives_the_engine_unchanged(eng: RunningEngine, queue_arn: str, tmp_path: Path) -> None:
    aws = str(Path(sys.executable).parent / "aws")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def cli(*args: str) -> Any:
        out = subprocess.run(
            [aws, "lambda", *args, "--endpoint-url", eng.url, "--output", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return out

    created = cli(
        "create-event-source-mapping",
        "--function-name",
        FN,
        "--event-source-arn",
        queue_arn,
        "--batch-size",
        "5",
    )
    assert created.returncode == 0, created.stderr
    uuid = json.loads(created.stdout)["UUID"]
    got = cli("get-event-source-mapping", "--uuid", uuid)
    assert json.loads(got.stdout)["BatchSize"] == 5
    bad = cli("create-event-source-mapping", "--function-name", "ghost", "--event-source-arn", queue_arn)
    assert bad.returncode != 0 and "InvalidParameterValueException" in bad.stderr
    assert "Function does not exist" in bad.stderr


# --- tags and the settings AWS accepts (issue 11, item 4) -----------------------------------------------


def _missing_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[0] + ":00000000-0000-4000-8000-000000000000"


def test_tags_on_create_and_the_tagging_api(eng: RunningEngine, queue_arn: str) -> None:
    lam = eng.lambda_client
    created = lam.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=FN, Tags={"team": "orders", "équipe": "données 1"}
    )
    uuid, arn = created["UUID"], created["EventSourceMappingArn"]
    assert "Tags" not in created  # tags belong to the ARN, not to the configuration
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "orders", "équipe": "données 1"}

    reply = lam.tag_resource(Resource=arn, Tags={"team": "billing", "env": "dev"})
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "billing", "env": "dev", "équipe": "données 1"}
    reply = lam.untag_resource(Resource=arn, TagKeys=["équipe", "env", "never-set"])
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "billing"}

    eng.wait_state(uuid, "Enabled")
    lam.delete_event_source_mapping(UUID=uuid)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        for _ in range(200):
            lam.list_tags(Resource=arn)
            time.sleep(0.02)
    assert eng.engine.store.tags(uuid) == {}  # removed with the mapping


def test_tagging_errors(eng: RunningEngine, queue_arn: str) -> None:
    lam = eng.lambda_client
    arn = lam.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=FN, Tags={f"k{i}": "v" for i in range(45)}
    )["EventSourceMappingArn"]
    other_account = arn.replace(":123456789012:", ":210987654321:")
    for resource in (_missing_arn(arn), other_account):
        with pytest.raises(
            lam.exceptions.ResourceNotFoundException, match=r"The resource you requested does not exist\."
        ):
            lam.list_tags(Resource=resource)
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.tag_resource(Resource=resource, Tags={"a": "b"})
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.untag_resource(Resource=resource, TagKeys=["a"])
    for resource in (
        "arn:aws:lambda:us-west-2::event-source-mapping:xxx-xxx-xxx",
        "arn:aws:lambda:us-east-1:123456789012:function:fn-ok",
        "not-an-arn",
    ):
        with pytest.raises(
            lam.exceptions.InvalidParameterValueException,
            match=re.escape(f"Unsupported resource type for tagging or invalid arn: {resource}") + "$",
        ):
            lam.list_tags(Resource=resource)

    with pytest.raises(
        lam.exceptions.InvalidParameterValueException, match=r": Number of tags exceeds resource tag limit\.$"
    ):
        lam.tag_resource(Resource=arn, Tags={f"new{i}": "v" for i in range(6)})
    lam.tag_resource(Resource=arn, Tags={f"new{i}": "v" for i in range(5)})  # 50 in all
    assert len(lam.list_tags(Resource=arn)["Tags"]) == 50
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Number of tags"):
        lam.create_event_source_mapping(
            EventSourceArn=queue_arn + "x", FunctionName=FN, Tags={f"k{i}": "v" for i in range(51)}
        )
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="reserved for AWS use: aws:x"):
        lam.tag_resource(Resource=arn, Tags={"aws:x": "v"})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="cannot be processed"):
        lam.tag_resource(Resource=arn, Tags={})

    status, headers, reply = _raw(
        eng, "POST", f"/2017-03-31/tags/{arn}", json.dumps({"Tags": {"k" * 129: "v"}}).encode()
    )
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert reply["message"].startswith("1 validation error detected: Value '{" + "k" * 129 + "=v}' at 'tags'")
    status, headers, reply = _raw(eng, "DELETE", f"/2017-03-31/tags/{arn}")
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert reply["message"] == (
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: "
        "Member must not be null"
    )
    assert len(lam.list_tags(Resource=arn)["Tags"]) == 50  # nothing changed


def test_kms_key_is_returned_and_hides_filters_from_list_only(frozen: RunningEngine, queue_arn: str) -> None:
    lam = frozen.lambda_client
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    filters = {"Filters": [{"Pattern": '{"body": {"a": [1]}}'}]}
    uuid = lam.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=FN, KMSKeyArn=key, FilterCriteria=filters
    )["UUID"]
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["KMSKeyArn"] == key and got["FilterCriteria"] == filters
    [listed] = lam.list_event_source_mappings()["EventSourceMappings"]
    assert listed["KMSKeyArn"] == key and "FilterCriteria" not in listed


def test_metrics_config_is_returned_and_kafka_metrics_are_kafka_only(
    frozen: RunningEngine, queue_arn: str
) -> None:
    lam = frozen.lambda_client
    uuid = lam.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=FN, MetricsConfig={"Metrics": ["EventCount"]}
    )["UUID"]
    assert lam.get_event_source_mapping(UUID=uuid)["MetricsConfig"] == {"Metrics": ["EventCount"]}
    [listed] = lam.list_event_source_mappings()["EventSourceMappings"]
    assert listed["MetricsConfig"] == {"Metrics": ["EventCount"]}
    with pytest.raises(
        lam.exceptions.InvalidParameterValueException,
        match=r": Unsupported metric ErrorCount for given event source mapping type\.$",
    ):
        lam.create_event_source_mapping(
            EventSourceArn=queue_arn + "x", FunctionName=FN, MetricsConfig={"Metrics": ["ErrorCount"]}
        )


def test_filter_quota_comes_from_the_config_file(
    start_engine: Any, sqs_endpoint: str, queue_arn: str
) -> None:
    patterns = [{"Pattern": json.dumps({"body": {"n": [i]}})} for i in range(6)]
    default = start_engine(sqs_endpoint)
    with pytest.raises(default.lambda_client.exceptions.InvalidParameterValueException):
        default.lambda_client.create_event_source_mapping(
            EventSourceArn=queue_arn, FunctionName=FN, FilterCriteria={"Filters": patterns}
        )
    default.stop()

    raised = start_engine(sqs_endpoint, config=replace(functions_config(), limits=LimitsConfig(6)))
    raised.lambda_client.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=FN, FilterCriteria={"Filters": patterns}
    )
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 5}))  # only the sixth filter matches
    # the runner compiles the mapping's filters with the same quota
    records = wait_for(lambda: esm_test_fns.records_for(queue_arn))
    assert [json.loads(r["body"]) for r in records] == [{"n": 5}]


def test_a_mapping_over_a_lowered_filter_quota_stops_alone(
    start_engine: Any, sqs_endpoint: str, queue_arn: str, tmp_path: Path
) -> None:
    """Stored under limits.filters_per_mapping 6, restarted under 5: that mapping's consumer stops
    (ESM_CONFIG_NOT_VALID) and the engine goes on serving; it never crashes the engine."""
    patterns = [{"Pattern": json.dumps({"body": {"n": [i]}})} for i in range(6)]
    data = tmp_path / "quota"
    raised = start_engine(
        sqs_endpoint, data_dir=data, config=replace(functions_config(), limits=LimitsConfig(6))
    )
    uuid = raised.lambda_client.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=FN, FilterCriteria={"Filters": patterns}
    )["UUID"]
    raised.wait_state(uuid, "Enabled")
    raised.stop()

    lowered = start_engine(sqs_endpoint, data_dir=data)
    stopped = wait_for(
        lambda: (
            (m := lowered.lambda_client.get_event_source_mapping(UUID=uuid))["StateTransitionReason"]
            == "ESM_CONFIG_NOT_VALID"
            and m
        )
    )
    assert stopped["State"] == "Enabled"
    assert lowered.lambda_client.list_event_source_mappings()["EventSourceMappings"]  # still serving
