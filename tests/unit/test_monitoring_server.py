"""HTTP endpoints served from a background thread: /metrics, /healthz, /readyz."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry

from fraudstream.monitoring.exceptions import ServerStartFailed
from fraudstream.monitoring.metrics import Metrics
from fraudstream.monitoring.server import MonitoringServer, create_app


@pytest.fixture
def metrics():
    return Metrics(CollectorRegistry(), process=False)


def test_metrics_health_and_readiness(metrics):
    state = {"ready": False}

    def readiness():
        return state["ready"], {"checkpoint_loaded": True, "partitions_assigned": state["ready"]}

    metrics.scores.labels(decision="review").inc(7)
    with MonitoringServer(create_app(metrics, readiness), port=0) as server:
        assert server.port and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=server.url, follow_redirects=False) as http:
            for path in ("/metrics", "/metrics/"):
                r = http.get(path)
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/plain")
                assert 'fraudstream_scores_total{decision="review"} 7.0' in r.text
            assert http.get("/healthz").json() == {"status": "ok"}
            r = http.get("/readyz")
            assert r.status_code == 503
            assert r.json() == {"ready": False, "checks": {"checkpoint_loaded": True,
                                                           "partitions_assigned": False}}
            state["ready"] = True
            r = http.get("/readyz")
            assert r.status_code == 200 and r.json()["ready"] is True


def test_a_raising_readiness_check_means_not_ready(metrics):
    def readiness():
        raise ConnectionError("broker unreachable")

    with MonitoringServer(create_app(metrics, readiness)) as server:
        r = httpx.get(server.url + "/readyz")
    assert r.status_code == 503
    assert "broker unreachable" in r.json()["checks"]["error"]


def test_without_a_readiness_callable_the_process_is_ready(metrics):
    with MonitoringServer(create_app(metrics)) as server:
        assert httpx.get(server.url + "/readyz").status_code == 200


def test_routes_can_be_added_to_the_app(metrics):
    app = create_app(metrics)

    @app.get("/v1/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with MonitoringServer(app) as server:
        assert httpx.get(server.url + "/v1/ping").json() == {"pong": "yes"}
        assert httpx.get(server.url + "/metrics").status_code == 200


def test_a_taken_port_fails_at_start_and_stop_frees_the_port(metrics):
    first = MonitoringServer(create_app(metrics)).start()
    try:
        with pytest.raises(ServerStartFailed):
            MonitoringServer(create_app(metrics), port=first.port).start()
    finally:
        port = first.port
        first.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    # the port can be bound again once stopped
    with MonitoringServer(create_app(metrics), port=port) as again:
        assert httpx.get(again.url + "/healthz").status_code == 200


def test_binds_the_configured_host_only(metrics):
    with MonitoringServer(create_app(metrics), host="127.0.0.1") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=1)
        sock.close()
        assert server.url.startswith("http://127.0.0.1:")
