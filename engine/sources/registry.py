"""Every source kind's profile, looked up by kind."""

from __future__ import annotations

from engine.model import SourceKind
from engine.sources import dynamodb, kafka, kinesis, mq, sqs
from engine.sources.profile import SourceProfile

PROFILES: dict[SourceKind, SourceProfile] = {
    p.kind: p
    for p in (sqs.PROFILE, kinesis.PROFILE, dynamodb.PROFILE, kafka.MSK, kafka.SELF_MANAGED, mq.PROFILE)
}


def profile_of(kind: SourceKind) -> SourceProfile:
    return PROFILES[kind]
