"""Errors of the I/O edge."""

from fraudstream.errors import FraudstreamError


class SinkFailed(FraudstreamError):
    """Outputs could not be made durable (the broker did not acknowledge them in time)."""


class SourceInvalid(FraudstreamError):
    """An input file cannot be read as events."""


class KafkaConnectFailed(FraudstreamError):
    """The broker cannot be reached or refuses this client at start: the message names why
    (connection refused, TLS certificate not trusted, no Kafka answer, SASL authentication)."""


class KafkaMemberFenced(FraudstreamError):
    """Another consumer joined the group with this daemon's static instance id: the broker
    gave it this member's partitions, so this one must stop before it does their work twice."""
