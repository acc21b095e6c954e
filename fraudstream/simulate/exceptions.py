"""Errors of the simulator, under the one root ``FraudstreamError``."""

from fraudstream.errors import FraudstreamError


class SimulatorError(FraudstreamError):
    """Base of the simulator's errors."""


class OutputFormatUnknown(SimulatorError):
    """A file format was neither given nor inferable from the path's suffix."""


class KafkaProduceFailed(SimulatorError):
    """The broker could not be reached or refused some of the simulated events.

    ``failed`` counts the events whose delivery failed (0 when the producer never started).
    """

    def __init__(self, message: str, failed: int = 0):
        self.failed = failed
        super().__init__(message)
