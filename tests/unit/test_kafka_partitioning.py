"""The sink picks partitions itself; they must be the ones Kafka's default partitioner picks."""

from kafka.partitioner.default import DefaultPartitioner

from fraudstream.consumers.kafka import key_hash


class Cluster:
    def __init__(self, n: int):
        self.n = n

    def topics(self):
        return {"scores"}

    def partitions_for_topic(self, topic):
        return set(range(self.n))

    def available_partitions_for_topic(self, topic):
        return set(range(self.n))


def test_key_hash_partitions_like_the_default_partitioner():
    default = DefaultPartitioner()
    keys = [f"C{i:05d}".encode() for i in range(3_000)] + [b"", b"\x00\xff", "café".encode()]
    for n in (1, 3, 4, 7, 12):
        for key in keys:
            assert key_hash(key) % n == default.partition("scores", key, key, None, None, Cluster(n))
