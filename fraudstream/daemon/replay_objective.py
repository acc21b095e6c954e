"""The prequential tuning objective: a trial is judged by how it does once it keeps learning.

``fraudstream tune --objective prequential`` trains each trial offline on the training
period, then hands the model here: the rest of the events file is replayed through the
daemon's own pipeline (:func:`fraudstream.daemon.replay.run_replay`), every transaction
scored before its label is learned, labels arriving ``model.split.delay_days`` after their
transaction, with the trial's online settings (mini-batch size, replay ratio and fraud
share, replay steps). The score is the prequential AP of the last ``prequential_days`` days.
Events before the training period's end only fill the feature windows, as a daemon started
that day with a warm history would have them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fraudstream.config import Settings
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.replay import run_replay
from fraudstream.features import FeaturePipeline


class ReplayObjective:
    """``evaluate(model, params, online)`` for :func:`fraudstream.models.tuning.tune_offline`.

    ``feature_state``: the fitted feature state the trials were trained with (normaliser;
    windows start empty and fill from the file). ``start``: Unix seconds, the end of the
    training period; nothing before it is scored or learned.
    """

    def __init__(self, settings: Settings, events: Path, *, feature_state: dict[str, Any], start: float):
        self.settings = settings
        self.events = Path(events)
        self.feature_state = feature_state
        self.start = start
        self.days = settings.model.tuning.prequential_days
        self.label_delay = f"{settings.model.split.delay_days}d"

    def __call__(self, model: Any, params: Any, online: dict[str, Any]) -> dict[str, float]:
        from fraudstream.models.learner import OnlineLearner

        settings = self.settings.model_copy(update={
            "model": params, "training": self.settings.training.model_copy(update=online),
        })
        features = FeaturePipeline(settings.features)
        features.load_state_dict(self.feature_state)
        pipeline = Engine(settings, features, OnlineLearner(model, params), "tuning trial")
        result, _ = run_replay(settings, self.events, label_delay=self.label_delay, pipeline=pipeline,
                               start=self.start)
        m = result.last_days(self.days)
        # a window without both classes has no AP: NaN, which KerasTuner ranks last
        number = lambda v: float("nan") if v is None else float(v)  # noqa: E731
        return {
            "prequential_ap": number(m["average_precision"]),
            "prequential_roc_auc": number(m["roc_auc"]),
            "prequential_card_precision": number(m["card_precision_at_100"]),
        }
