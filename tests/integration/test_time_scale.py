"""esm serve --time-scale N on kinesis-mock: a record's age is read on the scaled clock."""

from __future__ import annotations

import json
from typing import Any


def test_an_hour_of_record_age_expires_in_half_a_minute_at_120(
    poisoned: Any,
) -> None:
    with poisoned(
        data=["POISON"],
        engine={"time_scale": 120},
        timeout_s=60,
        BisectBatchOnFunctionError=False,
        MaximumRecordAgeInSeconds=3600,
        MaximumRetryAttempts=-1,
    ) as run:
        [message] = run.sqs.receive_message(QueueUrl=run.dlq_url, WaitTimeSeconds=5)["Messages"]
        failure = json.loads(message["Body"])
        assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
        assert failure["KinesisBatchInfo"]["startSequenceNumber"] == run.seqs[0]
        # 3,600 s of age at 120 times real time: 30 s, give or take a back-off (an hour would be 3,600 s)
        assert 25 <= run.took_s <= 60, run.took_s
        assert failure["requestContext"]["approximateInvokeCount"] > 1  # retried meanwhile, on back-off
