"""The scoring API of a Kafka daemon: an ingest is produced, not applied; bad input is not."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from fraudstream.config import load_settings
from fraudstream.consumers.exceptions import SinkFailed
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.service import ScoringService
from fraudstream.monitoring.api import add_scoring_routes
from fraudstream.monitoring.metrics import Metrics
from fraudstream.monitoring.server import create_app


def tx(n: int, customer: str, amount=25.0) -> dict:
    return {"transaction_id": f"t{n}", "timestamp": f"2026-04-01T08:00:{n:02d}Z",
            "customer_id": customer, "terminal_id": "m1", "amount": amount}


def client(pipeline, publish) -> TestClient:
    app = create_app(Metrics(CollectorRegistry()))
    add_scoring_routes(app, ScoringService(pipeline, publish=publish))
    return TestClient(app)


def test_ingest_is_published_keyed_by_customer_and_left_to_the_loop():
    pipeline = Engine.create(load_settings())
    published: list = []
    api = client(pipeline, published.append)
    watermark = pipeline.features.watermark_us
    events = [tx(1, "k1"), tx(2, "k2")]
    r = api.post("/v1/score", json=events)
    assert r.status_code == 200, r.text
    assert [s["transaction_id"] for s in r.json()["scores"]] == ["t1", "t2"]
    [records] = published
    assert [key for key, _ in records] == [b"k1", b"k2"]
    assert [orjson.loads(value) for _, value in records] == events
    assert len(pipeline.pending) == 0 and pipeline.features.watermark_us == watermark  # the loop ingests
    bad = api.post("/v1/score", json=[tx(3, "k1"), tx(4, "k1", amount="x")])
    assert bad.status_code == 422 and len(published) == 1  # bad input is not produced


def test_ingest_not_acknowledged_is_a_503():
    def down(records):
        raise SinkFailed("broker gone")

    r = client(Engine.create(load_settings()), down).post("/v1/score", json=tx(1, "k1"))
    assert r.status_code == 503 and "broker gone" in r.json()["detail"]
