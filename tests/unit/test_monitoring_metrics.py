"""Metric declarations: naming rules, pre-initialised series, helpers, documentation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fraudstream.monitoring.drift import Detection
from fraudstream.monitoring.metrics import Metrics
from fraudstream.monitoring.prequential import Prequential

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def families(registry):
    return [f for f in registry.collect() if f.name.startswith("fraudstream_")]


def test_two_instances_on_two_registries_do_not_clash():
    a, b = CollectorRegistry(), CollectorRegistry()
    Metrics(a).scores.labels(decision="block").inc()
    Metrics(b)
    assert a.get_sample_value("fraudstream_scores_total", {"decision": "block"}) == 1
    assert b.get_sample_value("fraudstream_scores_total", {"decision": "block"}) == 0


def test_names_follow_prometheus_conventions():
    registry = CollectorRegistry()
    Metrics(registry, process=False)
    fams = families(registry)
    assert len(fams) >= 30
    for fam in fams:
        assert re.fullmatch(r"fraudstream_[a-z0-9_]+", fam.name), fam.name
        for sample in fam.samples:
            if fam.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            if fam.type == "histogram":
                assert fam.name.endswith(("_seconds", "_events")), fam.name
    # only these process-level families are not ours
    others = {f.name for f in registry.collect()} - {f.name for f in fams}
    assert others == set()


def test_known_label_values_exist_at_zero_before_use():
    registry = CollectorRegistry()
    Metrics(registry, topics=["tx-in", "labels-in"], invalid_reasons=["not_json"],
            feature_names=["amount"], process=False)
    get = registry.get_sample_value
    assert get("fraudstream_events_consumed_total", {"topic": "tx-in"}) == 0
    assert get("fraudstream_events_consumed_total", {"topic": "labels-in"}) == 0
    assert get("fraudstream_events_invalid_total", {"reason": "not_json"}) == 0
    for decision in ("approve", "review", "block"):
        assert get("fraudstream_scores_total", {"decision": decision}) == 0
    for detector, signal in [("adwin", "log_loss"), ("page_hinkley", "score_mean"),
                             ("psi", "feature_distribution")]:
        assert get("fraudstream_drift_detections_total",
                   {"detector": detector, "signal": signal}) == 0
    assert get("fraudstream_feature_psi", {"feature": "amount"}) == 0
    assert get("fraudstream_batch_processing_seconds_count", {"stage": "total"}) == 0
    assert math.isnan(get("fraudstream_prequential_average_precision"))
    assert get("fraudstream_start_time_seconds") > 1.7e9


def test_set_prequential_copies_a_snapshot_and_none_becomes_nan():
    registry = CollectorRegistry()
    m = Metrics(registry, process=False)
    p = Prequential(window=100, threshold=0.5)
    p.update_many([0.9, 0.2, 0.6, 0.1], [1, 0, 0, 0], list("abcd"), [1.775e9] * 4)
    m.set_prequential(p.snapshot())
    get = registry.get_sample_value
    assert get("fraudstream_prequential_roc_auc") == 1.0
    assert get("fraudstream_prequential_fraud_rate") == 0.25
    assert get("fraudstream_prequential_alert_rate") == 0.5
    assert get("fraudstream_prequential_window_rows") == 4
    m.set_prequential(Prequential(window=10).snapshot())
    assert math.isnan(get("fraudstream_prequential_roc_auc"))
    assert get("fraudstream_prequential_window_rows") == 0


def test_ap_alert_threshold_is_exported_for_the_alert_rule():
    registry = CollectorRegistry()
    Metrics(registry, ap_alert_threshold=0.35, process=False)
    assert registry.get_sample_value("fraudstream_alert_threshold_average_precision") == 0.35


def test_consumer_lag_drops_partitions_that_were_revoked():
    registry = CollectorRegistry()
    m = Metrics(registry, process=False)
    m.set_consumer_lag({("transactions", 0): 10, ("transactions", 1): 3})
    m.set_consumer_lag({("transactions", 1): 4})
    get = registry.get_sample_value
    assert get("fraudstream_consumer_lag_messages", {"topic": "transactions", "partition": "0"}) is None
    assert get("fraudstream_consumer_lag_messages", {"topic": "transactions", "partition": "1"}) == 4


def test_observe_detections_counts_by_detector_and_signal():
    registry = CollectorRegistry()
    m = Metrics(registry, process=False)
    m.observe_detections([Detection("adwin", "log_loss", 1.0e9, {}),
                          Detection("adwin", "log_loss", 1.1e9, {}),
                          Detection("psi", "feature_distribution", None, {})])
    get = registry.get_sample_value
    assert get("fraudstream_drift_detections_total", {"detector": "adwin", "signal": "log_loss"}) == 2
    assert get("fraudstream_drift_last_detection_timestamp_seconds", {"detector": "adwin"}) == 1.1e9


def test_build_info_names_versions():
    registry = CollectorRegistry()
    Metrics(registry, process=False)
    text = generate_latest(registry).decode()
    line = next(x for x in text.splitlines() if x.startswith("fraudstream_build_info{"))
    assert 'version="' in line and 'river="0.26' in line


def test_every_metric_is_documented():
    registry = CollectorRegistry()
    Metrics(registry, process=False)
    docs = DOCS.read_text()
    missing = []
    for fam in families(registry):
        exposed = {"counter": fam.name + "_total", "info": fam.name + "_info"}.get(fam.type,
                                                                                   fam.name)
        if f"`{exposed}`" not in docs:
            missing.append(exposed)
    assert missing == []


@pytest.mark.parametrize("process", [True, False])
def test_process_collectors_are_optional(process):
    registry = CollectorRegistry()
    Metrics(registry, process=process)
    names = {f.name for f in registry.collect()}
    assert ("process_cpu_seconds" in names) is process
