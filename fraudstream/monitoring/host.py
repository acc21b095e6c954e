"""The read-only view of a running host that the monitor is handed.

A host is whatever drives the daemon's per-batch step: the Kafka loop
(:class:`fraudstream.daemon.app.Daemon`), the HTTP-only server
(:class:`fraudstream.daemon.serve.ApiHost`) or a file replay
(:class:`fraudstream.daemon.replay.ReplayHost`). Monitoring sits below the daemon and may
not import it, so the daemon's side of the contract is written down here, once: what the
monitor reads, never what it may change. Reports go back the other way as return values
(:meth:`fraudstream.monitoring.daemon_monitor.DaemonMonitor.flush`), and the host decides
what they mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # a view, not a dependency: importing the monitor stays light
    from fraudstream.features import FeaturePipeline


class LifecycleView(Protocol):
    """What the monitor exports of the champion/challenger lifecycle."""

    @property
    def promotions(self) -> int: ...

    @property
    def rollbacks(self) -> int: ...

    def window_metrics(self) -> dict[str, Any]: ...


@runtime_checkable
class MonitoredHost(Protocol):
    """A running host, as the monitor sees it."""

    @property
    def features(self) -> FeaturePipeline:
        """The live feature pipeline: names, first event and warm-up times."""

    @property
    def served_version(self) -> int:
        """The model version whose scores are served."""

    def score_served(self, X: np.ndarray) -> np.ndarray:
        """Scores of the served model (the drift monitor re-scores its reference sample)."""

    @property
    def lifecycle(self) -> LifecycleView | None:
        """The champion/challenger lifecycle, None when it is off."""

    @property
    def drift_reference(self) -> dict[str, Any] | None:
        """Feature histograms of the training data, None without them."""

    @property
    def restored_monitoring_state(self) -> dict[str, dict[str, Any]]:
        """Monitoring state restored from a checkpoint (empty when started afresh)."""

    def pending_rows(self) -> int:
        """Scored rows waiting for their label."""

    def replay_filled(self) -> tuple[int, int]:
        """Rows of the replay reservoir, (legit, fraud)."""

    def learning_backlog(self) -> int | None:
        """Learning jobs not finished yet; None when learning runs inline."""

    def assigned_partitions(self) -> set[tuple[str, int]]:
        """Kafka partitions held now (empty without Kafka)."""

    def broker_reachable(self) -> bool:
        """Whether a Kafka broker is connected (False without Kafka)."""

    def consumer_lag(self) -> Mapping[tuple[str, int], int] | None:
        """Messages left to read per assigned partition; None without Kafka."""
