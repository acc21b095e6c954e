"""Drift detection: ADWIN on log loss, Page-Hinkley on scores, PSI on features; state."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fraudstream.config.settings import MonitoringSettings
from fraudstream.features.exceptions import ReferenceInvalid
from fraudstream.features.reference import reference_from
from fraudstream.monitoring.drift import DriftMonitor, psi
from fraudstream.monitoring.exceptions import MonitoringStateInvalid
from fraudstream.monitoring.loss import log_loss_each
from fraudstream.monitoring.metrics import Metrics

BATCH = 500


def loss_stream(n_before: int, n_after: int, seed: int):
    """Labelled rows; after ``n_before`` the frauds stop standing out (concept drift)."""
    rng = np.random.default_rng(seed)
    n = n_before + n_after
    y = (rng.random(n) < 0.05).astype(int)
    good = np.clip(0.03 + 0.6 * y + rng.normal(0, 0.05, n), 0.001, 0.999)
    blind = np.clip(0.05 + rng.normal(0, 0.05, n), 0.001, 0.999)
    scores = np.where(np.arange(n) < n_before, good, blind)
    return scores, y, np.arange(n, dtype=float)


def score_stream(n_before: int, n_after: int, seed: int, shift: float = 0.1):
    """Scores with mean ~0.05, then shifted up by ``shift`` (prediction drift)."""
    rng = np.random.default_rng(seed)
    before = rng.beta(0.5, 9.5, n_before)
    after = np.clip(rng.beta(0.5, 9.5, n_after) + shift, 0, 1)
    return np.r_[before, after], np.arange(n_before + n_after, dtype=float)


def labelled_in_batches(monitor, scores, labels, times):
    found = []
    for i in range(0, len(scores), BATCH):
        sl = slice(i, i + BATCH)
        found += monitor.update_labelled_many(scores[sl], labels[sl], times[sl]).detections
    return found


def scored_in_batches(monitor, scores, times, X=None):
    found = []
    for i in range(0, len(scores), BATCH):
        sl = slice(i, i + BATCH)
        found += monitor.update_scored_many(scores[sl], times[sl],
                                            None if X is None else X[sl]).detections
    return found


def json_round_trip(state):
    def plain(x):
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x

    return json.loads(json.dumps(plain(state), allow_nan=False))


# --- ADWIN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adwin_fires_after_an_abrupt_rise_in_loss_and_not_before(seed):
    scores, labels, times = loss_stream(5_000, 3_000, seed)
    found = labelled_in_batches(DriftMonitor(), scores, labels, times)
    adwin = [d for d in found if d.detector == "adwin"]
    assert adwin, "no detection after the change"
    first = adwin[0]
    assert 5_000 <= first.event_time < 6_000
    assert first.signal == "log_loss"
    assert first.values["window_mean"] > 0  # loss level of the new window


def test_adwin_stays_quiet_on_a_stationary_loss_stream():
    scores, labels, times = loss_stream(30_000, 0, seed=11)
    assert labelled_in_batches(DriftMonitor(), scores, labels, times) == []


def test_detections_count_the_rows_seen_and_the_counts_survive_a_restart():
    scores, labels, times = loss_stream(5_000, 3_000, seed=0)
    monitor = DriftMonitor()
    first = labelled_in_batches(monitor, scores, labels, times)[0]
    # the triggering row is the one at event time t, the (t+1)-th labelled row of the stream
    assert first.values["labelled_rows"] == int(first.event_time) + 1
    assert monitor.labelled_rows == 8_000
    ph_scores, ph_times = score_stream(2_000, 2_000, seed=0)
    ph = [d for d in scored_in_batches(monitor, ph_scores, ph_times) if d.detector == "page_hinkley"][0]
    assert ph.values["scored_rows"] == int(ph.event_time) + 1
    restored = DriftMonitor()
    restored.load_state_dict(json_round_trip(monitor.state_dict()))
    assert (restored.labelled_rows, restored.scored_rows) == (8_000, 4_000)
    older = {k: v for k, v in monitor.state_dict().items() if k != "rows"}  # saved before the counts
    restored.load_state_dict(older)
    assert (restored.labelled_rows, restored.scored_rows) == (0, 0)


def test_adwin_delta_comes_from_config():
    strict = DriftMonitor(MonitoringSettings(drift_adwin_delta=1e-12))
    loose = DriftMonitor(MonitoringSettings(drift_adwin_delta=0.5))
    assert strict.adwin.delta == 1e-12 and loose.adwin.delta == 0.5
    scores, labels, times = loss_stream(5_000, 3_000, seed=4)
    first_strict = labelled_in_batches(strict, scores, labels, times)[0].event_time
    first_loose = labelled_in_batches(loose, scores, labels, times)[0].event_time
    assert first_loose <= first_strict


# --- Page-Hinkley ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_page_hinkley_fires_after_the_score_mean_moves_and_not_before(seed):
    scores, times = score_stream(5_000, 3_000, seed)
    found = scored_in_batches(DriftMonitor(), scores, times)
    assert found and all(d.detector == "page_hinkley" for d in found)
    assert 5_000 <= found[0].event_time < 7_000
    assert found[0].values["running_mean"] > 0.05


def test_page_hinkley_stays_quiet_on_stationary_scores():
    scores, times = score_stream(50_000, 0, seed=12)
    assert scored_in_batches(DriftMonitor(), scores, times) == []


def test_page_hinkley_default_has_no_false_alarm_on_long_skewed_scores():
    """Most scores near 0, 5% near 0.8: river's forgetting default (alpha 0.9999) raises
    false alarms on such a stream within 300k rows; the classic test (alpha 1) does not."""
    rng = np.random.default_rng(0)
    n = 300_000
    labels = (rng.random(n) < 0.05).astype(int)
    scores = np.clip(0.03 + 0.8 * labels + rng.normal(0, 0.03, n), 0, 1)
    times = np.arange(n, dtype=float)
    assert DriftMonitor().update_scored_many(scores, times).detections == []
    forgetting = DriftMonitor(MonitoringSettings(drift_page_hinkley_alpha=0.9999))
    assert forgetting.update_scored_many(scores, times).detections != []


def test_non_finite_scores_do_not_poison_the_detectors():
    monitor = DriftMonitor()
    scores, times = score_stream(2_000, 0, seed=3)
    scores[100] = np.nan
    monitor.update_scored_many(scores, times)
    monitor.update_labelled_many(scores, np.zeros(2_000, int), times)
    assert np.isfinite(monitor.page_hinkley._x_mean.get())
    assert monitor.page_hinkley._x_mean.n == 1_999
    assert np.isfinite(monitor.adwin.estimation) and monitor.adwin.width == 1_999


def test_page_hinkley_waits_for_min_instances():
    scores, times = score_stream(200, 2_000, seed=5, shift=0.6)
    late = DriftMonitor(MonitoringSettings(drift_page_hinkley_min_instances=1_500))
    found = scored_in_batches(late, scores, times)
    assert found and found[0].event_time >= 1_499


# --- PSI ---------------------------------------------------------------------------------------------


def test_reference_bins_follow_quantiles_and_merge_ties():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=10_000), (rng.random(10_000) < 0.2).astype(float)]
    ref = reference_from(X, bins=10, names=["amount", "weekend"])
    json.dumps(ref, allow_nan=False)
    amount, weekend = ref["features"]
    assert len(amount["edges"]) == 9
    assert np.allclose(amount["proportions"], 0.1, atol=0.002)
    # a binary feature gets two bins: (-inf, 0] and (0, inf)
    assert weekend["edges"] in ([0.0], [0.0, 1.0])
    assert sum(weekend["proportions"]) == pytest.approx(1.0)
    assert weekend["proportions"][0] == pytest.approx(0.8, abs=0.02)


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    ref = reference_from(np.c_[rng.normal(size=20_000), rng.random(20_000) < 0.2])
    same = np.c_[rng.normal(size=5_000), rng.random(5_000) < 0.2]
    moved = np.c_[rng.normal(0.8, 1.0, size=5_000), rng.random(5_000) < 0.6]
    assert np.all(psi(ref, same) < 0.02)
    assert np.all(psi(ref, moved) > 0.25)


def test_psi_matches_the_formula_on_a_hand_made_case():
    ref = {"schema_version": 1, "bins": 2, "rows": 4,
           "features": [{"name": "x", "edges": [0.5], "proportions": [0.5, 0.5]}]}
    X = np.array([[0.0], [1.0], [1.0], [1.0]])  # shares 0.25 / 0.75
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi(ref, X)[0] == pytest.approx(expected)


def test_psi_rejects_rows_of_the_wrong_width():
    ref = reference_from(np.zeros((10, 2)) + np.arange(10)[:, None])
    with pytest.raises(ReferenceInvalid):
        psi(ref, np.zeros((5, 3)))


def test_monitor_evaluates_psi_per_window_and_exports_it():
    rng = np.random.default_rng(2)
    ref = reference_from(rng.normal(size=(20_000, 2)), names=["amount", "hour"])
    registry = CollectorRegistry()
    metrics = Metrics(registry, feature_names=["amount", "hour"], process=False)
    settings = MonitoringSettings(drift_psi_window=1_000, drift_action_detectors=("psi",), drift_action="checkpoint")
    monitor = DriftMonitor(settings, reference=ref, metrics=metrics)
    stable = rng.normal(size=(1_000, 2))
    moved = np.c_[rng.normal(size=1_000), rng.normal(1.5, 1, size=1_000)]
    scores = np.full(1_000, 0.05)
    times = np.arange(1_000.0)

    assert monitor.update_scored_many(scores[:600], times[:600], stable[:600]).detections == []
    assert monitor.last_psi == {}  # window not full yet
    report = monitor.update_scored_many(scores[600:], times[600:], stable[600:])
    assert report.detections == [] and set(monitor.last_psi) == {"amount", "hour"}

    report = monitor.update_scored_many(scores, times + 1_000, moved)
    assert [d.detector for d in report.detections] == ["psi"]
    assert report.detections[0].values["feature"] == "hour"
    assert report.detections[0].event_time == 1_999.0
    assert report.action == "checkpoint"
    assert registry.get_sample_value("fraudstream_feature_psi", {"feature": "hour"}) > 0.25
    assert registry.get_sample_value(
        "fraudstream_drift_detections_total",
        {"detector": "psi", "signal": "feature_distribution"}) == 1


# --- actions and metrics ----------------------------------------------------------------------------


def test_detections_are_counted_and_the_configured_action_returned():
    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)
    settings = MonitoringSettings(drift_action="adapt", drift_adapt_lr_multiplier=2.0,
                                  drift_adapt_recent_share=0.7, drift_adapt_steps=50,
                                  drift_adapt_replay_keep=0.3)
    monitor = DriftMonitor(settings, metrics=metrics)
    scores, labels, times = loss_stream(5_000, 3_000, seed=0)
    reports = [monitor.update_labelled_many(scores[i:i + BATCH], labels[i:i + BATCH],
                                            times[i:i + BATCH]) for i in range(0, 8_000, BATCH)]
    fired = [r for r in reports if r.detections]
    quiet = [r for r in reports if not r.detections]
    assert fired and quiet
    assert all(r.action == "adapt" for r in fired)
    assert fired[0].adapt.lr_multiplier == 2.0 and fired[0].adapt.steps == 50
    assert fired[0].adapt.recent_share == 0.7 and fired[0].adapt.replay_keep == 0.3
    assert all(r.action == "none" and r.adapt is None for r in quiet)
    count = sum(len(r.detections) for r in fired)
    assert registry.get_sample_value("fraudstream_drift_detections_total",
                                     {"detector": "adwin", "signal": "log_loss"}) == count
    last = fired[-1].detections[-1].event_time
    assert registry.get_sample_value("fraudstream_drift_last_detection_timestamp_seconds",
                                     {"detector": "adwin"}) == last


def test_detectors_outside_the_action_list_report_without_action():
    settings = MonitoringSettings(drift_action_detectors=("adwin",), drift_action="checkpoint")
    scores, times = score_stream(5_000, 3_000, seed=1)
    report = DriftMonitor(settings).update_scored_many(scores, times)
    assert report.detections and report.action == "none"
    assert DriftMonitor(MonitoringSettings(drift_action="none")).update_scored_many(
        scores, times).action == "none"


# --- state -------------------------------------------------------------------------------------------


def test_state_round_trip_through_json_gives_identical_later_detections():
    rng = np.random.default_rng(7)
    ref = reference_from(rng.normal(size=(5_000, 2)), names=["a", "b"])
    settings = MonitoringSettings(drift_psi_window=700, drift_psi_threshold=0.1)
    l_scores, labels, l_times = loss_stream(4_000, 3_000, seed=3)
    s_scores, s_times = score_stream(4_000, 3_000, seed=3)
    X = np.r_[rng.normal(size=(4_000, 2)), rng.normal(0.5, 1, size=(3_000, 2))]

    a = DriftMonitor(settings, reference=ref)
    cut = 3_750  # before the change, with detector windows full and PSI part-counted
    labelled_in_batches(a, l_scores[:cut], labels[:cut], l_times[:cut])
    scored_in_batches(a, s_scores[:cut], s_times[:cut], X[:cut])
    state = json_round_trip(a.state_dict())
    assert isinstance(state["adwin"]["window"], str)
    base64.b64decode(state["adwin"]["window"], validate=True)

    b = DriftMonitor(settings, reference=ref)
    b.load_state_dict(state)
    assert b.adwin.width == a.adwin.width
    assert b.adwin.estimation == pytest.approx(a.adwin.estimation)
    rest = slice(cut, None)
    after = []
    for monitor in (a, b):
        found = labelled_in_batches(monitor, l_scores[rest], labels[rest], l_times[rest])
        found += scored_in_batches(monitor, s_scores[rest], s_times[rest], X[rest])
        after.append([d.to_dict() for d in found])
    assert after[0], "the continuation should contain detections to compare"
    assert {d["detector"] for d in after[0]} == {"adwin", "page_hinkley", "psi"}
    assert after[1] == after[0]


def test_a_fresh_monitor_differs_from_a_restored_one():
    """Guards the round-trip test above: without the state, detections come at other rows."""
    l_scores, labels, l_times = loss_stream(4_000, 3_000, seed=3)
    a = DriftMonitor()
    labelled_in_batches(a, l_scores[:3_750], labels[:3_750], l_times[:3_750])
    fresh = DriftMonitor()
    rest = slice(3_750, None)
    restored = DriftMonitor()
    restored.load_state_dict(a.state_dict())
    got_restored = labelled_in_batches(restored, l_scores[rest], labels[rest], l_times[rest])
    got_fresh = labelled_in_batches(fresh, l_scores[rest], labels[rest], l_times[rest])
    assert [d.event_time for d in got_restored] != [d.event_time for d in got_fresh]


def test_changed_settings_or_river_version_restart_the_detector():
    scores, times = score_stream(3_000, 0, seed=1)
    a = DriftMonitor()
    a.update_scored_many(scores, times)
    state = a.state_dict()

    other = DriftMonitor(MonitoringSettings(drift_page_hinkley_threshold=10.0))
    other.load_state_dict(state)
    assert other.page_hinkley._x_mean.n == 0  # restarted: threshold changed
    same = DriftMonitor()
    same.load_state_dict(state)
    assert same.page_hinkley._x_mean.n == 3_000

    older = DriftMonitor()
    older.load_state_dict(dict(state, river_version="0.0.1"))
    assert older.page_hinkley._x_mean.n == 0 and older.adwin.width == 0


def test_state_of_another_schema_or_malformed_is_refused():
    state = DriftMonitor().state_dict()
    with pytest.raises(MonitoringStateInvalid):
        DriftMonitor().load_state_dict(dict(state, schema_version=2))
    with pytest.raises(MonitoringStateInvalid):
        DriftMonitor().load_state_dict({k: v for k, v in state.items() if k != "page_hinkley"})


def test_new_reference_restarts_psi_counting():
    rng = np.random.default_rng(0)
    ref_a = reference_from(rng.normal(size=(1_000, 1)))
    ref_b = reference_from(rng.normal(2, 1, size=(1_000, 1)))
    monitor = DriftMonitor(MonitoringSettings(drift_psi_window=1_000), reference=ref_a)
    monitor.update_scored_many(np.zeros(600), np.arange(600.0), rng.normal(size=(600, 1)))
    state = monitor.state_dict()
    assert state["psi"]["rows"] == 600
    restored = DriftMonitor(MonitoringSettings(drift_psi_window=1_000), reference=ref_b)
    restored.load_state_dict(state)
    assert restored.state_dict()["psi"]["rows"] == 0
    monitor.set_reference(ref_b)
    assert monitor.state_dict()["psi"]["rows"] == 0


def test_a_clock_feature_is_exported_but_raises_no_psi_detection():
    rng = np.random.default_rng(3)
    weekend = (rng.random(20_000) < 2 / 7).astype(float)
    ref = reference_from(np.c_[rng.normal(size=20_000), weekend], names=["amount", "weekend"])
    registry = CollectorRegistry()
    metrics = Metrics(registry, feature_names=["amount", "weekend"], process=False)
    monitor = DriftMonitor(MonitoringSettings(drift_psi_window=1_000), reference=ref, metrics=metrics)
    saturday = np.c_[rng.normal(size=1_000), np.ones(1_000)]  # a window of one weekend day

    report = monitor.update_scored_many(np.full(1_000, 0.05), np.arange(1_000.0), saturday)
    assert report.detections == []
    assert monitor.last_psi["weekend"] > 0.25
    assert registry.get_sample_value("fraudstream_feature_psi", {"feature": "weekend"}) > 0.25


# --- judging the data, not the model ------------------------------------------------------------


def test_rows_before_the_windows_warm_up_are_skipped_by_page_hinkley_and_psi():
    rng = np.random.default_rng(5)
    ref = reference_from(rng.normal(size=(20_000, 1)), names=["customer_count_30d"])
    settings = MonitoringSettings(drift_psi_window=1_000)
    filling = rng.normal(-2.0, 1.0, size=(4_000, 1))  # windows still filling: far from the reference
    scores = np.r_[np.full(2_000, 0.4), np.full(2_000, 0.05)]
    times = np.arange(4_000.0)
    cold = DriftMonitor(settings, reference=ref)
    assert {d.detector for d in cold.update_scored_many(scores, times, filling).detections} == {"page_hinkley", "psi"}
    warm = DriftMonitor(settings, reference=ref)
    warm.warm_from = 4_000.0
    assert warm.update_scored_many(scores, times, filling).detections == []
    assert warm.scored_rows == 0 and warm.last_psi == {}
    full = rng.normal(size=(1_000, 1))
    assert warm.update_scored_many(np.full(1_000, 0.05), times[:1_000] + 4_000, full).detections == []
    assert warm.scored_rows == 1_000 and warm.last_psi["customer_count_30d"] < 0.1


def test_page_hinkley_follows_the_model_through_its_expected_score():
    """A model that learns moves every score alike (here its mean falls from 0.2 to 0.05):
    against the reference sample's expected score that is no drift; a move of the inputs,
    which the reference sample does not share, still is."""
    rng = np.random.default_rng(6)
    n = 20_000
    calibration = np.linspace(0.2, 0.05, n)  # what the model in use gives the reference sample
    learning = np.clip(calibration + rng.normal(0, 0.05, n), 0, 1)
    plain, aware = DriftMonitor(), DriftMonitor()
    found_plain, found_aware = [], []
    for i in range(0, n, BATCH):
        sl = slice(i, i + BATCH)
        found_plain += plain.update_scored_many(learning[sl], np.arange(n, dtype=float)[sl]).detections
        aware.expected_score = float(calibration[i])
        found_aware += aware.update_scored_many(learning[sl], np.arange(n, dtype=float)[sl]).detections
    assert found_plain and not found_aware
    moved = np.clip(0.05 + 0.1 + rng.normal(0, 0.05, 5_000), 0, 1)  # inputs moved, model unchanged
    report = aware.update_scored_many(moved, n + np.arange(5_000.0))
    assert [d.detector for d in report.detections][:1] == ["page_hinkley"]
    first = report.detections[0].values
    assert first["expected_score"] == pytest.approx(calibration[-BATCH]) and first["statistic"] > first["threshold"]


def test_adwin_follows_the_model_through_its_expected_loss():
    """The model gets worse on every row alike (its reference-sample loss rises with the
    stream's): no concept drift. Frauds that stop standing out still are one."""
    rng = np.random.default_rng(7)
    n = 40_000
    y = (rng.random(n) < 0.05).astype(int)
    sharpness = np.linspace(0.6, 0.3, n)  # the model blurs slowly, on the reference rows too
    scores = np.clip(0.05 + sharpness * y + rng.normal(0, 0.03, n), 0.001, 0.999)
    expected = np.array([log_loss_each(y[max(0, i - 5_000):i + 1], scores[max(0, i - 5_000):i + 1]).mean()
                         for i in range(0, n, BATCH)])
    plain, aware = DriftMonitor(), DriftMonitor()
    found_plain, found_aware = [], []
    for k, i in enumerate(range(0, n, BATCH)):
        sl = slice(i, i + BATCH)
        t = np.arange(n, dtype=float)[sl]
        found_plain += plain.update_labelled_many(scores[sl], y[sl], t).detections
        aware.expected_loss = float(expected[k])
        found_aware += aware.update_labelled_many(scores[sl], y[sl], t).detections
    assert found_plain and not found_aware
    blind, labels, times = loss_stream(0, 5_000, seed=8)
    found = labelled_in_batches(aware, blind, labels, times + n)
    assert found and found[0].detector == "adwin" and found[0].values["statistic"] > 0


def test_reference_carries_a_labelled_sample_of_its_rows():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(5_000, 2))
    y = np.where(rng.random(5_000) < 0.1, 1.0, 0.0)
    y[:100] = np.nan  # unlabelled rows are never sampled
    ref = reference_from(X, names=["a", "b"], sample=1_000, labels=y)
    json.dumps(ref, allow_nan=False)
    sample = np.asarray(ref["sample"])
    assert sample.shape == (1_000, 2) and len(ref["sample_labels"]) == 1_000
    index = [int(np.flatnonzero((X == row).all(axis=1))[0]) for row in sample[:50]]
    assert min(index) >= 100 and [y[i] for i in index] == ref["sample_labels"][:50]
    monitor = DriftMonitor(reference=ref)
    assert monitor.reference_sample.shape == (1_000, 2) and monitor.reference_labels.sum() == sum(ref["sample_labels"])
    assert "sample" not in reference_from(X, names=["a", "b"])


def test_an_alarm_is_one_line_with_its_figures(caplog):
    scores, times = score_stream(2_000, 2_000, seed=0)
    with caplog.at_level("WARNING", logger="fraudstream.monitoring.drift"):
        found = DriftMonitor().update_scored_many(scores, times + 1_775_001_600).detections
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(found) >= 1
    assert "\n" not in lines[0]
    assert lines[0].startswith("drift alarm: detector=page_hinkley signal=score_mean feature=- cumulative_deviation=")
    assert " threshold=50 event_time=2026-04-01T00:" in lines[0] and "scored_rows=" in lines[0]


def test_adwin_skips_the_warm_up_only_when_it_compares_with_the_reference():
    scores, labels, times = loss_stream(5_000, 3_000, seed=2)
    plain = DriftMonitor()
    plain.warm_from = 8_000.0
    assert labelled_in_batches(plain, scores, labels, times) and plain.labelled_rows == 8_000
    compared = DriftMonitor()
    compared.warm_from, compared.expected_loss = 8_000.0, 0.1
    assert labelled_in_batches(compared, scores, labels, times) == [] and compared.labelled_rows == 0


def test_the_daemon_monitor_re_scores_the_sample_only_when_the_served_version_changes():
    from types import SimpleNamespace

    from fraudstream.config import load_settings
    from fraudstream.monitoring.daemon_monitor import DaemonMonitor

    rng = np.random.default_rng(10)
    X = rng.normal(size=(5_000, 2))
    ref = reference_from(X, names=["a", "b"], sample=1_000, labels=(rng.random(5_000) < 0.1).astype(float))

    class Host:  # the part of fraudstream.monitoring.host.MonitoredHost that flush reads
        served_version = 7
        features = SimpleNamespace(first_event_us=1_000_000_000, warm_from_us=3_000_000_000)
        calls = 0

        def score_served(self, rows):
            self.calls += 1
            return np.full(len(rows), 0.01 * self.served_version)

    monitor = DaemonMonitor(load_settings(), serve=False)
    monitor.drift = DriftMonitor(reference=ref)
    pipeline = Host()

    def batch(first: float):
        monitor.collect(SimpleNamespace(scored=np.full(100, 0.05), scored_times=first + np.arange(100.0),
                                        scored_X=X[:100], joined=None))
        monitor.flush(pipeline)

    batch(2_000.0)
    assert pipeline.calls == 1 and monitor.drift.warm_from == 3_000.0
    assert monitor.drift.expected_score == pytest.approx(0.07)
    labels = np.asarray(ref["sample_labels"])
    assert monitor.drift.expected_loss == pytest.approx(log_loss_each(labels, np.full(1_000, 0.07)).mean())
    assert monitor.drift.scored_rows == 0  # before the warm-up
    batch(3_000.0)
    assert pipeline.calls == 1 and monitor.drift.scored_rows == 100  # same version: not re-scored
    pipeline.served_version = 8
    batch(3_100.0)
    assert pipeline.calls == 2 and monitor.drift.expected_score == pytest.approx(0.08)

    configured = DaemonMonitor(load_settings(monitoring={"drift_warmup_days": 0.5}), serve=False)
    configured.drift = DriftMonitor(reference=ref)
    configured.collect(SimpleNamespace(scored=np.full(1, 0.05), scored_times=np.zeros(1), scored_X=X[:1], joined=None))
    configured.flush(pipeline)
    assert configured.drift.warm_from == 1_000.0 + 43_200.0  # half a day after the first event


def test_a_feature_raises_one_psi_alarm_per_crossing_not_one_per_window():
    rng = np.random.default_rng(11)
    ref = reference_from(rng.normal(size=(20_000, 2)), names=["amount", "count"])
    settings = MonitoringSettings(drift_psi_window=1_000)
    monitor = DriftMonitor(settings, reference=ref)

    def window(shift_amount: float, shift_count: float = 0.0) -> list:
        X = np.c_[rng.normal(shift_amount, 1, 1_000), rng.normal(shift_count, 1, 1_000)]
        return monitor.update_scored_many(np.full(1_000, 0.05), np.arange(1_000.0), X).detections

    assert window(0.0) == []
    first = window(1.5)
    assert [d.values["feature"] for d in first] == ["amount"]
    assert window(1.5) == [] and window(1.5) == [] and monitor.last_psi["amount"] > 0.25  # still exported
    restored = DriftMonitor(settings, reference=ref)
    restored.load_state_dict(json_round_trip(monitor.state_dict()))
    monitor = restored  # a restart does not raise it again
    assert window(1.5) == []
    assert [d.values["feature"] for d in window(1.5, 1.5)] == ["count"]  # another feature crosses
    assert window(0.0) == []
    assert [d.values["feature"] for d in window(1.5)] == ["amount"]  # back, then over again
