"""What every host of the per-batch step shows the monitor, and what it does with a drift report.

The Kafka daemon, the HTTP-only server and a file replay each drive an
:class:`~fraudstream.daemon.engine.Engine` and hand their monitor a read-only view of
it (:class:`fraudstream.monitoring.host.MonitoredHost`). :class:`EngineHost` answers that
view from the engine, with the answers of a host without Kafka; the Kafka daemon
overrides those. The monitor only reports; :meth:`EngineHost.act_on_drift` is where a
host turns a drift report into an action.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fraudstream.daemon.engine import Engine
from fraudstream.features import FeaturePipeline
from fraudstream.monitoring.daemon_monitor import DaemonMonitor
from fraudstream.monitoring.drift import DriftReport
from fraudstream.monitoring.host import LifecycleView


class EngineHost(ABC):
    """The monitor's view of a host (see :class:`fraudstream.monitoring.host.MonitoredHost`)."""

    engine: Engine
    monitor: DaemonMonitor | None = None

    # -- the view -------------------------------------------------------------------------

    @property
    def features(self) -> FeaturePipeline:
        return self.engine.features

    @property
    def served_version(self) -> int:
        return self.engine.served_version

    def score_served(self, X: np.ndarray) -> np.ndarray:
        return self.engine.score_served(X)

    @property
    def lifecycle(self) -> LifecycleView | None:
        return self.engine.lifecycle

    @property
    def drift_reference(self) -> dict[str, Any] | None:
        return self.engine.drift_reference

    @property
    def restored_monitoring_state(self) -> dict[str, dict[str, Any]]:
        return self.engine.extra_state

    def pending_rows(self) -> int:
        return len(self.engine.pending)

    def replay_filled(self) -> tuple[int, int]:
        return tuple(self.engine.trainer.reservoir.filled)

    def learning_backlog(self) -> int | None:
        background = self.engine.background
        return None if background is None else background.unfinished()

    def assigned_partitions(self) -> set[tuple[str, int]]:
        return set()

    def broker_reachable(self) -> bool:
        return False

    def consumer_lag(self) -> Mapping[tuple[str, int], int] | None:
        return None

    # -- the decisions ----------------------------------------------------------------------

    @abstractmethod
    def request_checkpoint(self, reason: str, tags: list[str] | None = None) -> None:
        """Checkpoint after the batch in hand (or, without checkpoints, note the request)."""

    def flush_monitor(self) -> None:
        """Flush the monitor and act on its reports: before a checkpoint, which covers every
        processed row (and any adaptation a drift in them starts)."""
        if self.monitor is not None:
            self.act_on_drift(self.monitor.flush(self))

    def act_on_drift(self, reports: Iterable[DriftReport]) -> None:
        """Carry out the action each report names: ``adapt`` changes training for a while
        (:meth:`Engine.adapt`), ``checkpoint`` keeps the model as it was at the drift."""
        for report in reports:
            if report.action == "adapt" and report.adapt is not None:
                a = report.adapt
                self.engine.adapt(a.lr_multiplier, a.recent_share, a.steps, a.replay_keep)
            elif report.action == "checkpoint":
                self.request_checkpoint(reason="drift", tags=["pre-drift"])
