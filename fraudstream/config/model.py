"""Model hyperparameters: the ``model:`` section (network, optimiser, split, tuning).

One frozen object describes a model completely, so the same values build the offline model,
name a tuning trial and travel inside the saved artifact's metadata. The time split and the
tuning search space live here too: tuning varies exactly these fields and nothing else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fraudstream.config.base import Section

Activation = Literal["relu", "prelu"]
Initializer = Literal[
    "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "random_uniform"
]
OptimizerName = Literal["adam", "nadam", "adamax", "sgd"]
Taper = Literal["half", "constant"]
Imbalance = Literal["none", "class_weight", "oversample"]
Strategy = Literal["grid", "random", "bayesian", "hyperband"]


class SplitParams(Section):
    """How labelled history is cut by event time: train, then a gap, then validation.

    The gap stands for the label delay: frauds committed just before the end of the training
    window are not yet known when a model would be trained in production, and leaving a gap
    keeps rows of one fraud campaign from sitting on both sides of the cut.
    """

    train_days: float | None = Field(
        None, gt=0, description="days of training data from the first event; None = 2/3 of the span"
    )
    delay_days: float = Field(7.0, ge=0, description="gap between training and validation")
    validation_days: float | None = Field(
        None, gt=0, description="days of validation after the gap; None = everything left"
    )


class _Choices(Section):
    """A section whose every field is a list of values to choose from."""

    def grid_size(self) -> int:
        """Number of distinct combinations, i.e. the trials a full grid search runs."""
        size = 1
        for name in type(self).model_fields:
            size *= len(set(map(repr, getattr(self, name))))
        return size


class SearchSpace(_Choices):
    """Values tuning may pick for each hyperparameter; every dimension is a list of choices.

    Lists (not ranges) keep one meaning for every strategy: grid search enumerates the
    Cartesian product exactly, random/Bayesian/Hyperband sample from the same values. A
    ``null`` first width means the input-size rule (smallest power of two >= 2 x inputs).
    """

    first_width: list[int | None] = Field(default_factory=lambda: [None, 64, 128], min_length=1)
    n_layers: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    dropout: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.3], min_length=1)
    l1: list[float] = Field(default_factory=lambda: [0.0, 1e-5], min_length=1)
    l2: list[float] = Field(default_factory=lambda: [0.0, 1e-5, 1e-4], min_length=1)
    learning_rate: list[float] = Field(default_factory=lambda: [3e-4, 1e-3, 3e-3], min_length=1)
    optimizer: list[OptimizerName] = Field(
        default_factory=lambda: ["adam", "nadam", "adamax"], min_length=1
    )
    batch_size: list[int] = Field(default_factory=lambda: [64, 256], min_length=1)
    initializer: list[Initializer] = Field(
        default_factory=lambda: ["glorot_uniform", "he_normal"], min_length=1
    )

    @model_validator(mode="after")
    def _values_in_range(self) -> SearchSpace:
        checks = {
            "first_width": all(w is None or w >= 1 for w in self.first_width),
            "n_layers": all(n >= 1 for n in self.n_layers),
            "dropout": all(0.0 <= d < 1.0 for d in self.dropout),
            "l1": all(v >= 0 for v in self.l1),
            "l2": all(v >= 0 for v in self.l2),
            "learning_rate": all(v > 0 for v in self.learning_rate),
            "batch_size": all(v >= 1 for v in self.batch_size),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"search space values out of range in: {', '.join(bad)}")
        return self


class OnlineSearchSpace(_Choices):
    """What the prequential objective searches besides the network: the online learner's
    settings (the ``training:`` section's names) and the class weighting of the offline
    training it starts from (``model.imbalance``, ``model.fraud_weight``; null = balanced).

    The learning rate is the network's: the online learner continues with the offline
    optimiser, so ``search_space.learning_rate`` is the online step size too.
    """

    minibatch_size: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    replay_ratio: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0], min_length=1)
    replay_fraud_share: list[float] = Field(default_factory=lambda: [0.3, 0.5, 0.7], min_length=1)
    replay_steps: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    imbalance: list[Imbalance] = Field(default_factory=lambda: ["class_weight", "none"], min_length=1)
    fraud_weight: list[float | None] = Field(default_factory=lambda: [None], min_length=1)

    @model_validator(mode="after")
    def _values_in_range(self) -> OnlineSearchSpace:
        checks = {
            "minibatch_size": all(v >= 1 for v in self.minibatch_size),
            "replay_ratio": all(v >= 0 for v in self.replay_ratio),
            "replay_fraud_share": all(0.0 <= v <= 1.0 for v in self.replay_fraud_share),
            "replay_steps": all(0 <= v <= 16 for v in self.replay_steps),
            "fraud_weight": all(v is None or v > 0 for v in self.fraud_weight),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"online search space values out of range in: {', '.join(bad)}")
        return self


class TuningParams(Section):
    """How ``fraudstream tune`` searches; the CLI can override strategy and trial count.

    ``objective``: ``offline`` ranks trials by validation AP after offline training;
    ``prequential`` trains each trial offline on the training period, then replays the rest
    of the stream through the online learner (labels ``split.delay_days`` late) and ranks
    by the prequential AP of its last ``prequential_days`` days.
    """

    objective: Literal["offline", "prequential"] = "offline"
    prequential_days: float = Field(28.0, gt=0, description="the prequential objective's window: the last N days")
    online_space: OnlineSearchSpace = OnlineSearchSpace()
    strategy: Strategy = "random"
    max_trials: int = Field(20, ge=1)
    epochs: int = Field(10, ge=1, description="epochs per trial (Hyperband: its max_epochs)")
    hyperband_factor: int = Field(3, ge=2)
    executions_per_trial: int = Field(1, ge=1)
    search_space: SearchSpace = SearchSpace()


class ModelParams(Section):
    """Everything needed to build and train the scoring network.

    Dense layers only, so the network can also be evaluated in plain numpy (the fast
    scoring path). ``first_width`` None applies the input-size rule; ``taper`` "half" halves
    each further layer. ``fraud_weight`` None means fully balanced classes (legit/fraud count
    ratio): with ``class_weight`` it multiplies each fraud's loss, with ``oversample`` each
    fraud row appears that many times (rounded) in every epoch.
    """

    first_width: int | None = Field(None, ge=1, description="None = power of two >= 2 x inputs")
    n_layers: int = Field(2, ge=1, le=16, description="hidden layers")
    taper: Taper = "half"
    activation: Activation = "relu"
    initializer: Initializer = "glorot_uniform"
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    optimizer: OptimizerName = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD only")
    clipnorm: float | None = Field(None, gt=0, description="clip each gradient's norm")
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(20, ge=1)
    early_stopping_patience: int = Field(
        4, ge=0, description="epochs without a better val AP before stopping; 0 = never stop"
    )
    imbalance: Imbalance = "class_weight"
    # 10 rather than fully balanced (the legit/fraud ratio, 50-120 on the simulator): it
    # measured higher prequential AP after online learning (bench/bench_quality.py).
    fraud_weight: float | None = Field(10.0, gt=0, description="None = legit/fraud ratio")
    top_k: int = Field(100, ge=1, description="k of card precision@k")
    seed: int = 42
    split: SplitParams = SplitParams()
    tuning: TuningParams = TuningParams()

    @model_validator(mode="after")
    def _sgd_only_momentum(self) -> ModelParams:
        if self.momentum and self.optimizer != "sgd":
            raise ValueError("momentum applies to optimizer 'sgd' only")
        return self
