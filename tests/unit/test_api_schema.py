"""Property test of the scoring API against its own OpenAPI document: whatever a client
sends that the document allows (or nearly allows), the answer is never a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from fraudstream.config import load_settings  # noqa: E402
from fraudstream.daemon.engine import Engine  # noqa: E402
from fraudstream.daemon.service import ScoringService  # noqa: E402
from fraudstream.monitoring.api import add_scoring_routes  # noqa: E402
from fraudstream.monitoring.metrics import Metrics  # noqa: E402
from fraudstream.monitoring.server import create_app  # noqa: E402

CASES = {("/v1/score", "POST"): 320, ("/v1/labels", "POST"): 200, ("/v1/model", "GET"): 20}  # 540 cases


@pytest.fixture(scope="module")
def schema():
    app = create_app(Metrics(CollectorRegistry()))
    add_scoring_routes(app, ScoringService(Engine.create(load_settings())), max_body_bytes=16_384)
    # the monitoring app publishes no OpenAPI document; the test reads the one FastAPI builds
    app.add_api_route("/openapi.json", app.openapi, include_in_schema=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(("path", "method"), sorted(CASES))
def test_no_server_errors(schema, path, method):
    operation = schema[path][method]
    seen = []

    @given(case=operation.as_strategy())
    @settings(max_examples=CASES[(path, method)], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call()
        seen.append(response.status_code)
        assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"

    check()
    assert 200 in seen  # the generated events reach the pipeline, not only the validators
