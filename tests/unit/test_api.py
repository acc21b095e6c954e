"""The HTTP scoring API on a fresh-model pipeline: scores, dry runs, labels, guards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from fraudstream.config import load_settings
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.service import ScoringService
from fraudstream.monitoring.api import add_scoring_routes
from fraudstream.monitoring.metrics import Metrics
from fraudstream.monitoring.server import create_app

_ids = itertools.count()


def tx(customer: str = "c1", terminal: str = "m1", amount: float = 25.0, second: int | None = None, **extra):
    n = next(_ids)
    s = n if second is None else second
    event = {
        "transaction_id": f"t{n}",
        "timestamp": f"2026-04-01T{8 + s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z",
        "customer_id": customer,
        "terminal_id": terminal,
        "amount": amount,
    }
    event.update(extra)
    return event


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture
def pipeline(settings):
    return Engine.create(settings)


def client_for(pipeline, token=None, max_body_bytes=1_048_576) -> TestClient:
    app = create_app(Metrics(CollectorRegistry()))
    add_scoring_routes(app, ScoringService(pipeline), token=token, max_body_bytes=max_body_bytes)
    return TestClient(app)


def features_state(pipeline) -> dict:
    state = pipeline.features.state_dict()
    return {
        "counters": state["counters"],
        "normalizer": {k: np.asarray(v).tolist() for k, v in state["normalizer"].items()},
        "watermark": state["watermark_us"],
        "windows": {g: {k: np.asarray(v).tolist() for k, v in w.items()} for g, w in state["windows"].items()},
    }


def test_score_one_and_many(pipeline):
    client = client_for(pipeline)
    one = client.post("/v1/score", json=tx())
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["dry_run"] is False
    [score] = body["scores"]
    assert 0.0 <= score["score"] <= 1.0
    assert score["decision"] in ("approve", "review", "block")
    assert score["model_version"] == 0
    assert "top_features" not in score
    many = client.post("/v1/score", json=[tx(customer=f"c{i}", second=10 + i) for i in range(5)])
    assert many.status_code == 200
    ids = [s["transaction_id"] for s in many.json()["scores"]]
    assert len(ids) == 5 and len(set(ids)) == 5
    envelope = client.post("/v1/score", json={"transactions": [tx(second=20), tx(second=21)], "explain": True})
    assert envelope.status_code == 200
    for s in envelope.json()["scores"]:
        top = s["top_features"]
        assert len(top) == 3
        assert {t["feature"] for t in top} <= set(pipeline.features.feature_names)
        drops = [t["contribution"] for t in top]
        assert drops == sorted(drops, reverse=True)
    assert len(pipeline.pending) == 8


def test_dry_run_changes_no_state_and_matches_ingest(pipeline):
    client = client_for(pipeline)
    history = [tx(customer="c7", terminal="m3", amount=10.0 * (i + 1), second=i) for i in range(6)]
    assert client.post("/v1/score", json=history).status_code == 200
    pending, before = len(pipeline.pending), features_state(pipeline)
    batch = [tx(customer="c7", terminal="m3", amount=500.0, second=100),
             tx(customer="new", terminal="m3", amount=5.0, second=101)]
    dry = client.post("/v1/score", params={"dry_run": "true"}, json=batch)
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert len(pipeline.pending) == pending
    assert features_state(pipeline) == before
    # the same batch ingested gets the same scores: the dry run saw the real window state
    real = client.post("/v1/score", json=batch)
    assert [s["score"] for s in real.json()["scores"]] == [s["score"] for s in dry.json()["scores"]]
    assert len(pipeline.pending) == pending + 2
    assert features_state(pipeline) != before


def test_labels_join_and_train(pipeline):
    client = client_for(pipeline)
    txs = [tx(customer=f"c{i % 9}", terminal=f"m{i % 4}", amount=float(5 + i % 50), second=i) for i in range(80)]
    assert client.post("/v1/score", json=txs).status_code == 200
    assert len(pipeline.pending) == 80
    labels = [{"transaction_id": t["transaction_id"], "label": int(i % 10 == 0),
               "timestamp": "2026-04-02T00:00:00Z"} for i, t in enumerate(txs)]
    first = client.post("/v1/labels", json=labels[:40])
    assert first.status_code == 200, first.text
    assert first.json()["joined"] == 40 and first.json()["training_steps"] == 0
    second = client.post("/v1/labels", json={"labels": labels[40:]})
    assert second.json()["joined"] == 40
    assert second.json()["training_steps"] == 1
    assert second.json()["model_version"] == 1
    early = client.post("/v1/labels", json={"transaction_id": "not-yet", "label": 1})
    assert early.json()["waiting_for_transaction"] == 1
    info = client.get("/v1/model").json()
    assert info["steps"] == 1 and info["rows_learned"] == 64 and info["rejected_steps"] == 0
    assert info["buffered_rows"] == 16 and info["pending"] == 0 and info["early_labels"] == 1
    assert info["model_version"] == 1 and info["origin"] == "fresh model"
    later = client.post("/v1/score", json=tx(second=200))
    assert later.json()["scores"][0]["model_version"] == 1


def test_invalid_events_are_422_naming_the_field(pipeline):
    client = client_for(pipeline)
    r = client.post("/v1/score", json=[tx(), tx(amount="lots")])
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", 1, "amount"]
    bad = tx()
    del bad["customer_id"]
    r = client.post("/v1/score", json=bad)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "customer_id"]
    r = client.post("/v1/score", json={"transactions": [tx(timestamp="yesterday")]})
    assert r.json()["detail"][0]["loc"] == ["body", "transactions", 0, "timestamp"]
    r = client.post("/v1/score", json={"transactions": [], "dry_run": True})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "transactions"]
    r = client.post("/v1/score", json={"transactions": [tx()], "surprise": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "surprise"]
    r = client.post("/v1/labels", json=[{"transaction_id": "t1", "label": 2}])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 0, "label"]
    r = client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/score", params={"explain": "true"}, json=[tx(second=i % 60) for i in range(1001)])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "explain"]
    assert len(pipeline.pending) == 0  # a rejected request is taken not at all


def test_oversize_body_is_413(pipeline):
    client = client_for(pipeline, max_body_bytes=2_048)
    big = [tx(second=i) for i in range(40)]
    assert client.post("/v1/score", json=big).status_code == 413

    def chunks():  # no Content-Length: the bytes actually sent are counted
        yield b"["
        for i in range(100):
            yield (b"," if i else b"") + b'{"transaction_id": "x%d", "amount": 1.0}' % i
        yield b"]"

    r = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/v1/score", json=tx()).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert len(pipeline.pending) == 1


def test_bearer_token(pipeline):
    from pydantic import SecretStr

    client = client_for(pipeline, token=SecretStr("s3cret"))
    assert client.get("/v1/model").status_code == 401
    assert client.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/v1/score", json=tx())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    ok = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/model", headers=ok).status_code == 200
    assert client.post("/v1/score", json=tx(), headers=ok).status_code == 200
    assert client.get("/healthz").status_code == 200  # operators' endpoints stay open
    assert len(pipeline.pending) == 1


def test_serve_host_checkpoints_and_resumes(settings, tmp_path):
    from fraudstream.daemon.checkpoint import CheckpointStore
    from fraudstream.daemon.serve import ApiHost

    store = CheckpointStore(tmp_path / "ck", 3)
    host = ApiHost(settings, Engine.restore_or_create(settings, store), store)
    client = TestClient(host.app())
    txs = [tx(customer=f"c{i % 3}", second=i) for i in range(5)]
    assert client.post("/v1/score", json=txs).status_code == 200
    assert client.post("/v1/labels", json={"transaction_id": txs[0]["transaction_id"], "label": 1}).status_code == 200
    metrics = client.get("/metrics").text
    assert "fraudstream_labels_joined_total 1.0" in metrics
    assert client.get("/readyz").status_code == 200
    host.checkpoint("stop")
    resumed = Engine.restore_or_create(settings, store)
    assert resumed.origin.startswith("checkpoint")
    assert len(resumed.pending) == 4 and resumed.trainer.buffered == 1
    assert features_state(resumed) == features_state(host.engine)
