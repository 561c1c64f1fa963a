"""What the soak's traffic would cost on AWS in a month: the run's counts extrapolated to 30 days and priced
with AWS's on-demand list prices (us-east-1). An order of magnitude for a reader, not a bill: free tiers are
not applied and brokers (Amazon MSK, Amazon MQ) are priced by the instance-hour, which a soak cannot tell."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: 30 days, the month AWS's pricing pages count in
SECONDS_PER_MONTH = 2_592_000
HOURS_PER_MONTH = 720


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    note: str


def _listed(page: str) -> str:
    return f"as listed on aws.amazon.com/{page}/pricing, 2026 (us-east-1, on-demand)"


#: us-east-1 on-demand list prices; free tiers not applied
PRICES: Mapping[str, Price] = {
    "lambda_request_per_million": Price(0.20, "USD per 1M requests", _listed("lambda")),
    "lambda_gb_second": Price(0.0000166667, "USD per GB-second (x86)", _listed("lambda")),
    "sqs_standard_request_per_million": Price(
        0.40, "USD per 1M requests (standard queue, each 64 KB chunk a request)", _listed("sqs")
    ),
    "sqs_fifo_request_per_million": Price(
        0.50, "USD per 1M requests (FIFO queue, each 64 KB chunk a request)", _listed("sqs")
    ),
    "kinesis_shard_hour": Price(
        0.015, "USD per shard-hour (provisioned mode)", _listed("kinesis/data-streams")
    ),
    "kinesis_put_unit_per_million": Price(
        0.014, "USD per 1M PUT payload units (25 KB each)", _listed("kinesis/data-streams")
    ),
    "dynamodb_write_unit_per_million": Price(
        0.625, "USD per 1M write request units (on-demand)", _listed("dynamodb")
    ),
}

ASSUMPTIONS = (
    "Monthly figures extrapolate the soak's counts to 30 days: count / duration_s * 2,592,000 s.",
    "us-east-1 on-demand list prices; free tiers (Lambda, SQS, DynamoDB) are not applied.",
    "Lambda compute is x86 (arm64 is about 20% less per GB-second).",
    "Kinesis shards are provisioned all month: shards * 720 shard-hours; "
    "GetRecords by a standard (shared-throughput) consumer carries no charge of its own.",
    "DynamoDB Streams GetRecords calls made by Lambda are free; the table's writes are on-demand.",
    "SQS: every send, receive and delete is a request, one per 64 KB chunk of its payload.",
    "Amazon MSK and Amazon MQ are instance-priced (broker-hours): not estimated; "
    "nor are data transfer, storage, CloudWatch or on-failure destinations.",
)


@dataclass(frozen=True)
class Usage:
    """What the soak used, in the units AWS bills; the caller counts (this module only multiplies)."""

    duration_s: float
    lambda_invocations: int = 0
    lambda_gb_seconds: float = 0.0  # sum of invocation durations (s) * memory (GB)
    sqs_requests: int = 0  # sends + receives + deletes, each per 64 KB chunk
    sqs_fifo: bool = False
    kinesis_shards: int = 0
    kinesis_put_units: int = 0  # records * ceil(size / 25 KB)
    dynamodb_write_units: int = 0
    kafka_mappings: int = 0
    mq_mappings: int = 0


def estimate(usage: Usage, prices: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The monthly cost of ``usage``'s traffic, line by line; ``prices`` overrides the default table's USD
    figures by key."""
    if usage.duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {usage.duration_s}")
    table = dict(PRICES)
    for key, usd in (prices or {}).items():
        if key not in table:
            raise ValueError(f"unknown price {key!r}; known: {', '.join(sorted(table))}")
        table[key] = Price(usd, table[key].unit, "given by the caller")

    def monthly(count: float) -> float:
        return count / usage.duration_s * SECONDS_PER_MONTH

    kind = "fifo" if usage.sqs_fifo else "standard"
    metered = (
        ("Lambda requests", monthly(usage.lambda_invocations), "requests", "lambda_request_per_million"),
        ("Lambda compute (x86)", monthly(usage.lambda_gb_seconds), "GB-seconds", "lambda_gb_second"),
        (
            f"SQS requests ({kind})",
            monthly(usage.sqs_requests),
            "requests",
            f"sqs_{kind}_request_per_million",
        ),
        # shards are provisioned whether records flow or not: a month of them, not an extrapolation
        ("Kinesis shard-hours", usage.kinesis_shards * HOURS_PER_MONTH, "shard-hours", "kinesis_shard_hour"),
        (
            "Kinesis PUT payload units",
            monthly(usage.kinesis_put_units),
            "PUT payload units",
            "kinesis_put_unit_per_million",
        ),
        (
            "DynamoDB writes (on-demand)",
            monthly(usage.dynamodb_write_units),
            "write request units",
            "dynamodb_write_unit_per_million",
        ),
    )
    lines: list[dict[str, Any]] = []
    for item, quantity, unit, price_name in metered:
        if quantity:
            price = table[price_name].usd
            per = 1e6 if price_name.endswith("_per_million") else 1.0
            lines.append(
                {
                    "item": item,
                    "quantity_per_month": quantity,
                    "unit": unit,
                    "price": price,
                    "price_name": price_name,  # the row of "prices" that says the price's unit
                    "usd_per_month": quantity / per * price,
                }
            )
    for mappings, brokers in ((usage.kafka_mappings, "Kafka (Amazon MSK)"), (usage.mq_mappings, "Amazon MQ")):
        if mappings:
            lines.append(
                {
                    "item": f"{brokers} brokers for {mappings} mapping(s): instance-priced, not estimated",
                    "quantity_per_month": None,
                    "unit": "broker-hours",
                    "price": None,
                    "price_name": None,
                    "usd_per_month": None,
                }
            )
    return {
        "lines": lines,
        "total_usd_per_month": math.fsum(x["usd_per_month"] for x in lines if x["usd_per_month"] is not None),
        "prices": {name: {"usd": p.usd, "unit": p.unit, "note": p.note} for name, p in table.items()},
        "assumptions": list(ASSUMPTIONS),
    }
