"""What the daemon decides about training: adapting after a drift, and the model requests
of ``fraudstream model promote|rollback``.

The monitor only reports a drift (:mod:`fraudstream.monitoring.daemon_monitor`); the host
that drives the engine turns the report into :meth:`DriftAdaptation.start`
(:meth:`fraudstream.daemon.host.PipelineHost.act_on_drift`). The promote/rollback *rule*
lives with the champion in :mod:`fraudstream.daemon.lifecycle`; requests from the command
line are applied here, between two batches.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.exceptions import ModelRequestInvalid
from fraudstream.daemon.lifecycle import PROMOTE, ROLLBACK, ModelRequest, ModelRequests, load_version
from fraudstream.errors import FraudstreamError
from fraudstream.models.online_training import OnlineTrainer

if TYPE_CHECKING:
    from fraudstream.daemon.engine import Engine

log = logging.getLogger(__name__)


class DriftAdaptation:
    """After a drift: learn faster and mostly from recent rows, for a number of steps.

    ``until_step`` (the trainer step the adaptation ends at, None when not adapting) and
    ``normal`` (the learning rate and replay ratio to return to) are saved in checkpoints.
    """

    def __init__(self, learner: Any, trainer: OnlineTrainer):
        self.learner = learner
        self.trainer = trainer
        self.until_step: int | None = None
        self.normal: tuple[float, float] = (0.0, 0.0)

    def start(self, lr_multiplier: float, recent_share: float, steps: int, replay_keep: float = 1.0) -> None:
        """Adapt for ``steps`` steps; the caller has drained the learning thread.

        ``recent_share`` is the share of fresh rows in a training batch (the rest is replay).
        ``replay_keep`` is the share of the replay reservoir kept: the rows remembered from
        before the drift teach the old pattern, and replaying them pulls the model back to
        it (frauds, kept longest, most of all). A second call while adapting restarts the
        period from the original settings and keeps the reservoir: its rows are recent.
        """
        if self.until_step is None:
            self.normal = (self.learner.learning_rate, self.trainer.replay_ratio)
            if replay_keep < 1.0:
                dropped = self.trainer.reservoir.forget(replay_keep)
                log.info("adapting: dropped %d rows learned before the drift from the replay reservoir", dropped)
        lr, ratio = self.normal
        self.learner.set_learning_rate(lr * lr_multiplier)
        self.trainer.replay_ratio = ratio if recent_share <= 0 else (1.0 - recent_share) / recent_share
        self.until_step = self.trainer.steps + steps
        log.info("adapting for %d steps: learning rate %.2e, replay ratio %.2f", steps, lr * lr_multiplier, self.trainer.replay_ratio)

    def end_if_due(self) -> None:
        """Back to the normal settings once the adaptation's steps are done (learning thread)."""
        if self.until_step is not None and self.trainer.steps >= self.until_step:
            lr, ratio = self.normal
            self.learner.set_learning_rate(lr)
            self.trainer.replay_ratio = ratio
            self.until_step = None
            log.info("adaptation over: learning rate %.2e, replay ratio %.2f", lr, ratio)

    def meta(self) -> dict[str, Any]:
        """The checkpoint manifest's part (written beside the trainer's replay ratio)."""
        return {"adapt_until_step": self.until_step, "normal_training": list(self.normal)}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.until_step = meta.get("adapt_until_step")
        self.normal = tuple(meta.get("normal_training", (0.0, 0.0)))
        if self.until_step is not None:
            self.trainer.replay_ratio = float(meta.get("replay_ratio", self.trainer.replay_ratio))


def apply_model_request(engine: Engine, request: ModelRequest, store: CheckpointStore) -> dict[str, Any]:
    """Apply a ``fraudstream model promote|rollback`` request; the lifecycle event.

    ``promote`` serves the learner (or ``to_version`` from a checkpoint); ``rollback``
    serves ``to_version`` and resets the learner to it as well, so learning restarts from
    there. Raises :class:`FraudstreamError` subclasses naming why a request is refused.
    """
    lifecycle = engine.lifecycle
    if lifecycle is None:
        raise ModelRequestInvalid("the model lifecycle is off (lifecycle.enabled: false)")
    engine.drain()  # the learner and the champion change below, not while a step runs
    learner, version, now = engine.learner, engine.model_version, engine.pending.now
    why = f"requested {request.requested_at or 'from the command line'}"
    if request.action == PROMOTE and request.to_version is None:
        return lifecycle.promote(learner, version, now, why, trigger="manual")
    if request.to_version == version:
        weights = learner.get_weights()
    elif request.to_version == lifecycle.champion_version:
        weights = lifecycle.champion_weights()
    else:
        weights = load_version(store, request.to_version)
    action = PROMOTE if request.action == PROMOTE else ROLLBACK
    event = lifecycle.set_champion(weights, request.to_version, version, now, why, action=action)
    if action == ROLLBACK:
        learner.set_weights(weights)
        learner.reset_optimizer()
    return event


def handle_model_requests(engine: Engine, requests: ModelRequests, store: CheckpointStore) -> bool:
    """Apply a waiting request if any (cheap when none); True when the champion changed
    since the last checkpoint, by a request or by the rule, so the caller checkpoints."""
    request = requests.take()
    if request is not None:
        try:
            event = apply_model_request(engine, request, store)
        except FraudstreamError as exc:
            log.warning("model request refused (%s): %s", request.describe(), exc)
            requests.acknowledge(request, "failed", str(exc))
        else:
            requests.acknowledge(request, "applied", f"{request.describe()}: done", event=event,
                                 champion_version=engine.served_version, challenger_version=engine.model_version)
    return engine.lifecycle is not None and engine.lifecycle.changed
