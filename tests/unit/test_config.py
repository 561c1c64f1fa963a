"""The engine config file: what a valid file gives, and the error a user gets for each kind of mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import (
    AwsConfig,
    ConfigError,
    EngineConfig,
    FunctionConfig,
    InvokeTarget,
    JournalConfig,
    LimitsConfig,
    load_config,
)

FULL = """\
functions:
  orders:
    handler: app.orders.handle
    timeout: 30
    memory_size: 256
    environment: {TABLE: orders, PORT: 8080}
    role: arn:aws:iam::123456789012:role/orders
  remote:
    invoke: {function_name: remote-fn, endpoint_url: "http://127.0.0.1:4566", region: eu-west-1}
  minimal:
    handler: mod.func
aws: {endpoint_url: "http://127.0.0.1:5000", region: us-east-1, account_id: "123456789012"}
brokers:
  arn:aws:kafka:us-east-1:123456789012:cluster/c/1: {bootstrap_servers: "127.0.0.1:9092"}
mappings:
  - {FunctionName: orders, EventSourceArn: "arn:aws:sqs:us-east-1:000000000000:q"}
"""


def _write(tmp_path: Path, text: str, name: str = "esm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_yaml_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    assert cfg.base_dir == tmp_path.resolve()
    assert cfg.functions["orders"] == FunctionConfig(
        name="orders",
        handler="app.orders.handle",
        timeout=30.0,
        memory_size=256,
        environment={"TABLE": "orders", "PORT": "8080"},
        role="arn:aws:iam::123456789012:role/orders",
    )
    assert cfg.functions["remote"].invoke == InvokeTarget(
        function_name="remote-fn", endpoint_url="http://127.0.0.1:4566", region="eu-west-1"
    )
    assert cfg.aws == AwsConfig(
        endpoint_url="http://127.0.0.1:5000", region="us-east-1", account_id="123456789012"
    )
    assert cfg.sections["brokers"] == {
        "arn:aws:kafka:us-east-1:123456789012:cluster/c/1": {"bootstrap_servers": "127.0.0.1:9092"}
    }
    assert cfg.sections["mappings"][0]["FunctionName"] == "orders"


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    minimal = cfg.functions["minimal"]
    assert (minimal.timeout, minimal.timeout_s, minimal.memory_size, minimal.role) == (None, 3.0, 128, None)
    assert minimal.environment == {}
    assert cfg.functions["remote"].handler is None


def test_json_file_and_relative_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    text = json.dumps({"functions": {"f": {"handler": "m.f", "timeout": 0.5}}})
    _write(tmp_path / "conf", text, "esm.json")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("conf/esm.json")
    assert cfg.functions["f"].timeout_s == 0.5
    assert cfg.base_dir == (tmp_path / "conf").resolve()
    assert cfg.base_dir.is_absolute()


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "functions:\naws:\n"])
def test_empty_file_and_sections(tmp_path: Path, text: str) -> None:
    cfg = load_config(_write(tmp_path, text))
    assert cfg == EngineConfig(base_dir=tmp_path.resolve())


def test_describe_for_listings(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    assert cfg.functions["orders"].describe() == ("python", "app.orders.handle")
    assert cfg.functions["remote"].describe() == ("invoke", "remote-fn at http://127.0.0.1:4566 in eu-west-1")
    assert FunctionConfig(name="g", invoke=InvokeTarget("g")).describe() == ("invoke", "g")


def test_function_config_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        FunctionConfig(name="f")
    with pytest.raises(ValueError, match="exactly one"):
        FunctionConfig(name="f", handler="m.f", invoke=InvokeTarget("g"))


F = "functions:\n  f: "


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("functions: [a, b]\n", "functions", "must be a mapping, got list"),
        ("- a\n", "", "must be a mapping, got list"),
        (F + "{handler: m.f, timout: 3}\n", "functions.f", "unknown key 'timout'"),
        (F + "{timeout: 3}\n", "functions.f", "needs 'handler' (in-process Python) or 'invoke'"),
        (F + "{handler: m.f, invoke: {function_name: g}}\n", "functions.f", "has both"),
        (F + "{handler: null}\n", "functions.f.handler", "must be a non-empty string, got null"),
        (F + "{handler: nodots}\n", "functions.f.handler", "is not a handler path"),
        (F + "{handler: 12}\n", "functions.f.handler", "got int 12"),
        (F + "{handler: m.f, timeout: '30'}\n", "functions.f.timeout", "must be a number"),
        (F + "{handler: m.f, timeout: true}\n", "functions.f.timeout", "must be a number"),
        (F + "{handler: m.f, timeout: 901}\n", "functions.f.timeout", "at most 900 seconds, got 901"),
        (F + "{handler: m.f, timeout: 0}\n", "functions.f.timeout", "must be more than 0"),
        (F + "{handler: m.f, timeout: -1}\n", "functions.f.timeout", "must be more than 0"),
        (F + "{handler: m.f, memory_size: 64}\n", "functions.f.memory_size", "from 128 to 10240"),
        (F + "{handler: m.f, memory_size: 1.5}\n", "functions.f.memory_size", "integer"),
        (F + "{handler: m.f, environment: [A]}\n", "functions.f.environment", "must be a mapping"),
        (
            F + "{handler: m.f, environment: {DEBUG: yes}}\n",
            "functions.f.environment.DEBUG",
            "must be a string (quote it), got bool True",
        ),
        (
            F + "{handler: m.f, environment: {1A: x}}\n",
            "functions.f.environment.1A",
            "not a valid variable name",
        ),
        (F + "{handler: m.f, role: admin}\n", "functions.f.role", "is not an IAM role ARN"),
        (
            F + "{invoke: {function_name: g}, memory_size: 256}\n",
            "functions.f",
            "unknown key 'memory_size' (allowed: invoke, timeout, role, capture_payloads, "
            "reserved_concurrency)",
        ),
        (F + "{invoke: {function_name: g}, code_dir: src}\n", "functions.f", "unknown key 'code_dir'"),
        (F + "{handler: m.f, code_dir: nowhere}\n", "functions.f.code_dir", "'nowhere' is not a folder"),
        (F + "{handler: m.f, code_dir: esm.yaml}\n", "functions.f.code_dir", "'esm.yaml' is not a folder"),
        (F + "{handler: m.f, code_dir: ''}\n", "functions.f.code_dir", "must be a non-empty string"),
        (
            F + "{handler: m.f, reserved_concurrency: -1}\n",
            "functions.f.reserved_concurrency",
            "from 0 to 1000",
        ),
        (F + "{handler: m.f, reserved_concurrency: 1001}\n", "functions.f.reserved_concurrency", "got 1001"),
        (F + "{handler: m.f, reserved_concurrency: '2'}\n", "functions.f.reserved_concurrency", "integer"),
        (F + "{handler: m.f, reserved_concurrency: true}\n", "functions.f.reserved_concurrency", "integer"),
        (F + "{invoke: {endpoint_url: 'http://x'}}\n", "functions.f.invoke", "missing 'function_name'"),
        (F + "{invoke: {function_name: g, endpoint: x}}\n", "functions.f.invoke", "unknown key"),
        (
            F + "{invoke: {function_name: g, endpoint_url: 'localhost:4566'}}\n",
            "functions.f.invoke.endpoint_url",
            "is not an http:// or https:// URL",
        ),
        (F + "{invoke: g}\n", "functions.f.invoke", "must be a mapping, got str"),
        ("functions:\n  'my.fn': {handler: m.f}\n", "functions.my.fn", "a function name is 1 to 64"),
        (F + "handler\n", "functions.f", "must be a mapping, got str"),
        ("functions:\n  1: {handler: m.f}\n", "functions", "keys must be strings, got int 1"),
        ("aws: {region: us-east-1, profile: dev}\n", "aws", "unknown key 'profile'"),
        ("aws: {account_id: 123456789012}\n", "aws.account_id", "quoted string of 12 digits"),
        ("aws: {account_id: '1234'}\n", "aws.account_id", "quoted string of 12 digits"),
        ("aws: {region: ''}\n", "aws.region", "must be a non-empty string"),
    ],
)
def test_user_mistakes(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.key) == (path, key)
    assert problem in err.problem
    assert str(err).startswith(f"{path}: {key}: " if key else f"{path}: ")


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("esm.yaml", "functions:\n  f: {handler: m.f\n", "invalid YAML at line 3, column 1"),
        ("esm.yaml", "functions:\n  f: {handler: m.f}\n  f: {handler: m.g}\n", "duplicate key 'f'"),
        ("esm.json", '{"functions": {"f": }}', "invalid JSON at line 1, column 21"),
        ("esm.json", '{"functions": {}, "functions": {}}', "duplicate key 'functions'"),
        ("esm.toml", "[functions]\n", "unsupported file extension"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = _write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == ""
    assert problem in str(info.value)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        "defaults: &d {timeout: 10}\n"
        "functions:\n  f: {<<: *d, handler: m.f}\n  g: {<<: *d, handler: m.g, timeout: 5}\n"
    )
    cfg = load_config(_write(tmp_path, text))
    assert (cfg.functions["f"].timeout, cfg.functions["g"].timeout) == (10.0, 5.0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "dir.yaml")


def test_limits_filters_per_mapping(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "functions: {}\n")).limits == LimitsConfig(filters_per_mapping=5)
    config = load_config(_write(tmp_path, "limits: {filters_per_mapping: 10}\n"))
    assert config.limits.filters_per_mapping == 10 and "limits" not in config.sections
    for value, problem in (
        ("11", "must be from 1 to 10"),
        ("0", "must be from 1 to 10"),
        ("'6'", "must be an integer, got str '6'"),
        ("true", "must be an integer"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(_write(tmp_path, f"limits: {{filters_per_mapping: {value}}}\n"))
        assert info.value.key == "limits.filters_per_mapping" and problem in info.value.problem
    with pytest.raises(ConfigError, match="unknown key 'filters'"):
        load_config(_write(tmp_path, "limits: {filters: 6}\n"))


def test_journal_retention(tmp_path: Path) -> None:
    default = load_config(_write(tmp_path, "functions: {}\n")).journal
    assert default == JournalConfig(max_rows_per_mapping=100_000, max_age_s=7 * 86400.0)
    config = load_config(_write(tmp_path, "journal: {max_rows_per_mapping: 500, max_age: 12h}\n"))
    assert config.journal == JournalConfig(max_rows_per_mapping=500, max_age_s=43200.0)
    assert "journal" not in config.sections
    assert load_config(_write(tmp_path, "journal: {max_age: 90}\n")).journal.max_age_s == 90.0
    assert default.max_payload_mb == 512
    assert load_config(_write(tmp_path, "journal: {max_payload_mb: 0}\n")).journal.max_payload_mb == 0
    for key, value, problem in (
        ("max_payload_mb", "-1", "must be a whole number of MB"),
        ("max_rows_per_mapping", "0", "must be a positive integer"),
        ("max_rows_per_mapping", "'9'", "must be a positive integer, got str '9'"),
        ("max_age", "soon", "must be a positive duration"),
        ("max_age", "0s", "must be a positive duration"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(_write(tmp_path, f"journal: {{{key}: {value}}}\n"))
        assert info.value.key == f"journal.{key}" and problem in info.value.problem


def test_capture_payloads_is_a_function_flag(tmp_path: Path) -> None:
    path = tmp_path / "esm.yaml"
    path.write_text("functions:\n  f: {handler: m.f, capture_payloads: true}\n  g: {handler: m.g}\n")
    config = load_config(path)
    assert config.functions["f"].capture_payloads and not config.functions["g"].capture_payloads
    path.write_text("functions:\n  f: {handler: m.f, capture_payloads: 'yes'}\n")
    with pytest.raises(ConfigError, match=r"functions\.f\.capture_payloads: must be true or false"):
        load_config(path)


def test_code_dir_relative_to_the_file_and_reserved_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf" / "src" / "hello").mkdir(parents=True)
    _write(
        tmp_path / "conf",
        "functions:\n"
        "  hello: {handler: app.handler, code_dir: src/hello, reserved_concurrency: 0}\n"
        "  remote: {invoke: {function_name: r}, reserved_concurrency: 1000}\n"
        "  plain: {handler: m.f}\n",
    )
    monkeypatch.chdir(tmp_path)  # code_dir is relative to the file's folder, not the working directory
    cfg = load_config("conf/esm.yaml")
    hello = cfg.functions["hello"]
    assert (hello.code_dir, hello.reserved_concurrency) == (
        (tmp_path / "conf" / "src" / "hello").resolve(),
        0,
    )
    assert hello.describe() == ("python", f"app.handler from {hello.code_dir}, reserved concurrency 0")
    assert cfg.functions["remote"].reserved_concurrency == 1000
    assert cfg.functions["remote"].describe() == ("invoke", "r, reserved concurrency 1000")
    assert (cfg.functions["plain"].code_dir, cfg.functions["plain"].reserved_concurrency) == (None, None)


def test_function_config_checks_code_dir_and_reserved_concurrency(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="code_dir is for in-process handlers only"):
        FunctionConfig(name="f", invoke=InvokeTarget("g"), code_dir=tmp_path)
    with pytest.raises(ValueError, match="reserved_concurrency must be from 0 to 1000"):
        FunctionConfig(name="f", handler="m.f", reserved_concurrency=1001)
