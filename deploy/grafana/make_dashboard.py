"""Write the provisioned Grafana dashboard ``dashboards/fraudstream.json``.

The JSON is generated so that every panel follows one layout and one datasource, and so that
the PromQL stays readable here. Run ``python deploy/grafana/make_dashboard.py`` after editing;
a test checks the committed JSON equals this script's output and that every expression
parses and returns data from a scraped daemon.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "fraudstream.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SEL = '{instance=~"$instance"}'
RI = "$__rate_interval"


def q(expr: str, legend: str) -> dict:
    return {"expr": expr, "legendFormat": legend}


def rate(metric: str, by: str = "", window: str = RI) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{SEL}[{window}]))"


def quantile(phi: float, metric: str, by: str = "") -> str:
    extra = f", {by}" if by else ""
    return f"histogram_quantile({phi}, sum by (le{extra}) (rate({metric}_bucket{SEL}[{RI}])))"


# (title, unit, targets, kind) per panel; a row starts with ("row", title).
LAYOUT: list = [
    ("row", "Throughput and latency"),
    ("Events consumed / s", "ops", [
        q(rate("fraudstream_events_consumed_total", "topic"), "{{topic}}"),
    ], "timeseries"),
    ("Scores / s by decision", "ops", [
        q(rate("fraudstream_scores_total", "decision"), "{{decision}}"),
    ], "timeseries"),
    ("Score latency (produce to score)", "s", [
        q(quantile(0.5, "fraudstream_score_latency_seconds"), "p50"),
        q(quantile(0.95, "fraudstream_score_latency_seconds"), "p95"),
        q(quantile(0.99, "fraudstream_score_latency_seconds"), "p99"),
    ], "timeseries"),
    ("Batch processing p95 by stage", "s", [
        q(quantile(0.95, "fraudstream_batch_processing_seconds", "stage"), "{{stage}}"),
    ], "timeseries"),
    ("Mean batch size", "none", [
        q(f"{rate('fraudstream_batch_size_events_sum')} / "
          f"{rate('fraudstream_batch_size_events_count')}", "events per batch"),
    ], "timeseries"),
    ("DLQ / invalid events / s by reason", "ops", [
        q(rate("fraudstream_events_invalid_total", "reason"), "{{reason}}"),
    ], "timeseries"),
    ("row", "Kafka"),
    ("Consumer lag by partition", "none", [
        q(f"sum by (topic, partition) (fraudstream_consumer_lag_messages{SEL})",
          "{{topic}}[{{partition}}]"),
    ], "timeseries"),
    ("Partitions assigned", "none", [
        q(f"sum by (topic) (fraudstream_partitions_assigned{SEL})", "{{topic}}"),
        q('sum (up{job="fraudstream", instance=~"$instance"})', "daemons up"),
    ], "timeseries"),
    ("row", "Model quality (prequential: scored before learning)"),
    ("ROC AUC, average precision, card precision@100", "percentunit", [
        q(f"max(fraudstream_prequential_roc_auc{SEL})", "ROC AUC"),
        q(f"max(fraudstream_prequential_average_precision{SEL})", "average precision"),
        q(f"max(fraudstream_prequential_card_precision_at_100{SEL})", "card precision@100"),
        q(f"max(fraudstream_alert_threshold_average_precision{SEL})", "AP alert floor"),
    ], "timeseries"),
    ("Loss: prequential log loss and training loss", "none", [
        q(f"max(fraudstream_prequential_log_loss{SEL})", "prequential log loss"),
        q(f"max(fraudstream_train_loss{SEL})", "training loss"),
    ], "timeseries"),
    ("Fraud rate, alert rate, mean score", "percentunit", [
        q(f"max(fraudstream_prequential_fraud_rate{SEL})", "fraud rate"),
        q(f"max(fraudstream_prequential_alert_rate{SEL})", "alert rate"),
        q(f"max(fraudstream_prequential_mean_score{SEL})", "mean score"),
    ], "timeseries"),
    ("Labelled rows in the window", "none", [
        q(f"sum(fraudstream_prequential_window_rows{SEL})", "rows"),
    ], "stat"),
    ("row", "Drift"),
    ("Drift detections (10 min)", "none", [
        q(f"sum by (detector, signal) "
          f"(increase(fraudstream_drift_detections_total{SEL}[10m]))", "{{detector}} {{signal}}"),
    ], "timeseries"),
    ("Feature PSI against the training reference", "none", [
        q(f"max by (feature) (fraudstream_feature_psi{SEL})", "{{feature}}"),
    ], "timeseries"),
    ("row", "Labels and learning"),
    ("Labels / s", "ops", [
        q(rate("fraudstream_labels_joined_total"), "joined"),
        q(rate("fraudstream_labels_unmatched_total"), "unmatched"),
        q(rate("fraudstream_pending_expired_total"), "pending expired"),
    ], "timeseries"),
    ("Rows learned / s", "ops", [
        q(rate("fraudstream_train_rows_total", "source"), "{{source}}"),
        q(rate("fraudstream_train_steps_total"), "steps"),
    ], "timeseries"),
    ("Rejected training steps (10 min)", "none", [
        q(f"sum by (reason) (increase(fraudstream_guard_rejections_total{SEL}[10m]))",
          "{{reason}}"),
    ], "timeseries"),
    ("Learner backlog (batches not learned yet; 256 makes the loop wait)", "none", [
        q(f"max(fraudstream_train_backlog_batches{SEL})", "batches"),
    ], "timeseries"),
    ("Pending store and replay reservoir", "none", [
        q(f"sum(fraudstream_pending_rows{SEL})", "pending rows"),
        q(f"sum by (class) (fraudstream_replay_rows{SEL})", "replay {{class}}"),
    ], "timeseries"),
    ("row", "Checkpoints and model"),
    ("Checkpoint age", "s", [
        q(f"time() - max(fraudstream_checkpoint_last_success_timestamp_seconds{SEL})", "age"),
    ], "stat"),
    ("Checkpoint duration p95 and failures", "s", [
        q(quantile(0.95, "fraudstream_checkpoint_duration_seconds"), "p95 duration"),
        q(f"sum(increase(fraudstream_checkpoint_failures_total{SEL}[10m]))",
          "failures (10 min)"),
    ], "timeseries"),
    ("Model version", "none", [
        q(f"max(fraudstream_model_version{SEL})", "version"),
    ], "stat"),
    ("Promotions and rollbacks (1 h)", "none", [
        q(f"sum(increase(fraudstream_model_promotions_total{SEL}[1h]))", "promotions"),
        q(f"sum(increase(fraudstream_model_rollbacks_total{SEL}[1h]))", "rollbacks"),
    ], "timeseries"),
]


def panel(pid: int, title: str, unit: str, targets: list, kind: str, x: int, y: int) -> dict:
    body = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            dict(t, refId=chr(ord("A") + i), datasource=DATASOURCE) for i, t in enumerate(targets)
        ],
    }
    if kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}}
    return body


def dashboard() -> dict:
    panels, pid, y, col = [], 1, 0, 0
    for item in LAYOUT:
        if item[0] == "row":
            if col:
                y, col = y + 8, 0
            panels.append({"id": pid, "type": "row", "title": item[1], "collapsed": False,
                           "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            pid, y = pid + 1, y + 1
            continue
        title, unit, targets, kind = item
        panels.append(panel(pid, title, unit, targets, kind, x=12 * col, y=y))
        pid += 1
        col = 1 - col
        if col == 0:
            y += 8
    return {
        "uid": "fraudstream",
        "title": "fraudstream",
        "tags": ["fraudstream"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "instance",
            "label": "instance",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(fraudstream_build_info, instance)",
                      "refId": "instance"},
            "definition": "label_values(fraudstream_build_info, instance)",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "refresh": 2,
        }]},
        "annotations": {"list": [{
            "name": "drift",
            "datasource": DATASOURCE,
            "enable": True,
            "iconColor": "orange",
            "expr": f"sum by (detector) (increase(fraudstream_drift_detections_total{SEL}[1m])) > 0",
            "titleFormat": "drift: {{detector}}",
        }]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    print(f"wrote {OUT}")
