"""The rows of bench/scale_bench.py, one module per target of issue 13: idle.py (idle cost of 1,000
SQS mappings, 200 Kinesis shards, 100 Kafka partitions; the API's latency meanwhile), shards.py (64-shard
Kinesis and 64-partition Kafka drains against a raw client), memory.py (peak RSS while a backlog
drains), endurance.py (an hour of steady load with errors). Each offers ``async def rows(args) ->
list[Row]``; scale_bench.py runs the ones asked for and prints one table."""
