"""The scoring network: build, train offline, tune, score fast in numpy, keep learning online.

Public names are imported lazily: ``import fraudstream.models`` stays cheap, and TensorFlow
loads only when a model is actually built, loaded or scored.

>>> from fraudstream.models import default_width
>>> default_width(15)
32
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ArtifactExists": "fraudstream.models.exceptions",
    "ArtifactInvalid": "fraudstream.models.exceptions",
    "LearnerStateInvalid": "fraudstream.models.exceptions",
    "ModelError": "fraudstream.models.exceptions",
    "ModelUnsupported": "fraudstream.models.exceptions",
    "TrainingDataInvalid": "fraudstream.models.exceptions",
    "TuningFailed": "fraudstream.models.exceptions",
    "build_model": "fraudstream.models.builder",
    "compile_model": "fraudstream.models.builder",
    "default_width": "fraudstream.models.builder",
    "layer_widths": "fraudstream.models.builder",
    "Scorer": "fraudstream.models.scorer",
    "OnlineLearner": "fraudstream.models.learner",
    "Artifact": "fraudstream.models.artifact",
    "load_artifact": "fraudstream.models.artifact",
    "save_artifact": "fraudstream.models.artifact",
    "verify_artifact": "fraudstream.models.artifact",
    "average_precision": "fraudstream.models.evaluation",
    "roc_auc": "fraudstream.models.evaluation",
    "card_precision_at_k": "fraudstream.models.evaluation",
    "card_precision_per_day": "fraudstream.models.evaluation",
    "fit_model": "fraudstream.models.training",
    "prepare_dataset": "fraudstream.models.training",
    "time_split": "fraudstream.models.training",
    "train_offline": "fraudstream.models.training",
    "run_search": "fraudstream.models.tuning",
    "tune_offline": "fraudstream.models.tuning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fraudstream.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
