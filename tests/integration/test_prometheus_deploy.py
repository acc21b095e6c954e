"""The deploy/ files: Prometheus config and alert rules (promtool), Grafana provisioning and
dashboard, docker-compose wiring. No server is started here; see test_prometheus_live.py."""

from __future__ import annotations

import importlib.util
import json
import re
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from prometheus_fixture import DEPLOY, REPO, require_binary

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fraudstream.json"
GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "1m", "$instance": ".*"}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("promtool"), *args], input=stdin, text=True,
                          capture_output=True, timeout=120)


def panel_exprs() -> list[str]:
    """The PromQL of every panel target: each should show data whenever the daemon runs."""
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def annotation_exprs() -> list[str]:
    """Annotation queries: filters (``> 0``) that return data only when something happened."""
    board = json.loads(DASHBOARD.read_text())
    return [a["expr"] for a in board["annotations"]["list"] if "expr" in a]


def dashboard_exprs() -> list[str]:
    return panel_exprs() + annotation_exprs()


def concrete(expr: str) -> str:
    """Grafana's variables replaced by what they stand for, so Prometheus can run it."""
    for variable, value in GRAFANA_SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def alert_rules() -> list[dict]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_prometheus_config_is_valid():
    result = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid():
    result = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_on_bad_series_and_stay_silent_on_good_ones():
    result = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (DEPLOY / "prometheus" / "alerts.test.yml").read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_the_required_alerts_exist():
    names = {rule["alert"] for rule in alert_rules()}
    assert {"FraudstreamDown", "FraudstreamConsumerLagGrowing", "FraudstreamCheckpointStale",
            "FraudstreamDriftDetected", "FraudstreamAveragePrecisionLow"} <= names


def test_every_dashboard_expression_parses(tmp_path: Path):
    exprs = [concrete(e) for e in dashboard_exprs()]
    assert len(exprs) >= 30
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expression_is_caught_by_the_parse_check(tmp_path: Path):
    """Guards the test above: promtool does reject bad PromQL."""
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (le (rate(fraudstream_scores_total[1m]))"}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_dashboard_json_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location(
        "make_dashboard", DEPLOY / "grafana" / "make_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), (
        "run: python deploy/grafana/make_dashboard.py")


def test_dashboard_panels_use_the_provisioned_datasource():
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("events consumed", "latency", "lag", "roc auc", "drift", "loss",
                  "checkpoint age", "dlq"):
        assert topic in titles, topic
    for p in panels:
        assert p["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid for t in p["targets"])
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "fraudstream.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_compose_mounts_the_deploy_files_where_the_services_read_them():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "kafka-topics", "fraudstream", "simulator", "prometheus",
            "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka-topics"]["image"] == services["kafka"]["image"]
    assert "kafka-topics.sh" in " ".join(services["kafka-topics"]["command"])
    daemon = services["fraudstream"]
    assert daemon["command"] == ["fraudstream", "run", "--config", "/etc/fraudstream/config.yaml"]
    assert "simulate" in services["simulator"]["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
    # Prometheus scrapes the daemon where the daemon listens
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "fraudstream")
    assert job["static_configs"][0]["targets"] == ["fraudstream:9108"]
    assert daemon["environment"]["FRAUDSTREAM__MONITORING__PORT"] == "9108"


def test_the_compose_config_file_is_a_valid_fraudstream_config():
    from fraudstream.config import load_settings

    settings = load_settings(DEPLOY / "fraudstream" / "config.yaml")
    assert settings.monitoring.port == 9108


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_rules_carry_severity_and_summary(rule):
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]


def test_docker_compose_config_is_valid():
    """`docker compose config` resolves the file (anchors, env defaults, depends_on)."""
    import shutil

    docker = shutil.which("docker")
    probe = docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                      text=True, timeout=60)
    if not probe or probe.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must validate docker-compose.yml: .ci/run installs the compose plugin")
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run([docker, "compose", "-f", str(REPO / "docker-compose.yml"),
                             "config", "--quiet"], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    services = subprocess.run([docker, "compose", "-f", str(REPO / "docker-compose.yml"),
                               "config", "--services"], capture_output=True, text=True,
                              timeout=60, cwd=REPO).stdout.split()
    assert set(services) == {"kafka", "kafka-topics", "fraudstream", "simulator",
                             "prometheus", "grafana"}
