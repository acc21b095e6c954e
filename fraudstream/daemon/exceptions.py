"""Errors raised by the daemon package, all under :class:`fraudstream.errors.FraudstreamError`."""

from fraudstream.errors import FraudstreamError


class DaemonError(FraudstreamError):
    """Base of the daemon package's errors."""


class CheckpointCorrupt(DaemonError):
    """A checkpoint's manifest is missing or a file does not match it."""


class CheckpointDirBusy(DaemonError):
    """Another live process writes checkpoints to the same directory."""


class LearningFailed(DaemonError, RuntimeError):
    """A job failed on the learning thread; the original error is the ``__cause__``.

    Still a ``RuntimeError``, as it was before it joined the project's errors.
    """


class ModelVersionUnknown(DaemonError):
    """No valid checkpoint in the directory holds the requested model version."""


class ModelRequestInvalid(DaemonError):
    """A model request file that cannot be read or names an unknown action."""


class LifecycleStateInvalid(DaemonError):
    """Lifecycle state from a checkpoint that this version cannot read."""
