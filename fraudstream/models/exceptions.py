"""Errors raised by the model package, all under :class:`fraudstream.errors.FraudstreamError`."""

from __future__ import annotations

from pathlib import Path

from fraudstream.errors import FraudstreamError


class ModelError(FraudstreamError):
    """Base of the model package's errors."""


class ArtifactInvalid(ModelError):
    """A saved artifact cannot be used: missing, corrupted (checksum) or incompatible.

    ``reason`` is a short stable code (``missing``, ``corrupt``, ``incompatible``) so a
    caller can tell "fall back to the previous version" from "fix the configuration".
    """

    def __init__(self, path: Path | str, reason: str, detail: str):
        self.path = Path(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"artifact {self.path} is {reason}: {detail}")


class ArtifactExists(ModelError):
    """The target of a save already exists and overwriting was not asked for."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        super().__init__(f"{self.path} already exists (pass overwrite to replace it)")


class ModelUnsupported(ModelError):
    """A Keras model holds a layer the numpy scorer cannot evaluate."""


class TrainingDataInvalid(ModelError):
    """The events cannot be split or trained on: too short a span, no frauds, no labels."""


class TrainingResumeInvalid(ModelError):
    """A training run's per-epoch state cannot be resumed (another run's, or unreadable)."""


class LearnerStateInvalid(ModelError):
    """A saved learner state does not fit this model (schema, shapes or optimiser)."""


class TuningFailed(ModelError):
    """The search cannot run or resume (changed space, every trial failed...)."""
