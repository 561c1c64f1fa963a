"""The one batch pipeline every runner shares, stage by stage.

A runner only schedules (pollers for queues; shards and lanes for streams) and hands each batch to these
stages: collect (engine.batching's Batcher, fed by the runner), filter (engine.filtering), invoke with the
throttle/unreachable budget (:mod:`.invoking`), classify the response (:mod:`.verdict`), retry a stream
batch (engine.stream_policy), settle (acknowledge, :mod:`.checkpoints` for positions, :mod:`.failures` for
records given up on), and record what happened (:mod:`.journal`: the journal and LastProcessingResult).
"""
