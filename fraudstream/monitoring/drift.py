"""Drift detection: is the stream, or the model's fit to it, changing?

Three signals, each watched by a standard detector (river's, not re-implemented here):

* **concept drift**: ADWIN on the per-transaction log loss of labelled rows (score taken
  before learning). The loss rises when the relation between features and fraud changes.
* **prediction drift**: Page-Hinkley on the stream of scores. The score mean moves when the
  inputs or the model move, and it is seen at scoring time, days before labels arrive.
* **feature drift**: the population stability index (PSI) of each feature against a
  reference histogram made from the training data (:func:`fraudstream.features.reference.reference_from`, stored in the
  model artifact), evaluated every ``drift_psi_window`` scored rows.

They judge the data, not the model learning nor the feature windows filling: the caller
sets :attr:`DriftMonitor.warm_from` (rows before it are skipped) and, from the reference's
labelled sample re-scored by the model in use, :attr:`DriftMonitor.expected_score` and
:attr:`DriftMonitor.expected_loss`, which Page-Hinkley and ADWIN subtract, so that a model
that moves moves both sides alike (``DaemonMonitor`` does this in ``run`` and ``replay``).
Each alarm is one log line with its figures (:func:`alarm_line`).

The monitor returns every detection with the configured action (``none``, ``checkpoint``
or ``adapt``); carrying it out is the daemon's job, training policy is not decided here.

Detector state is saved as plain data: Page-Hinkley's fields are numbers, and ADWIN's window
lives in river's Rust helper, whose ``__getstate__`` gives a compact binary image of its
buckets (plain numbers, no code) that is stored base64-encoded. That image is only read
back by the same river version; another version starts the detectors afresh with a warning
(losing drift history costs a little detection delay, never correctness).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from river import drift as river_drift

from fraudstream.config.settings import MonitoringSettings
from fraudstream.features.reference import bin_counts, check_reference
from fraudstream.monitoring.exceptions import MonitoringStateInvalid
from fraudstream.monitoring.prequential import to_unix_seconds
from fraudstream.monitoring.loss import log_loss_each

if TYPE_CHECKING:
    from fraudstream.monitoring.metrics import Metrics

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PSI_EPS = 1e-4  # floor for empty bins, so one empty bin does not make PSI infinite
#: Features of the clock. A PSI window of a few thousand rows spans hours, not a week: its
#: share of weekend or night rows follows the time of day, not the data. Their PSI is still
#: exported; it raises no alarm.
CLOCK_FEATURES = frozenset({"weekend", "night", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos"})

Action = Literal["none", "checkpoint", "adapt"]


# --- detections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """One drift detection.

    ``detector`` is ``adwin``, ``page_hinkley`` or ``psi``; ``signal`` what it watched
    (``log_loss``, ``score_mean``, ``feature_distribution``); ``event_time`` the Unix time
    of the row that triggered it (the last row of the window for PSI); ``values`` the
    detector's figures at that moment, including how many rows of its signal the monitor
    had seen then (``labelled_rows`` for ADWIN, ``scored_rows`` for the others), counting
    the triggering row, so a detection delay can be stated in rows.
    """

    detector: str
    signal: str
    event_time: float | None
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "signal": self.signal,
            "event_time": self.event_time,
            "values": self.values,
        }


@dataclass(frozen=True)
class AdaptPlan:
    """How to train for a while after a drift: faster, and mostly on recent rows."""

    lr_multiplier: float
    recent_share: float
    steps: int
    replay_keep: float = 1.0  # share of the replay reservoir kept when adapting starts


@dataclass(frozen=True)
class DriftReport:
    """Detections of one update and the action the daemon should take.

    ``action`` is ``none`` unless a detector listed in ``drift_action_detectors`` fired;
    ``adapt`` carries the parameters when the action is ``adapt``.
    """

    detections: list[Detection] = field(default_factory=list)
    action: Action = "none"
    adapt: AdaptPlan | None = None

    def __bool__(self) -> bool:
        return bool(self.detections)


#: What each detector's ``statistic`` and ``threshold`` are, for the alarm line.
STATISTICS = {
    "adwin": ("loss_mean_rise", "delta"),
    "page_hinkley": ("cumulative_deviation", "threshold"),
    "psi": ("psi", "threshold"),
}


def alarm_line(detection: Detection) -> str:
    """One log line per alarm, with its figures: detector, signal, feature, statistic,
    threshold, event time (UTC) and the rows of its signal seen until then.

    >>> alarm_line(Detection("psi", "feature_distribution", 1775001600.0,
    ...            {"feature": "amount", "statistic": 0.3127, "threshold": 0.25, "scored_rows": 5000}))
    'drift alarm: detector=psi signal=feature_distribution feature=amount psi=0.3127 threshold=0.25 event_time=2026-04-01T00:00:00Z scored_rows=5000'
    """
    v = detection.values
    statistic, threshold = STATISTICS.get(detection.detector, ("statistic", "threshold"))
    when = "-" if detection.event_time is None else (
        str(np.datetime64(round(detection.event_time * 1000), "ms")).removesuffix(".000") + "Z")
    rows = "labelled_rows" if "labelled_rows" in v else "scored_rows"
    return (f"drift alarm: detector={detection.detector} signal={detection.signal} feature={v.get('feature', '-')} "
            f"{statistic}={v.get('statistic', float('nan')):.4g} {threshold}={v.get('threshold', float('nan')):.4g} "
            f"event_time={when} {rows}={v.get(rows, '-')}")


# --- PSI ---------------------------------------------------------------------------------------


def _psi_from_counts(reference: dict[str, Any], counts: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(len(counts))
    for j, (feature, c) in enumerate(zip(reference["features"], counts)):
        total = c.sum()
        if total == 0:
            out[j] = math.nan
            continue
        expected = np.maximum(np.asarray(feature["proportions"], np.float64), PSI_EPS)
        actual = np.maximum(c / total, PSI_EPS)
        out[j] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return out


def psi(reference: dict[str, Any], X) -> np.ndarray:
    """PSI of each column of ``X`` against ``reference``: ``sum((a - e) * ln(a / e))``.

    Bin shares are floored at 1e-4. Rule of thumb: below 0.1 stable, 0.1-0.25 moderate,
    above 0.25 a significant shift.

    >>> import numpy as np
    >>> from fraudstream.features.reference import reference_from
    >>> rng = np.random.default_rng(0)
    >>> ref = reference_from(rng.normal(size=(5000, 1)))
    >>> bool(psi(ref, rng.normal(size=(5000, 1)))[0] < 0.1)
    True
    >>> bool(psi(ref, rng.normal(1.0, 1.0, size=(5000, 1)))[0] > 0.25)
    True
    """
    check_reference(reference)
    return _psi_from_counts(reference, bin_counts(reference, X))


def _reference_digest(reference: dict[str, Any] | None) -> str | None:
    if reference is None:
        return None
    blob = json.dumps(reference, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


# --- detector state ------------------------------------------------------------------------------


def _river_version() -> str:
    return metadata.version("river")


def _adwin_state(detector: river_drift.ADWIN) -> dict[str, Any]:
    return {
        "delta": detector.delta,
        "drift_detected": bool(detector.drift_detected),
        "window": base64.b64encode(detector._helper.__getstate__()).decode("ascii"),
    }


def _load_adwin(detector: river_drift.ADWIN, state: dict[str, Any]) -> None:
    detector._helper.__setstate__(base64.b64decode(state["window"]))
    detector._drift_detected = bool(state["drift_detected"])


def _page_hinkley_statistic(detector: river_drift.PageHinkley) -> float:
    """The larger of the two cumulative sums Page-Hinkley compares with its threshold."""
    return max(detector._sum_increase - detector._min_increase, detector._max_decrease - detector._sum_decrease)


def _float_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _page_hinkley_state(detector: river_drift.PageHinkley) -> dict[str, Any]:
    return {
        "threshold": detector.threshold,
        "min_instances": detector.min_instances,
        "delta": detector.delta,
        "alpha": detector.alpha,
        "drift_detected": bool(detector.drift_detected),
        "n": detector._x_mean.n,
        "mean": detector._x_mean._mean,
        "sum_increase": detector._sum_increase,
        "sum_decrease": detector._sum_decrease,
        "min_increase": _float_or_none(detector._min_increase),
        "max_decrease": _float_or_none(detector._max_decrease),
    }


def _load_page_hinkley(detector: river_drift.PageHinkley, state: dict[str, Any]) -> None:
    detector._x_mean.n = float(state["n"])
    detector._x_mean._mean = float(state["mean"])
    detector._sum_increase = float(state["sum_increase"])
    detector._sum_decrease = float(state["sum_decrease"])
    detector._min_increase = (
        math.inf if state["min_increase"] is None else float(state["min_increase"])
    )
    detector._max_decrease = (
        -math.inf if state["max_decrease"] is None else float(state["max_decrease"])
    )
    detector._drift_detected = bool(state["drift_detected"])


# --- the monitor --------------------------------------------------------------------------------


class DriftMonitor:
    """ADWIN on log loss, Page-Hinkley on scores, PSI on features; thresholds from config.

    ``reference`` (from :func:`~fraudstream.features.reference.reference_from`) enables PSI; ``metrics`` (optional) counts
    detections and exports PSI per feature.

    >>> import numpy as np
    >>> monitor = DriftMonitor(MonitoringSettings(drift_page_hinkley_min_instances=100, drift_action="checkpoint"))
    >>> t = np.arange(4000.0)
    >>> scores = np.r_[np.full(2000, 0.02), np.full(2000, 0.3)]
    >>> report = monitor.update_scored_many(scores, t)
    >>> [(d.detector, d.event_time >= 2000.0) for d in report.detections], report.action
    ([('page_hinkley', True)], 'checkpoint')
    """

    def __init__(
        self,
        settings: MonitoringSettings | None = None,
        reference: dict[str, Any] | None = None,
        metrics: Metrics | None = None,
    ):
        self.settings = settings if settings is not None else MonitoringSettings()
        self.metrics = metrics
        self.reference: dict[str, Any] | None = None
        self.reference_sample: np.ndarray | None = None
        self.reference_labels: np.ndarray | None = None
        #: Unix time before which scored rows are skipped: the feature windows' warm-up
        #: (``FeaturePipeline.warm_from_us``), set by the caller. Their PSI and score mean
        #: follow windows still filling, not the data.
        self.warm_from: float | None = None
        #: The mean score the model in use gives the reference sample, set by the caller
        #: whenever the served model changes; Page-Hinkley watches each score minus it.
        self.expected_score: float | None = None
        #: Likewise the mean log loss of the model in use on the labelled reference sample;
        #: ADWIN watches each labelled row's loss minus it.
        self.expected_loss: float | None = None
        self._reset()
        if reference is not None:
            self.set_reference(reference)

    def _new_adwin(self) -> river_drift.ADWIN:
        return river_drift.ADWIN(delta=self.settings.drift_adwin_delta)

    def _new_page_hinkley(self) -> river_drift.PageHinkley:
        s = self.settings
        return river_drift.PageHinkley(
            min_instances=s.drift_page_hinkley_min_instances,
            delta=s.drift_page_hinkley_delta,
            threshold=s.drift_page_hinkley_threshold,
            alpha=s.drift_page_hinkley_alpha,
        )

    def _reset(self) -> None:
        self.adwin = self._new_adwin()
        self.page_hinkley = self._new_page_hinkley()
        self.labelled_rows = 0  # rows fed to ADWIN since the start (kept in the state)
        self.scored_rows = 0  # rows fed to Page-Hinkley since the start
        self._reset_psi()

    def _reset_psi(self) -> None:
        features = self.reference["features"] if self.reference else []
        self._psi_counts = [np.zeros(len(f["edges"]) + 1, np.int64) for f in features]
        self._psi_rows = 0
        self.last_psi: dict[str, float] = {}

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.reference["features"]] if self.reference else []

    def set_reference(self, reference: dict[str, Any] | None) -> None:
        """Use a new reference (a new model version); PSI counting starts over."""
        if reference is not None:
            check_reference(reference)
        self.reference = reference
        rows = (reference or {}).get("sample")
        #: the reference's sample rows (normalised, as the model scores them), if it has one
        self.reference_sample = np.asarray(rows, np.float32) if rows else None
        labels = (reference or {}).get("sample_labels")
        self.reference_labels = np.asarray(labels, np.int8) if labels else None
        self._reset_psi()

    # --- updates -------------------------------------------------------------------------

    def update_labelled_many(self, scores, labels, event_times) -> DriftReport:
        """Feed labelled rows (score before learning, label, event time) to ADWIN: their log
        loss, minus :attr:`expected_loss` when it is set (the loss the model in use has on
        the reference sample), so that a model that gets better or worse on every row alike
        does not look like a change of the relation between features and fraud.

        Compared with the reference that way, rows before :attr:`warm_from` are skipped:
        the reference rows had full windows, theirs were filling. Without a reference
        sample (a fresh model learning from nothing) every row counts."""
        losses = log_loss_each(labels, scores)
        times = to_unix_seconds(event_times).ravel()
        if times.size != losses.size:
            raise ValueError("scores, labels and event_times differ in length")
        keep = np.isfinite(losses)  # one NaN would poison ADWIN's window for good
        if self.expected_loss is not None:
            losses = losses - self.expected_loss
            if self.warm_from is not None:
                keep &= times >= self.warm_from
        if not keep.all():
            losses, times = losses[keep], times[keep]
        found = []
        adwin = self.adwin
        seen = self.labelled_rows
        for i, loss in enumerate(losses.tolist()):
            before, width = adwin.estimation, adwin.width
            adwin.update(loss)
            # ADWIN flags any change of the mean; a falling loss (the model getting better,
            # e.g. while a fresh model learns) is not a concept drift worth acting on. It
            # keeps the recent part of its window: river would empty the window on the next
            # row, and a rise that began inside it would have to be seen again from nothing.
            if adwin.drift_detected and adwin.estimation <= before:
                adwin._drift_detected = False
            elif adwin.drift_detected:
                dropped = width + 1 - adwin.width  # the older part of the window, cut off
                old_mean = (before * width + loss - adwin.estimation * adwin.width) / max(dropped, 1)
                found.append(Detection(
                    "adwin", "log_loss", float(times[i]),
                    {"loss": loss, "window_mean": adwin.estimation, "window_width": adwin.width,
                     "statistic": adwin.estimation - old_mean, "threshold": adwin.delta,
                     "expected_loss": self.expected_loss, "labelled_rows": seen + i + 1},
                ))
        self.labelled_rows = seen + losses.size
        return self._report(found)

    def update_scored_many(self, scores, event_times, X=None) -> DriftReport:
        """Feed scored rows to Page-Hinkley and, with a reference and ``X``, to PSI.

        Rows before :attr:`warm_from` are skipped. With :attr:`expected_score` set,
        Page-Hinkley watches each score minus it (the score's excess over what the model in
        use gives the reference sample), so only a move of the inputs moves its mean.
        """
        s = np.asarray(scores, np.float64).ravel()
        times = to_unix_seconds(event_times).ravel()
        if times.size != s.size:
            raise ValueError("scores and event_times differ in length")
        # one NaN would poison Page-Hinkley's running mean for good
        keep = np.isfinite(s) if self.warm_from is None else np.isfinite(s) & (times >= self.warm_from)
        if not keep.all():
            s, times = s[keep], times[keep]
            X = None if X is None else np.asarray(X)[keep]
        expected = self.expected_score
        found = []
        ph = self.page_hinkley
        seen = self.scored_rows
        for i, x in enumerate((s if expected is None else s - expected).tolist()):
            ph.update(x)
            if ph.drift_detected:
                found.append(Detection(
                    "page_hinkley", "score_mean", float(times[i]),
                    {"score": float(s[i]), "expected_score": expected, "running_mean": ph._x_mean.get(),
                     "statistic": _page_hinkley_statistic(ph), "threshold": ph.threshold,
                     "scored_rows": seen + i + 1},
                ))
        self.scored_rows = seen + s.size
        if X is not None and self.reference is not None and times.size:
            found.extend(self._update_psi(X, float(times.max())))
        return self._report(found)

    def _update_psi(self, X, last_time: float) -> list[Detection]:
        assert self.reference is not None
        for j, c in enumerate(bin_counts(self.reference, X)):
            self._psi_counts[j] += c
        self._psi_rows += int(np.asarray(X).shape[0])
        if self._psi_rows < self.settings.drift_psi_window:
            return []
        was_drifted = self._drifted_features()
        values = _psi_from_counts(self.reference, self._psi_counts)
        self.last_psi = dict(zip(self.feature_names, values.tolist()))
        for c in self._psi_counts:
            c[:] = 0
        self._psi_rows = 0
        if self.metrics is not None:
            self.metrics.set_feature_psi(self.last_psi)
        drifted = self._drifted_features()
        # A feature raises an alarm when it crosses the threshold, not again in every window
        # while it stays above (the exported PSI shows that): one drift, one alarm.
        if not drifted.keys() - was_drifted.keys():
            return []
        worst = max(drifted.keys() - was_drifted.keys(), key=drifted.get)
        return [Detection("psi", "feature_distribution", last_time,
                          {"max_psi": drifted[worst], "feature": worst, "features": drifted,
                           "statistic": drifted[worst], "threshold": self.settings.drift_psi_threshold,
                           "scored_rows": self.scored_rows})]

    def _drifted_features(self) -> dict[str, float]:
        """Features whose last PSI is above the threshold (clock features never are)."""
        return {n: v for n, v in self.last_psi.items()
                if v > self.settings.drift_psi_threshold and n not in CLOCK_FEATURES}

    def _report(self, found: list[Detection]) -> DriftReport:
        if found:
            if self.metrics is not None:
                self.metrics.observe_detections(found)
            for d in found:
                log.warning("%s", alarm_line(d))
        s = self.settings
        actionable = any(d.detector in s.drift_action_detectors for d in found)
        action: Action = s.drift_action if actionable else "none"
        adapt = None
        if action == "adapt":
            adapt = AdaptPlan(s.drift_adapt_lr_multiplier, s.drift_adapt_recent_share,
                              s.drift_adapt_steps, s.drift_adapt_replay_keep)
        return DriftReport(found, action, adapt)

    # --- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data and numpy arrays; no pickle (see the module docstring)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "river_version": _river_version(),
            "adwin": _adwin_state(self.adwin),
            "page_hinkley": _page_hinkley_state(self.page_hinkley),
            "rows": {"labelled": self.labelled_rows, "scored": self.scored_rows},
            "psi": {
                "reference_digest": _reference_digest(self.reference),
                "rows": self._psi_rows,
                "counts": [c.copy() for c in self._psi_counts],
                "last": dict(self.last_psi),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore detectors; a changed setting or river version restarts that detector."""
        if state.get("schema_version") != SCHEMA_VERSION:
            raise MonitoringStateInvalid(
                f"drift state schema {state.get('schema_version')!r}, expected {SCHEMA_VERSION}"
            )
        self._reset()
        try:
            rows = state.get("rows", {})  # absent in states written before the counts existed
            self.labelled_rows = int(rows.get("labelled", 0))
            self.scored_rows = int(rows.get("scored", 0))
            self._load_detectors(state)
            self._load_psi(state["psi"])
        except (KeyError, TypeError, ValueError) as exc:
            self._reset()
            raise MonitoringStateInvalid(f"drift state malformed: {exc}") from exc

    def _load_detectors(self, state: dict[str, Any]) -> None:
        if state["river_version"] != _river_version():
            log.warning("drift state was saved with river %s, this is %s: detectors restart",
                        state["river_version"], _river_version())
            return
        adwin, ph = state["adwin"], state["page_hinkley"]
        s = self.settings
        if adwin["delta"] == s.drift_adwin_delta:
            _load_adwin(self.adwin, adwin)
        else:
            log.info("ADWIN delta changed (%s -> %s): ADWIN restarts", adwin["delta"],
                     s.drift_adwin_delta)
        saved = (ph["threshold"], ph["min_instances"], ph["delta"], ph["alpha"])
        configured = (s.drift_page_hinkley_threshold, s.drift_page_hinkley_min_instances,
                      s.drift_page_hinkley_delta, s.drift_page_hinkley_alpha)
        if saved == configured:
            _load_page_hinkley(self.page_hinkley, ph)
        else:
            log.info("Page-Hinkley settings changed (%s -> %s): it restarts", saved, configured)

    def _load_psi(self, psi_state: dict[str, Any]) -> None:
        if psi_state["reference_digest"] != _reference_digest(self.reference):
            log.info("PSI reference differs from the saved one: PSI counting restarts")
            return
        counts = [np.asarray(c, np.int64) for c in psi_state["counts"]]
        if [c.size for c in counts] != [c.size for c in self._psi_counts]:
            raise ValueError("PSI counts do not match the reference bins")
        self._psi_counts = counts
        self._psi_rows = int(psi_state["rows"])
        self.last_psi = {str(k): float(v) for k, v in psi_state["last"].items()}
