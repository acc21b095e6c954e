"""Champion / challenger: which model serves the scores, and when the online learner may.

Every training step changes the online learner. Served directly, a bad stretch of labels, a
learning rate far too high or a drift half-learnt would reach the scores at once. So the
served model, the *champion*, is a frozen copy with its own weights and version; the
learner is the *challenger*. Both score every transaction (two numpy forward passes, tens
of microseconds per batch). When a label joins a scored row, the pair of scores the row got
*before* any learning from it enters a window of the last ``window`` labelled rows, and:

* **promote** when the challenger's average precision beats the champion's by more than
  ``promote_margin`` over at least ``min_labels`` rows: the champion takes the learner's
  weights and version;
* **roll back** when it falls more than ``rollback_margin`` below: the learner is reset to
  the champion's weights (optimiser moments forgotten) and learns again from there;
* otherwise keep the champion.

After any change the window starts again with rows scored after it (by event time), so a
decision always compares the two models as they are now, never scores of a model gone.

Manual changes come as a request file that ``fraudstream model promote|rollback`` writes
into the checkpoint directory (:class:`ModelRequests`); the daemon applies it between two
batches, acknowledges it and checkpoints, so no restart is needed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.config import LifecycleSettings
from fraudstream.daemon.checkpoint import CheckpointInfo, CheckpointStore
from fraudstream.daemon.exceptions import LifecycleStateInvalid, ModelRequestInvalid, ModelVersionUnknown
from fraudstream.daemon.state_io import read_state
from fraudstream.durable import write_json
from fraudstream.models.evaluation import average_precision, roc_auc
from fraudstream.monitoring.loss import log_loss

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PROMOTE = "promote"
ROLLBACK = "rollback"
HISTORY_KEPT = 100  # lifecycle events kept in the state (the log has them all)
REQUEST_FILE = "model-request.json"
ACK_FILE = "model-request.ack.json"
REQUEST_CHECK_EVERY_S = 1.0


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def promotion_verdict(champion_ap: float | None, challenger_ap: float | None, rows: int,
           settings: LifecycleSettings) -> str | None:
    """``"promote"``, ``"rollback"`` or None (keep the champion), from the window's figures.

    >>> s = LifecycleSettings(window=100, min_labels=50, promote_margin=0.02, rollback_margin=0.05)
    >>> [promotion_verdict(0.50, challenger, 60, s) for challenger in (0.53, 0.51, 0.44)]
    ['promote', None, 'rollback']
    >>> promotion_verdict(0.50, 0.90, 49, s) is None  # too few labelled rows to judge
    True
    """
    if rows < settings.min_labels or champion_ap is None or challenger_ap is None:
        return None
    if challenger_ap > champion_ap + settings.promote_margin:
        return PROMOTE
    if challenger_ap < champion_ap - settings.rollback_margin:
        return ROLLBACK
    return None


def _model_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    both = labels.size > 0 and 0 < labels.sum() < labels.size
    return {
        "average_precision": float(average_precision(labels, scores)) if labels.sum() > 0 else None,
        "roc_auc": float(roc_auc(labels, scores)) if both else None,
        "log_loss": log_loss(labels, scores),
        "mean_score": float(scores.mean()) if labels.size else None,
    }


class ShadowWindow:
    """The last ``size`` labelled rows: the champion's score, the challenger's, the label.

    >>> w = ShadowWindow(3)
    >>> w.add_many([0.9, 0.1, 0.2, 0.8], [0.2, 0.7, 0.9, 0.1], [1, 0, 0, 1])
    >>> m = w.metrics()
    >>> m["rows"], m["frauds"], m["champion"]["average_precision"], m["challenger"]["average_precision"]
    (3, 1, 1.0, 0.3333333333333333)
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._reset()

    def _reset(self) -> None:
        self._scores = np.zeros((self.size, 2), np.float64)  # columns: champion, challenger
        self._labels = np.zeros(self.size, np.int8)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._reset()

    def add_many(self, champion, challenger, labels) -> None:
        pair = np.column_stack([np.asarray(champion, np.float64).ravel(), np.asarray(challenger, np.float64).ravel()])
        y = np.asarray(labels).ravel().astype(np.int8)
        if len(pair) != len(y):
            raise ValueError(f"{len(pair)} score pairs but {len(y)} labels")
        if len(y) > self.size:
            pair, y = pair[-self.size:], y[-self.size:]
        idx = (self._next + np.arange(len(y))) % self.size
        self._scores[idx] = pair
        self._labels[idx] = y
        self._next = int((self._next + len(y)) % self.size)
        self._count = min(self.size, self._count + len(y))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(champion scores, challenger scores, labels), oldest first."""
        idx = (self._next - self._count + np.arange(self._count)) % self.size
        return self._scores[idx, 0], self._scores[idx, 1], self._labels[idx]

    def metrics(self) -> dict[str, Any]:
        """Prequential AP, ROC AUC, log loss and mean score of each model over the window."""
        champion, challenger, y = self.arrays()
        y = y.astype(np.float64)
        return {
            "rows": int(y.size),
            "frauds": int(y.sum()),
            "champion": _model_metrics(y, champion),
            "challenger": _model_metrics(y, challenger),
        }

    def state_dict(self) -> dict[str, Any]:
        champion, challenger, y = self.arrays()
        return {"champion": champion.copy(), "challenger": challenger.copy(), "labels": y.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        if len(state["labels"]):
            self.add_many(state["champion"], state["challenger"], state["labels"])


@dataclass
class ModelRequest:
    """What ``fraudstream model promote|rollback`` asks of the daemon."""

    action: str  # "promote" | "rollback"
    to_version: int | None = None  # None with "promote": the current challenger
    id: str = ""
    requested_at: str = ""

    def describe(self) -> str:
        target = "the challenger" if self.to_version is None else f"version {self.to_version}"
        return f"{self.action} to {target}"


class ModelLifecycle:
    """The champion (its own weight copy, version and scorer), the comparison window and
    the history of promotions and rollbacks; see the module docstring for the rules.

    ``learner`` arguments are :class:`~fraudstream.models.learner.OnlineLearner` objects
    (``get_weights``, ``set_weights``, ``reset_optimizer``).

    The champion lives in two model copies used in turn: a change fills the idle one, then
    swaps the (scorer, version) pair in one assignment, so a thread that scores while
    another promotes gets one model's scores with that model's version, never a mix. The
    window and counters are read by the API and metrics threads while the learning thread
    updates them, so those go under one lock.
    """

    def __init__(self, settings: LifecycleSettings, model, version: int):
        from fraudstream.models.builder import clone_network
        from fraudstream.models.scorer import Scorer

        self.settings = settings
        weights = model.get_weights()
        self._models = [clone_network(model) for _ in range(2)]  # the champion's own weights
        for copy in self._models:
            copy.set_weights(weights)
        self._scorers = [Scorer(copy) for copy in self._models]
        self._active = 0
        self._serving = (self._scorers[0], int(version))
        self.window = ShadowWindow(settings.window)
        self.check_every = max(1, settings.window // 50)
        self._lock = threading.RLock()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.since = -math.inf  # event time of the last change: rows scored before it are left out
        self.history: list[dict[str, Any]] = []
        self.promotions = 0
        self.rollbacks = 0
        self.rows_seen = 0
        self.rows_stale = 0  # joined rows scored before the last change, left out
        self._unchecked = 0
        self.changed = False  # a new champion (or a manual change) not yet in a checkpoint

    # -- serving ------------------------------------------------------------------------------

    @property
    def champion_version(self) -> int:
        return self._serving[1]

    @champion_version.setter
    def champion_version(self, version: int) -> None:
        self._serving = (self._serving[0], int(version))

    def score_many(self, X: np.ndarray) -> np.ndarray:
        """The champion's scores: the ones served."""
        return self._serving[0].score_many(X)

    def score_with_version(self, X: np.ndarray) -> tuple[np.ndarray, int]:
        """The champion's scores and its version, from one and the same champion."""
        scorer, version = self._serving
        return scorer.score_many(X), version

    def champion_weights(self) -> list[np.ndarray]:
        return [np.array(w, copy=True) for w in self._models[self._active].get_weights()]

    def _serve(self, weights: list[np.ndarray], version: int) -> None:
        idle = 1 - self._active
        self._models[idle].set_weights(weights)
        self._scorers[idle].refresh()
        self._serving = (self._scorers[idle], int(version))
        self._active = idle

    # -- evidence and the rule ------------------------------------------------------------------

    def observe_many(self, champion, challenger, labels, times) -> None:
        """Labelled rows with the score each model gave them before learning from them."""
        with self._lock:
            keep = np.asarray(times, np.float64) > self.since
            self.rows_seen += int(keep.sum())
            self.rows_stale += int((~keep).sum())
            if keep.any():
                self.window.add_many(np.asarray(champion)[keep], np.asarray(challenger)[keep], np.asarray(labels)[keep])
                self._unchecked += int(keep.sum())

    def check(self, learner, version: int, event_time: float) -> dict[str, Any] | None:
        """Apply the rule when enough new rows came in since the last look; the event or None."""
        if self._unchecked < self.check_every:
            return None
        self._unchecked = 0
        m = self.window_metrics()
        action = promotion_verdict(m["champion"]["average_precision"], m["challenger"]["average_precision"],
                                   m["rows"], self.settings)
        if action is None:
            return None
        why = (f"challenger AP {m['challenger']['average_precision']:.4f} vs champion "
               f"{m['champion']['average_precision']:.4f} over {m['rows']} labelled rows")
        if action == PROMOTE:
            return self.promote(learner, version, event_time, why, m)
        return self.reset_challenger(learner, version, event_time, why, m)

    # -- changes -----------------------------------------------------------------------------

    def promote(self, learner, version: int, event_time: float, reason: str,
                metrics: dict[str, Any] | None = None, trigger: str = "rule") -> dict[str, Any]:
        """The learner's weights and version become the champion's."""
        return self._set_champion(learner.get_weights(), version, version, event_time, PROMOTE, reason, metrics, trigger)

    def set_champion(self, weights: list[np.ndarray], to_version: int, challenger_version: int,
                     event_time: float, reason: str, action: str = PROMOTE,
                     trigger: str = "manual") -> dict[str, Any]:
        """Serve ``weights`` as version ``to_version`` (a version kept in a checkpoint)."""
        return self._set_champion(weights, to_version, challenger_version, event_time, action, reason, None, trigger)

    def _set_champion(self, weights, to_version, challenger_version, event_time, action, reason, metrics, trigger):
        before = self.champion_version
        self._serve(weights, to_version)
        if action == PROMOTE:
            self.promotions += 1
        else:
            self.rollbacks += 1
        return self._record(action, trigger, before, challenger_version, event_time, reason, metrics)

    def reset_challenger(self, learner, version: int, event_time: float, reason: str,
                         metrics: dict[str, Any] | None = None, trigger: str = "rule") -> dict[str, Any]:
        """Roll the learner back to the champion: its weights, fresh optimiser moments."""
        learner.set_weights(self.champion_weights())
        learner.reset_optimizer()
        self.rollbacks += 1
        return self._record(ROLLBACK, trigger, self.champion_version, version, event_time, reason, metrics)

    def _record(self, action, trigger, champion_before, challenger_version, event_time, reason, metrics) -> dict[str, Any]:
        with self._lock:
            return self._record_locked(action, trigger, champion_before, challenger_version, event_time, reason, metrics)

    def _record_locked(self, action, trigger, champion_before, challenger_version, event_time, reason, metrics):
        metrics = metrics if metrics is not None else self.window.metrics()
        event = {
            "action": action,
            "trigger": trigger,
            "champion_before": int(champion_before),
            "champion_after": self.champion_version,
            "challenger_version": int(challenger_version),
            "champion_ap": metrics["champion"]["average_precision"],
            "challenger_ap": metrics["challenger"]["average_precision"],
            "rows": metrics["rows"],
            "event_time": float(event_time) if math.isfinite(event_time) else None,
            "at": _utc_now(),
            "reason": reason,
        }
        self.history = (self.history + [event])[-HISTORY_KEPT:]
        # start comparing afresh: only rows scored from now on judge the models as they now are
        self.window.clear()
        self._unchecked = 0
        if math.isfinite(event_time):
            self.since = max(self.since, float(event_time))
        if trigger == "manual" or champion_before != self.champion_version:
            # a new champion is worth a checkpoint of its own (tagged, so it outlives pruning);
            # a rule rollback leaves the champion as it was and reaches the next checkpoint
            self.changed = True
        level = logging.INFO if action == PROMOTE else logging.WARNING
        log.log(level, "model %s (%s): champion %s -> %s, challenger %s; %s", action, trigger,
                champion_before, self.champion_version, challenger_version, reason)
        return event

    # -- reporting and state ------------------------------------------------------------------

    def window_metrics(self) -> dict[str, Any]:
        """Each model's prequential metrics over the window (see :meth:`ShadowWindow.metrics`)."""
        with self._lock:
            return self.window.metrics()

    def info(self, challenger_version: int) -> dict[str, Any]:
        """Versions, counters and the window's metrics per model (for the API and checkpoints)."""
        with self._lock:
            return {
                "champion_version": self.champion_version,
                "challenger_version": int(challenger_version),
                "promotions": self.promotions,
                "rollbacks": self.rollbacks,
                "window": self.window.metrics(),
                "last_events": self.history[-5:],
            }

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return self._state_dict_locked()

    def _state_dict_locked(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "champion_version": self.champion_version,
            "champion_weights": self.champion_weights(),
            "window": self.window.state_dict(),
            "since": self.since if math.isfinite(self.since) else None,
            "history": list(self.history),
            "promotions": self.promotions,
            "rollbacks": self.rollbacks,
            "rows_seen": self.rows_seen,
            "rows_stale": self.rows_stale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("schema_version") != SCHEMA_VERSION:
            raise LifecycleStateInvalid(f"lifecycle state schema {state.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        self._reset_counters()
        self._serve([np.asarray(w) for w in state["champion_weights"]], int(state["champion_version"]))
        self.window.load_state_dict(state["window"])
        self.since = -math.inf if state["since"] is None else float(state["since"])
        self.history = list(state["history"])
        self.promotions = int(state["promotions"])
        self.rollbacks = int(state["rollbacks"])
        self.rows_seen = int(state["rows_seen"])
        self.rows_stale = int(state["rows_stale"])


# -- model versions kept in a checkpoint directory ----------------------------------------------


def stored_versions(store: CheckpointStore) -> dict[int, list[tuple[CheckpointInfo, str]]]:
    """Every model version a valid checkpoint holds: version -> [(checkpoint, role)].

    A checkpoint holds the learner at its ``model_version`` (role ``"challenger"``, or
    ``"served"`` with the lifecycle off) and, with the lifecycle on, the champion's weights
    at ``lifecycle.champion_version`` (role ``"champion"``). Newest checkpoint first.
    """
    found: dict[int, list[tuple[CheckpointInfo, str]]] = {}
    for info in store.list(verify=True):
        if not info.valid:
            continue
        meta = info.meta
        lifecycle = meta.get("lifecycle")
        if "model_version" in meta:
            found.setdefault(int(meta["model_version"]), []).append((info, "challenger" if lifecycle else "served"))
        if lifecycle:
            found.setdefault(int(lifecycle["champion_version"]), []).append((info, "champion"))
    return found


def load_version(store: CheckpointStore, version: int) -> list[np.ndarray]:
    """The weights of ``version`` from the newest valid checkpoint holding it."""
    held = stored_versions(store).get(int(version))
    if not held:
        known = sorted(stored_versions(store))
        raise ModelVersionUnknown(
            f"model version {version} is in no valid checkpoint in {store.directory}; "
            f"known versions: {', '.join(map(str, known)) or 'none'}"
        )
    info, role = held[0]
    if role == "champion":
        return [np.asarray(w) for w in read_state(info.path, "lifecycle")["champion_weights"]]
    return [np.asarray(w) for w in read_state(info.path, "learner")["weights"]]


# -- requests from the command line ------------------------------------------------------------


def write_request(directory: Path, action: str, to_version: int | None = None) -> ModelRequest:
    """Leave a request for the daemon that owns ``directory`` (written atomically; a newer
    request replaces one not yet applied)."""
    if action not in (PROMOTE, ROLLBACK):
        raise ModelRequestInvalid(f"unknown action {action!r}")
    if action == ROLLBACK and to_version is None:
        raise ModelRequestInvalid("a rollback needs a version to roll back to")
    request = ModelRequest(action, None if to_version is None else int(to_version), uuid.uuid4().hex, _utc_now())
    Path(directory).mkdir(parents=True, exist_ok=True)
    write_json(Path(directory) / REQUEST_FILE, {"schema_version": SCHEMA_VERSION, **asdict(request)})
    return request


def read_request(directory: Path) -> ModelRequest | None:
    """The request waiting in ``directory``, None without one; ``ModelRequestInvalid`` if unreadable."""
    path = Path(directory) / REQUEST_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelRequestInvalid(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("action") not in (PROMOTE, ROLLBACK):
        raise ModelRequestInvalid(f"{path}: action must be {PROMOTE!r} or {ROLLBACK!r}")
    to_version = data.get("to_version")
    if to_version is not None and (isinstance(to_version, bool) or not isinstance(to_version, int)):
        raise ModelRequestInvalid(f"{path}: to_version must be an integer")
    return ModelRequest(data["action"], to_version, str(data.get("id", "")), str(data.get("requested_at", "")))


def read_ack(directory: Path) -> dict[str, Any] | None:
    """The daemon's answer to the last request it handled, if any."""
    try:
        return json.loads((Path(directory) / ACK_FILE).read_text())
    except (OSError, ValueError):
        return None


class ModelRequests:
    """The daemon's side: look for a request (a cheap ``stat`` at most every ``every_s``),
    and acknowledge it once handled."""

    def __init__(self, directory: Path, every_s: float = REQUEST_CHECK_EVERY_S):
        self.directory = Path(directory)
        self.every_s = every_s
        self._next_check = 0.0  # monotonic; the first call looks at once (a request left while stopped)

    def take(self) -> ModelRequest | None:
        """A waiting request when due for a look; an unreadable one is acknowledged as failed."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.every_s
        if not (self.directory / REQUEST_FILE).exists():
            return None
        try:
            return read_request(self.directory)
        except ModelRequestInvalid as exc:
            log.warning("ignoring a model request: %s", exc)
            self.acknowledge(ModelRequest("invalid"), "failed", str(exc))
            return None

    def acknowledge(self, request: ModelRequest, status: str, message: str, **extra: Any) -> None:
        """Write the answer, then remove the request (unless a newer one replaced it meanwhile)."""
        write_json(self.directory / ACK_FILE, {
            "id": request.id, "action": request.action, "to_version": request.to_version,
            "status": status, "message": message, "handled_at": _utc_now(), **extra,
        })
        path = self.directory / REQUEST_FILE
        try:
            current = read_request(self.directory)
        except ModelRequestInvalid:
            current = None
            path.unlink(missing_ok=True)
        if current is not None and current.id == request.id:
            path.unlink(missing_ok=True)
