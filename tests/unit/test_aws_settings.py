"""One precedence for every AWS setting (endpoints, region, account): command line > environment (ESM_*) >
config file's ``aws`` section > defaults, decided once by engine.config.merge_aws and used by every client,
the Lambda Invoke path included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine.invoke.registry as registry_module
from engine.app import EngineSettings
from engine.cli import _parser, aws_settings
from engine.config import AwsConfig, AwsSettings, EngineConfig, aws_from_environ, merge_aws
from engine.invoke.registry import FunctionRegistry
from engine.ports import FunctionInfo

FILE = AwsConfig(endpoint_url="http://file:4566", region="eu-west-1", account_id="111111111111")
ENV = {
    "ESM_AWS_ENDPOINT_URL": "http://env:4566",
    "ESM_REGION": "eu-west-2",
    "ESM_ACCOUNT_ID": "222222222222",
}
CLI = AwsConfig(endpoint_url="http://cli:4566", region="eu-west-3", account_id="333333333333")


def test_command_line_beats_environment_beats_file() -> None:
    assert merge_aws(CLI, FILE, ENV) == AwsSettings("http://cli:4566", {}, "eu-west-3", "333333333333")
    assert merge_aws(AwsConfig(), FILE, ENV) == AwsSettings(
        "http://env:4566", {}, "eu-west-2", "222222222222"
    )
    assert merge_aws(AwsConfig(), FILE, {}) == AwsSettings(
        "http://file:4566", {}, "eu-west-1", "111111111111"
    )


def test_defaults_come_last() -> None:
    assert merge_aws(AwsConfig(), AwsConfig(), {}) == AwsSettings(None, {}, "us-east-1", "123456789012")
    assert merge_aws(AwsConfig(), AwsConfig(), {"AWS_DEFAULT_REGION": "sa-east-1"}).region == "sa-east-1"
    assert merge_aws(AwsConfig(), FILE, {"AWS_DEFAULT_REGION": "sa-east-1"}).region == "eu-west-1"
    assert merge_aws(AwsConfig(), AwsConfig(), {}, default_region="ap-east-1").region == "ap-east-1"


def test_each_setting_falls_through_on_its_own() -> None:
    merged = merge_aws(AwsConfig(region="eu-west-3"), FILE, {"ESM_ACCOUNT_ID": "222222222222"})
    assert merged == AwsSettings("http://file:4566", {}, "eu-west-3", "222222222222")


def test_service_endpoint_on_the_command_line_beats_the_file_for_that_service_only() -> None:
    merged = merge_aws(AwsConfig(endpoints={"lambda": "http://cli-lambda:9000"}), FILE, {})
    assert merged.endpoint_for("lambda") == "http://cli-lambda:9000"
    assert merged.endpoint_for("sqs") == "http://file:4566"


def test_first_source_naming_a_service_or_every_service_decides() -> None:
    env = {"ESM_ENDPOINTS": "lambda=http://env-lambda:9000,sqs=http://env-sqs:9324"}
    merged = merge_aws(AwsConfig(endpoint_url="http://cli:4566"), FILE, env)
    assert merged.endpoint_for("lambda") == "http://cli:4566"  # the command line's every-service URL
    assert merged.endpoint_for("sqs") == "http://cli:4566"
    merged = merge_aws(AwsConfig(endpoints={"sqs": "http://cli-sqs:9324"}), FILE, env)
    assert merged.endpoint_for("sqs") == "http://cli-sqs:9324"
    assert merged.endpoint_for("lambda") == "http://env-lambda:9000"  # environment over the file
    assert merged.endpoint_for("kinesis") == "http://file:4566"


def test_environment_variables() -> None:
    env = {**ENV, "ESM_ENDPOINTS": "SQS=http://q:9324, lambda=http://l:9000", "ESM_REGION": ""}
    aws = aws_from_environ(env)
    assert aws.endpoints == {"sqs": "http://q:9324", "lambda": "http://l:9000"}
    assert aws.region is None  # empty: unset
    with pytest.raises(ValueError, match="ESM_ENDPOINTS takes SERVICE=URL"):
        aws_from_environ({"ESM_ENDPOINTS": "sqs"})


def _serve_settings(argv: list[str], config: EngineConfig, environ: dict[str, str]) -> AwsSettings:
    return aws_settings(_parser().parse_args(["serve", *argv]), config, environ=environ)


def test_esm_serve_merges_command_line_environment_and_file() -> None:
    config = EngineConfig(aws=FILE)
    argv = ["--endpoint", "lambda=http://cli-lambda:9000", "--region", "eu-west-3"]
    aws = _serve_settings(argv, config, {"ESM_ACCOUNT_ID": "222222222222"})
    assert aws.endpoint_for("lambda") == "http://cli-lambda:9000"
    assert aws.endpoint_for("sqs") == "http://file:4566"
    assert (aws.region, aws.account_id) == ("eu-west-3", "222222222222")
    aws = _serve_settings(["--aws-endpoint-url", "http://cli:4566"], config, ENV)
    assert (aws.endpoint_url, aws.region, aws.account_id) == ("http://cli:4566", "eu-west-2", "222222222222")
    assert _serve_settings([], config, {}) == merge_aws(AwsConfig(), FILE, {})
    with pytest.raises(SystemExit, match="--endpoint takes SERVICE=URL"):
        _serve_settings(["--endpoint", "lambda"], config, {})


def test_embedded_emulator_is_the_command_lines_endpoint() -> None:
    args = _parser().parse_args(["serve", "--endpoint", "sqs=http://cli-sqs:9324"])
    aws = aws_settings(
        args, EngineConfig(aws=FILE), environ=ENV, embedded_endpoint_url="http://127.0.0.1:4566"
    )
    assert aws.endpoint_for("lambda") == "http://127.0.0.1:4566"
    assert aws.endpoint_for("sqs") == "http://cli-sqs:9324"


def test_engine_settings_endpoint_for() -> None:
    settings = EngineSettings(aws_endpoint_url="http://all:4566", endpoints={"lambda": "http://l:9000"})
    assert settings.endpoint_for("lambda") == "http://l:9000"
    assert settings.endpoint_for("sqs") == "http://all:4566"


class _FakeInvoker:
    def __init__(self, function_name: str, endpoint_url: str | None, region: str | None) -> None:
        self.function_name = function_name
        self.endpoint_url = endpoint_url
        self.region = region
        self.info = FunctionInfo(function_arn=function_name, timeout_s=3.0, role_arn="r")

    async def aclose(self) -> None:
        pass


async def test_lambda_invoke_uses_the_command_line_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--endpoint lambda=URL` (and --aws-endpoint-url) beat the file's aws.endpoint_url on the Invoke path,
    as they do for SQS."""
    opened: list[_FakeInvoker] = []

    async def fake_open(function_name: str, **kwargs: Any) -> _FakeInvoker:
        opened.append(_FakeInvoker(function_name, kwargs.get("endpoint_url"), kwargs.get("region")))
        return opened[-1]

    monkeypatch.setattr(registry_module.LambdaApiInvoker, "open", fake_open)
    config = EngineConfig(base_dir=Path.cwd(), aws=FILE)
    for argv, endpoint in [
        (["--endpoint", "lambda=http://cli-lambda:9000"], "http://cli-lambda:9000"),
        (["--aws-endpoint-url", "http://cli:4566"], "http://cli:4566"),
        ([], "http://file:4566"),
    ]:
        aws = _serve_settings(argv, config, {})
        settings = EngineSettings(
            aws_endpoint_url=aws.endpoint_url, endpoints=aws.endpoints, region=aws.region
        )
        # what Engine.__init__ hands the registry
        registry = FunctionRegistry(
            config,
            lambda_endpoint_url=settings.endpoint_for("lambda"),
            region=settings.region,
            account_id=settings.account_id,
        )
        assert registry.endpoint_url == endpoint
        await registry.resolve("remote-fn")
        assert (opened[-1].function_name, opened[-1].endpoint_url) == ("remote-fn", endpoint)
        await registry.aclose()


def test_registry_arguments_beat_the_file() -> None:
    config = EngineConfig(aws=FILE)
    registry = FunctionRegistry(
        config, lambda_endpoint_url="http://cli:4566", region="eu-west-3", account_id="333333333333"
    )
    assert (registry.endpoint_url, registry.region, registry.account_id) == (
        "http://cli:4566",
        "eu-west-3",
        "333333333333",
    )
    registry = FunctionRegistry(config)
    assert (registry.endpoint_url, registry.region, registry.account_id) == (
        "http://file:4566",
        "eu-west-1",
        "111111111111",
    )
