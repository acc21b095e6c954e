"""Errors of the feature module. Invalid events raise :class:`fraudstream.errors.EventInvalid`."""

from fraudstream.errors import FraudstreamError


class FeatureStateInvalid(FraudstreamError):
    """A saved feature state cannot be loaded: other schema version, other spec, bad arrays."""


class FeatureInputInvalid(FraudstreamError):
    """A table or file cannot be read as events: unknown format, unreadable file."""


class ReferenceInvalid(FraudstreamError):
    """A feature reference histogram (for PSI) is malformed or does not match the rows."""
