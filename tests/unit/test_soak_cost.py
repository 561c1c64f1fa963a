"""soak.cost: a soak's counts extrapolated to a 30-day month and priced line by line (figures by hand)."""

from __future__ import annotations

import pytest

from soak.cost import PRICES, Usage, estimate

#: a thousandth of a month: every count here is a thousandth of its monthly figure
SHORT = 2592.0


def _usd(result: dict[str, object], item: str) -> float:
    lines = result["lines"]
    assert isinstance(lines, list)
    (line,) = [x for x in lines if x["item"] == item]
    value = line["usd_per_month"]
    assert isinstance(value, float)
    return value


def test_each_item_by_hand() -> None:
    usage = Usage(
        duration_s=SHORT,
        lambda_invocations=1_000,  # 1M a month: $0.20
        lambda_gb_seconds=0.6,  # 600 GB-s a month: $0.01
        sqs_requests=2_000,  # 2M a month: $0.80
        kinesis_shards=2,  # 1,440 shard-hours whatever the duration: $21.60
        kinesis_put_units=1_000,  # 1M a month: $0.014
        dynamodb_write_units=1_000,  # 1M a month: $0.625
    )
    result = estimate(usage)
    assert _usd(result, "Lambda requests") == pytest.approx(0.20)
    assert _usd(result, "Lambda compute (x86)") == pytest.approx(0.01, rel=1e-4)
    assert _usd(result, "SQS requests (standard)") == pytest.approx(0.80)
    assert _usd(result, "Kinesis shard-hours") == pytest.approx(21.60)
    assert _usd(result, "Kinesis PUT payload units") == pytest.approx(0.014)
    assert _usd(result, "DynamoDB writes (on-demand)") == pytest.approx(0.625)
    assert result["total_usd_per_month"] == pytest.approx(
        0.20 + 0.01 + 0.80 + 21.60 + 0.014 + 0.625, rel=1e-6
    )
    (requests,) = [x for x in result["lines"] if x["item"] == "Lambda requests"]
    assert requests["quantity_per_month"] == pytest.approx(1_000_000)
    assert requests["unit"] == "requests" and requests["price"] == 0.20
    assert result["prices"][requests["price_name"]]["unit"] == "USD per 1M requests"


def test_fifo_requests_and_only_items_with_traffic() -> None:
    result = estimate(Usage(duration_s=SHORT, sqs_requests=2_000, sqs_fifo=True))
    assert [x["item"] for x in result["lines"]] == ["SQS requests (fifo)"]
    assert result["total_usd_per_month"] == pytest.approx(1.00)
    assert estimate(Usage(duration_s=60))["lines"] == []


def test_price_table_states_units_sources_and_assumptions() -> None:
    result = estimate(Usage(duration_s=60))
    assert set(result["prices"]) == set(PRICES)
    for price in result["prices"].values():
        assert price["unit"].startswith("USD per ")
        assert "aws.amazon.com/" in price["note"] and "2026" in price["note"]
    assert result["prices"]["lambda_gb_second"]["usd"] == 0.0000166667
    assert any("free tiers" in a and "not applied" in a for a in result["assumptions"])
    assert any("DynamoDB Streams" in a and "free" in a for a in result["assumptions"])


def test_prices_override_by_key() -> None:
    result = estimate(Usage(duration_s=SHORT, lambda_invocations=1_000), {"lambda_request_per_million": 0.25})
    assert result["total_usd_per_month"] == pytest.approx(0.25)
    assert result["prices"]["lambda_request_per_million"] == {
        "usd": 0.25,
        "unit": "USD per 1M requests",
        "note": "given by the caller",
    }
    assert PRICES["lambda_request_per_million"].usd == 0.20  # the default table is untouched


def test_unknown_price_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"lambda_requests.*known: dynamodb_write_unit_per_million, "):
        estimate(Usage(duration_s=60), {"lambda_requests": 0.2})


def test_kafka_and_mq_are_instance_priced() -> None:
    result = estimate(Usage(duration_s=SHORT, lambda_invocations=1_000, kafka_mappings=2, mq_mappings=1))
    brokers = [x for x in result["lines"] if x["usd_per_month"] is None]
    assert [x["item"] for x in brokers] == [
        "Kafka (Amazon MSK) brokers for 2 mapping(s): instance-priced, not estimated",
        "Amazon MQ brokers for 1 mapping(s): instance-priced, not estimated",
    ]
    assert all(x["unit"] == "broker-hours" and x["price"] is None for x in brokers)
    assert result["total_usd_per_month"] == pytest.approx(0.20)  # brokers are not in the total


def test_duration_must_be_positive() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        estimate(Usage(duration_s=0))
