"""Errors raised by the monitoring package."""

from fraudstream.errors import FraudstreamError


class MonitoringError(FraudstreamError):
    """Base class of monitoring errors."""


class MonitoringStateInvalid(MonitoringError):
    """Saved prequential or drift state has another schema version or is malformed."""


class ServerStartFailed(MonitoringError):
    """The monitoring HTTP server could not bind or did not start in time."""
