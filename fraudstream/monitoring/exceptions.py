"""Errors raised by the monitoring package."""

from fraudstream.errors import FraudstreamError


class MonitoringError(FraudstreamError):
    """Base class of monitoring errors."""


class MonitoringStateInvalid(MonitoringError):
    """Saved prequential or drift state has another schema version or is malformed."""


class ServerStartFailed(MonitoringError):
    """The monitoring HTTP server could not bind or did not start in time."""


class IngestUnavailable(MonitoringError):
    """Not every transaction of a request was acknowledged by the transactions topic: the
    scoring service raises it and the API answers 503 (some may be stored, so a resent
    request may ingest them twice)."""
