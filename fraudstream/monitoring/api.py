"""The HTTP scoring API: ``POST /v1/score``, ``POST /v1/labels``, ``GET /v1/model``.

The routes sit on the monitoring app next to ``/metrics``, ``/healthz`` and ``/readyz`` and
call a scoring service handed in by the host (the daemon's ``ScoringService``), which runs
requests through the daemon's own per-batch step under its lock. So an HTTP transaction is
scored, windowed, joined with its label and learned from exactly like a Kafka one. In a
Kafka daemon an ingest is first stored in the transactions topic and the loop ingests it
from there (crash-safe); a 503 says it was not all stored.

Field names of events come from the feature spec (they are configurable), so the request
models describe only the envelope; each event is validated by the feature module's parser
and a bad one is answered with 422 naming its place, e.g. ``["body", 3, "amount"]``.

Guards, in order: bodies over ``max_body_bytes`` get 413 (the declared ``Content-Length``
and the bytes actually sent are both checked, before the body is parsed); with a token
configured, a request without ``Authorization: Bearer <token>`` gets 401.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from fraudstream.errors import EventInvalid
from fraudstream.monitoring.exceptions import IngestUnavailable

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
DEFAULT_MAX_BODY_BYTES = 1_048_576
#: Most transactions one request may ask explanations for (each costs ``n_features`` rows).
EXPLAIN_MAX = 1_000


class ScoreEnvelope(BaseModel):
    """``{"transactions": [...], "dry_run": false, "explain": false}``."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[dict[str, Any]] = Field(min_length=1)
    dry_run: bool = False
    explain: bool = False


class LabelEnvelope(BaseModel):
    """``{"labels": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[dict[str, Any]] = Field(min_length=1)


class Score(BaseModel):
    transaction_id: str
    score: float
    decision: str
    model_version: int
    scored_at: str
    top_features: list[dict[str, Any]] | None = None


class ScoreResponse(BaseModel):
    dry_run: bool
    scores: list[Score]


class LabelResponse(BaseModel):
    received: int
    joined: int
    waiting_for_transaction: int
    training_steps: int
    rejected_steps: int
    model_version: int


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_version: int
    origin: str
    steps: int
    rows_learned: int
    rejected_steps: int
    rows_rejected: int
    buffered_rows: int
    pending: int
    early_labels: int
    training_enabled: bool
    thresholds: dict[str, float]
    feature_names: list[str]
    served_version: int
    lifecycle: dict[str, Any] | None = None  # champion/challenger versions and metrics, when on


Events = list[dict[str, Any]] | dict[str, Any]


class BodyLimit:
    """ASGI middleware: a ``/v1`` request body larger than ``max_bytes`` gets 413.

    The declared ``Content-Length`` is refused up front; a body sent without one (chunked)
    is read up to the limit and refused as soon as it passes it, so a client cannot make
    the server buffer more than ``max_bytes``. An accepted body is handed on unchanged.
    """

    def __init__(self, app: Any, max_bytes: int, prefix: str = API_PREFIX):
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await self._refuse(send, 413, f"request body over {self.max_bytes} bytes")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, 413, f"request body over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Any, status: int, detail: str) -> None:
        response = JSONResponse({"detail": detail}, status_code=status)
        await response({"type": "http"}, None, send)


def _bearer_guard(token: SecretStr | str | None):
    """A dependency that answers 401 unless the request carries the configured token."""
    expected = token.get_secret_value() if isinstance(token, SecretStr) else token
    scheme = HTTPBearer(auto_error=False, description="the monitoring.api_token of the config")

    # a default, not Annotated: the annotation is a string here and ``scheme`` a local
    def guard(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        if expected is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return guard


def _invalid(loc: list[Any], exc: EventInvalid) -> JSONResponse:
    where = list(loc) + ([exc.field] if exc.field else [])
    return JSONResponse(
        {"detail": [{"loc": where, "msg": str(exc), "type": exc.reason}]}, status_code=422
    )


def _envelope_error(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [dict(e, loc=("body", *e["loc"])) for e in exc.errors(include_url=False, include_context=False)]
    )


def add_scoring_routes(
    app: FastAPI,
    service: Any,
    token: SecretStr | str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Add the ``/v1`` routes to ``app``, served by ``service`` (a ``ScoringService``).

    Call before the app is served (the body limit is a middleware).
    """
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(_bearer_guard(token))], tags=["scoring"])

    @router.post("/score", response_model=ScoreResponse, response_model_exclude_none=True)
    def score(
        payload: Annotated[Events, Body(description="a transaction, a list of them, or an envelope")],
        dry_run: Annotated[bool, Query(description="score without changing any state")] = False,
        explain: Annotated[bool, Query(description="add the top 3 features by occlusion")] = False,
    ) -> Any:
        loc: list[Any] = ["body"]
        if isinstance(payload, dict) and "transactions" in payload:
            try:
                envelope = ScoreEnvelope.model_validate(payload)
            except ValidationError as exc:
                raise _envelope_error(exc) from exc
            events, dry_run, explain = envelope.transactions, dry_run or envelope.dry_run, explain or envelope.explain
            loc.append("transactions")
            indexed = True
        elif isinstance(payload, dict):
            events, indexed = [payload], False
        else:
            if not payload:
                raise RequestValidationError([{"loc": ("body",), "msg": "no transactions", "type": "too_short"}])
            events, indexed = payload, True
        if explain and len(events) > EXPLAIN_MAX:
            raise RequestValidationError([{
                "loc": ("query", "explain"), "type": "value_error",
                "msg": f"explain is limited to {EXPLAIN_MAX} transactions per request",
            }])
        try:
            results = service.score(events, dry_run=dry_run, explain=explain)
        except EventInvalid as exc:
            index = getattr(exc, "index", 0)
            return _invalid(loc + ([index] if indexed else []), getattr(exc, "error", exc))
        except IngestUnavailable as exc:  # not every transaction is durable: the client resends
            log.warning("HTTP ingest refused: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        return {"dry_run": dry_run, "scores": results}

    @router.post("/labels", response_model=LabelResponse)
    def labels(
        payload: Annotated[Events, Body(description="a label event, a list of them, or {\"labels\": [...]}")],
    ) -> Any:
        loc: list[Any] = ["body"]
        if isinstance(payload, dict) and "labels" in payload and isinstance(payload["labels"], list):
            try:
                events = LabelEnvelope.model_validate(payload).labels
            except ValidationError as exc:
                raise _envelope_error(exc) from exc
            loc.append("labels")
            indexed = True
        elif isinstance(payload, dict):
            events, indexed = [payload], False
        else:
            if not payload:
                raise RequestValidationError([{"loc": ("body",), "msg": "no label events", "type": "too_short"}])
            events, indexed = payload, True
        try:
            return service.labels(events)
        except EventInvalid as exc:
            index = getattr(exc, "index", 0)
            return _invalid(loc + ([index] if indexed else []), getattr(exc, "error", exc))

    @router.get("/model", response_model=ModelInfo)
    def model() -> Any:
        return service.model_info()

    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if hasattr(service, "event_schemas"):
        _describe_events(app, *service.event_schemas())
    return app


def _describe_events(app: FastAPI, tx: dict[str, Any], label: dict[str, Any]) -> None:
    """Put the event shapes into the OpenAPI document: the routes take any JSON objects
    (field names are configurable and the feature parser judges them), so FastAPI alone
    would document the bodies as free-form objects."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            bodies = {
                ("/v1/score", "post"): {"anyOf": [
                    tx, {"type": "array", "items": tx, "minItems": 1},
                    {"type": "object", "required": ["transactions"], "additionalProperties": False,
                     "properties": {"transactions": {"type": "array", "items": tx, "minItems": 1},
                                    "dry_run": {"type": "boolean"}, "explain": {"type": "boolean"}}},
                ]},
                ("/v1/labels", "post"): {"anyOf": [
                    label, {"type": "array", "items": label, "minItems": 1},
                    {"type": "object", "required": ["labels"], "additionalProperties": False,
                     "properties": {"labels": {"type": "array", "items": label, "minItems": 1}}},
                ]},
            }
            for (path, method), schema in bodies.items():
                operation = doc.get("paths", {}).get(path, {}).get(method)
                if operation is not None:
                    operation["requestBody"]["content"]["application/json"]["schema"] = schema
        return app.openapi_schema

    app.openapi = openapi
