"""The engine config file (`esm serve --config FILE`): functions, AWS defaults and raw later sections.

YAML for .yaml/.yml, JSON for .json. Every user mistake is a ConfigError naming the file, the key path
and what is wrong; the loader never lets a traceback through for one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Lambda's defaults and limits for a function's configuration.
DEFAULT_TIMEOUT_S = 3.0
MAX_TIMEOUT_S = 900.0
DEFAULT_MEMORY_MB = 128
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10_240
#: ReservedConcurrentExecutions: 0 (every invocation throttled) up to the account's default quota
MAX_RESERVED_CONCURRENCY = 1000

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HANDLER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_ROLE = re.compile(r"^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_ENV_NAME = re.compile(r"^[a-zA-Z]\w*$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")

_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


class ConfigError(Exception):
    """A mistake in the config file: ``file``, the dotted ``key`` path ("" for the file), ``problem``."""

    def __init__(self, file: Path, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class InvokeTarget:
    """A function reached through the Lambda Invoke API (LocalStack, moto, a container's RIE, AWS)."""

    function_name: str
    endpoint_url: str | None = None  # None: the engine's Lambda endpoint, else AWS
    region: str | None = None


@dataclass(frozen=True)
class FunctionConfig:
    """One entry of ``functions``: exactly one of ``handler`` (in-process Python) or ``invoke``.

    ``timeout`` and ``role`` are None when the file leaves them out: an in-process function then gets
    Lambda's defaults, an invoke target the values GetFunction reports.

    ``code_dir`` (in-process only): the folder the handler is imported from, apart from other functions'
    (a SAM function's CodeUri); None imports it by name from the config file's folder.
    ``reserved_concurrency``: at most this many invocations at once, 0 throttles them all; None: no cap.
    """

    name: str
    handler: str | None = None
    invoke: InvokeTarget | None = None
    timeout: float | None = None
    memory_size: int = DEFAULT_MEMORY_MB
    environment: Mapping[str, str] = field(default_factory=dict)
    role: str | None = None
    #: the journal of this function's mappings keeps every attempt's exact event (``esm replay``)
    capture_payloads: bool = False
    code_dir: Path | None = None
    reserved_concurrency: int | None = None

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.invoke is None):
            raise ValueError(f"function {self.name!r} needs exactly one of handler or invoke")
        if self.code_dir is not None and self.handler is None:
            raise ValueError(f"function {self.name!r}: code_dir is for in-process handlers only")
        if self.reserved_concurrency is not None and not (
            0 <= self.reserved_concurrency <= MAX_RESERVED_CONCURRENCY
        ):
            raise ValueError(
                f"function {self.name!r}: reserved_concurrency must be from 0 to {MAX_RESERVED_CONCURRENCY}"
            )

    @property
    def timeout_s(self) -> float:
        return DEFAULT_TIMEOUT_S if self.timeout is None else self.timeout

    def describe(self) -> tuple[str, str]:
        """(kind, target) for listings: ("python", "handler [from CODE_DIR]") or ("invoke", "name [at URL]
        [in REGION]"), either followed by ", reserved concurrency N" when it has one."""
        if self.invoke is None:
            kind, target = "python", str(self.handler)
            if self.code_dir is not None:
                target += f" from {self.code_dir}"
        else:
            kind, target = "invoke", self.invoke.function_name
            if self.invoke.endpoint_url:
                target += f" at {self.invoke.endpoint_url}"
            if self.invoke.region:
                target += f" in {self.invoke.region}"
        if self.reserved_concurrency is not None:
            target += f", reserved concurrency {self.reserved_concurrency}"
        return kind, target


@dataclass(frozen=True)
class AwsConfig:
    """One source of AWS settings: the config file's ``aws`` section, the ESM_* environment variables or
    the command line. None (and no ``endpoints`` entry) leaves the value to the next source; ``merge_aws``
    decides. ``endpoints`` (per botocore service name) only comes from the environment and command line.
    """

    endpoint_url: str | None = None
    region: str | None = None
    account_id: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)


#: Last in the precedence: the region when no source names one (after AWS_DEFAULT_REGION), and moto's
#: account, the one AWS uses in its documentation examples.
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class AwsSettings:
    """The AWS settings the engine runs with, merged by ``merge_aws``."""

    endpoint_url: str | None = None  # None: AWS itself
    endpoints: Mapping[str, str] = field(default_factory=dict)
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID

    def endpoint_for(self, service: str) -> str | None:
        return self.endpoints.get(service, self.endpoint_url)


def parse_endpoints(pairs: list[str], what: str = "--endpoint") -> dict[str, str]:
    """``SERVICE=URL`` pairs (``--endpoint``, ``ESM_ENDPOINTS``) by lower-case service name; ValueError
    names a malformed pair."""
    out = {}
    for pair in pairs:
        service, sep, url = pair.partition("=")
        if not sep or not service.strip() or not url.strip():
            raise ValueError(f"{what} takes SERVICE=URL, got {pair!r}")
        out[service.strip().lower()] = url.strip()
    return out


def aws_from_environ(environ: Mapping[str, str]) -> AwsConfig:
    """The ESM_* variables: ESM_AWS_ENDPOINT_URL, ESM_ENDPOINTS (``sqs=URL,lambda=URL``), ESM_REGION,
    ESM_ACCOUNT_ID. Empty values count as unset."""
    pairs = [e for e in environ.get("ESM_ENDPOINTS", "").split(",") if e.strip()]
    return AwsConfig(
        endpoint_url=environ.get("ESM_AWS_ENDPOINT_URL") or None,
        region=environ.get("ESM_REGION") or None,
        account_id=environ.get("ESM_ACCOUNT_ID") or None,
        endpoints=parse_endpoints(pairs, "ESM_ENDPOINTS"),
    )


def merge_aws(
    command_line: AwsConfig,
    file: AwsConfig,
    environ: Mapping[str, str] | None = None,
    *,
    default_region: str | None = None,
) -> AwsSettings:
    """The one precedence of every AWS setting: command line > environment (ESM_*; ``environ`` defaults
    to os.environ) > config file > defaults (region: ``default_region``, else AWS_DEFAULT_REGION, else
    us-east-1; account: 123456789012; endpoint: AWS itself).

    Endpoints: for one service, the first source that names either that service (``--endpoint
    SERVICE=URL``) or every service (``--aws-endpoint-url``) decides, the service's own entry first. So
    ``--aws-endpoint-url`` on the command line beats ``ESM_ENDPOINTS=lambda=...``, and the command
    line's ``--endpoint lambda=...`` beats the file's ``aws.endpoint_url``.
    """
    env = os.environ if environ is None else environ
    sources = (command_line, aws_from_environ(env), file)
    endpoints: dict[str, str] = {}
    endpoint_url = None
    for source in sources:
        for service, url in source.endpoints.items():
            endpoints.setdefault(service, url)
        if source.endpoint_url is not None:
            endpoint_url = source.endpoint_url
            break  # sources below lose to this one for every service
    region = next((s.region for s in sources if s.region), None)
    account_id = next((s.account_id for s in sources if s.account_id), None)
    return AwsSettings(
        endpoint_url=endpoint_url,
        endpoints=endpoints,
        region=region or default_region or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        account_id=account_id or DEFAULT_ACCOUNT_ID,
    )


#: Lambda's filter quota per mapping: 5 by default, raised up to 10 on request (spec 2.1).
DEFAULT_FILTERS_PER_MAPPING, MAX_FILTERS_PER_MAPPING = 5, 10


@dataclass(frozen=True)
class LimitsConfig:
    """Quotas AWS raises on request: the config file's ``limits`` section."""

    filters_per_mapping: int = DEFAULT_FILTERS_PER_MAPPING


#: the journal's retention defaults: a one-hour soak at 500 records/s (BatchSize 10: ~180,000 rows, about
#: 40 MB) stays well under 1 GB, and a mapping's last 100,000 attempts stay readable
DEFAULT_JOURNAL_MAX_ROWS_PER_MAPPING = 100_000
DEFAULT_JOURNAL_MAX_AGE_S = 7 * 24 * 3600.0
#: captured payloads past this many MB (the newest kept) lose their bytes, their rows stay
DEFAULT_JOURNAL_MAX_PAYLOAD_MB = 512
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class JournalConfig:
    """The journal's retention: the config file's ``journal`` section. Rows past either bound go."""

    max_rows_per_mapping: int = DEFAULT_JOURNAL_MAX_ROWS_PER_MAPPING
    max_age_s: float = DEFAULT_JOURNAL_MAX_AGE_S
    #: captured payloads (--capture-payloads) in all, newest first; older rows keep their row, not the bytes
    max_payload_mb: int = DEFAULT_JOURNAL_MAX_PAYLOAD_MB


@dataclass(frozen=True)
class EngineConfig:
    """The whole file. ``base_dir`` (the file's folder) goes on sys.path for in-process handlers without
    a ``code_dir``; ``sections`` keeps the other top-level sections (brokers, secrets, mappings, ...) as
    parsed."""

    base_dir: Path = field(default_factory=Path.cwd)
    functions: Mapping[str, FunctionConfig] = field(default_factory=dict)
    aws: AwsConfig = field(default_factory=AwsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    sections: Mapping[str, Any] = field(default_factory=dict)


def load_config(path: str | os.PathLike[str]) -> EngineConfig:
    file = Path(path)
    raw = _parse(file, _read(file))
    return _Validator(file).engine(raw, base_dir=file.resolve().parent)


# --- reading --------------------------------------------------------------------------------------


def _read(file: Path) -> str:
    if file.suffix.lower() not in _EXTENSIONS:
        raise ConfigError(file, "", "unsupported file extension (use .yaml, .yml or .json)")
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(file, "", f"cannot read the file: {e}") from None


def _parse(file: Path, text: str) -> Any:
    if _EXTENSIONS[file.suffix.lower()] == "json":
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as e:
            where = f"line {e.lineno}, column {e.colno}"
            raise ConfigError(file, "", f"invalid JSON at {where}: {e.msg}") from None
        except _DuplicateKey as e:
            raise ConfigError(file, "", f"invalid JSON: duplicate key {e.key!r}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(file, "", f"invalid YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(file, "", f"invalid YAML: {e}") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys: a second function of the same name would
    replace the first unnoticed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


# --- validation -----------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Validator:
    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)

    def engine(self, raw: Any, *, base_dir: Path) -> EngineConfig:
        if raw is None:  # an empty file: no functions, no defaults
            return EngineConfig(base_dir=base_dir)
        top = self.mapping(raw, "")
        functions = self.mapping(top.get("functions"), "functions", optional=True)
        return EngineConfig(
            base_dir=base_dir,
            functions={name: self.function(name, spec, base_dir) for name, spec in functions.items()},
            aws=self.aws(top.get("aws")),
            limits=self.limits(top.get("limits")),
            journal=self.journal(top.get("journal")),
            sections={k: v for k, v in top.items() if k not in ("functions", "aws", "limits", "journal")},
        )

    def mapping(self, value: Any, key: str, *, optional: bool = False) -> dict[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {_type_name(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.error(key, f"keys must be strings, got {_type_name(k)} {k!r}")
        return value

    def keys(self, value: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
        for k in value:
            if k not in allowed:
                raise self.error(key, f"unknown key {k!r} (allowed: {', '.join(allowed)})")

    def string(self, value: Any, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {_type_name(value)} {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"{value!r} is not {what}")
        return value

    def optional(
        self,
        spec: dict[str, Any],
        name: str,
        key: str,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | None:
        value = spec.get(name)
        return None if value is None else self.string(value, f"{key}.{name}", pattern, what)

    def endpoint(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        url = self.string(value, key)
        if not url.startswith(("http://", "https://")):
            raise self.error(key, f"{url!r} is not an http:// or https:// URL")
        return url

    def function(self, name: str, raw: Any, base_dir: Path) -> FunctionConfig:
        key = f"functions.{name}"
        if not _FUNCTION_NAME.match(name):
            raise self.error(key, "a function name is 1 to 64 letters, digits, hyphens or underscores")
        spec = self.mapping(raw, key)
        if "handler" in spec and "invoke" in spec:
            raise self.error(key, "has both 'handler' and 'invoke': a function is one or the other")
        if "invoke" in spec:
            # memory and environment belong to the remote function's own configuration
            self.keys(spec, key, ("invoke", "timeout", "role", "capture_payloads", "reserved_concurrency"))
        else:
            self.keys(
                spec,
                key,
                (
                    "handler",
                    "code_dir",
                    "timeout",
                    "memory_size",
                    "environment",
                    "role",
                    "capture_payloads",
                    "reserved_concurrency",
                ),
            )
        if "handler" not in spec and "invoke" not in spec:
            raise self.error(key, "needs 'handler' (in-process Python) or 'invoke' (Lambda Invoke API)")
        return FunctionConfig(
            name=name,
            handler=(
                self.string(spec["handler"], f"{key}.handler", _HANDLER, "a handler path like module.func")
                if "handler" in spec
                else None
            ),
            invoke=self.invoke_target(spec["invoke"], f"{key}.invoke") if "invoke" in spec else None,
            timeout=self.timeout(spec.get("timeout"), f"{key}.timeout"),
            memory_size=self.memory_size(spec.get("memory_size", DEFAULT_MEMORY_MB), f"{key}.memory_size"),
            environment=self.environment(spec.get("environment"), f"{key}.environment"),
            role=self.optional(spec, "role", key, _ROLE, "an IAM role ARN"),
            capture_payloads=self.boolean(spec.get("capture_payloads", False), f"{key}.capture_payloads"),
            code_dir=self.code_dir(spec.get("code_dir"), f"{key}.code_dir", base_dir),
            reserved_concurrency=self.reserved_concurrency(
                spec.get("reserved_concurrency"), f"{key}.reserved_concurrency"
            ),
        )

    def code_dir(self, value: Any, key: str, base_dir: Path) -> Path | None:
        if value is None:
            return None
        path = (base_dir / self.string(value, key)).resolve()
        if not path.is_dir():
            raise self.error(key, f"{value!r} is not a folder ({path} does not exist or is a file)")
        return path

    def reserved_concurrency(self, value: Any, key: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_type_name(value)} {value!r}")
        if not 0 <= value <= MAX_RESERVED_CONCURRENCY:
            raise self.error(key, f"must be from 0 to {MAX_RESERVED_CONCURRENCY}, got {value}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def invoke_target(self, raw: Any, key: str) -> InvokeTarget:
        spec = self.mapping(raw, key)
        self.keys(spec, key, ("function_name", "endpoint_url", "region"))
        if "function_name" not in spec:
            raise self.error(key, "missing 'function_name'")
        return InvokeTarget(
            function_name=self.string(spec["function_name"], f"{key}.function_name"),
            endpoint_url=self.endpoint(spec.get("endpoint_url"), f"{key}.endpoint_url"),
            region=self.optional(spec, "region", key),
        )

    def timeout(self, value: Any, key: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds, got {_type_name(value)} {value!r}")
        # fractions are allowed: sub-second timeouts make local timeout tests fast
        if not 0 < value <= MAX_TIMEOUT_S:
            raise self.error(key, f"must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds, got {value!r}")
        return float(value)

    def memory_size(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer number of MB, got {_type_name(value)} {value!r}")
        if not MIN_MEMORY_MB <= value <= MAX_MEMORY_MB:
            raise self.error(key, f"must be from {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MB, got {value}")
        return value

    def environment(self, raw: Any, key: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for name, value in self.mapping(raw, key, optional=True).items():
            if not _ENV_NAME.match(name):
                raise self.error(f"{key}.{name}", "not a valid variable name (letters, digits, underscores)")
            # numbers read as YAML numbers are meant as their text; booleans are ambiguous (True/true/yes)
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                got = f"{_type_name(value)} {value!r}"
                raise self.error(f"{key}.{name}", f"must be a string (quote it), got {got}")
            env[name] = str(value)
        return env

    def aws(self, raw: Any) -> AwsConfig:
        spec = self.mapping(raw, "aws", optional=True)
        self.keys(spec, "aws", ("endpoint_url", "region", "account_id"))
        account = spec.get("account_id")
        if account is not None and not (isinstance(account, str) and _ACCOUNT_ID.match(account)):
            raise self.error("aws.account_id", f"must be a quoted string of 12 digits, got {account!r}")
        return AwsConfig(
            endpoint_url=self.endpoint(spec.get("endpoint_url"), "aws.endpoint_url"),
            region=self.optional(spec, "region", "aws"),
            account_id=account,
        )

    def limits(self, raw: Any) -> LimitsConfig:
        spec = self.mapping(raw, "limits", optional=True)
        self.keys(spec, "limits", ("filters_per_mapping",))
        filters = spec.get("filters_per_mapping", DEFAULT_FILTERS_PER_MAPPING)
        if isinstance(filters, bool) or not isinstance(filters, int):
            got = f"{_type_name(filters)} {filters!r}"
            raise self.error("limits.filters_per_mapping", f"must be an integer, got {got}")
        if not 1 <= filters <= MAX_FILTERS_PER_MAPPING:
            raise self.error(
                "limits.filters_per_mapping",
                f"must be from 1 to {MAX_FILTERS_PER_MAPPING} (AWS raises the quota of "
                f"{DEFAULT_FILTERS_PER_MAPPING} up to {MAX_FILTERS_PER_MAPPING}), got {filters}",
            )
        return LimitsConfig(filters_per_mapping=filters)

    def journal(self, raw: Any) -> JournalConfig:
        spec = self.mapping(raw, "journal", optional=True)
        self.keys(spec, "journal", ("max_rows_per_mapping", "max_age", "max_payload_mb"))
        rows = spec.get("max_rows_per_mapping", DEFAULT_JOURNAL_MAX_ROWS_PER_MAPPING)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            got = f"{_type_name(rows)} {rows!r}"
            raise self.error("journal.max_rows_per_mapping", f"must be a positive integer, got {got}")
        age = spec.get("max_age", DEFAULT_JOURNAL_MAX_AGE_S)
        match = _DURATION.match(str(age)) if not isinstance(age, bool) else None
        if match is None or float(match[1]) <= 0:
            raise self.error(
                "journal.max_age", f"must be a positive duration (seconds, or 90s, 30m, 12h, 7d), got {age!r}"
            )
        payload_mb = spec.get("max_payload_mb", DEFAULT_JOURNAL_MAX_PAYLOAD_MB)
        if isinstance(payload_mb, bool) or not isinstance(payload_mb, int) or payload_mb < 0:
            got = f"{_type_name(payload_mb)} {payload_mb!r}"
            raise self.error("journal.max_payload_mb", f"must be a whole number of MB (0 or more), got {got}")
        return JournalConfig(
            max_rows_per_mapping=rows,
            max_age_s=float(match[1]) * _UNIT_S[match[2] or "s"],
            max_payload_mb=payload_mb,
        )
