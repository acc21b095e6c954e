"""HTTP endpoints for operators: ``/metrics``, ``/healthz``, ``/readyz``.

:func:`create_app` builds a FastAPI app that a scoring API can add routes to;
:class:`MonitoringServer` runs any ASGI app with uvicorn in a background thread so the
daemon's loop stays in the main thread, where it owns the signals.

* ``/metrics``: the Prometheus exposition of the registry given to :class:`Metrics`.
* ``/healthz``: 200 while the process serves HTTP at all (liveness).
* ``/readyz``: 200 when ``readiness()`` says ready, else 503, with the checks as JSON
  (e.g. ``{"checkpoint_loaded": true, "partitions_assigned": false, ...}``). The callable is
  run in a worker thread, so it must only read state the daemon publishes (flags, times).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

import fraudstream
from fraudstream.monitoring.exceptions import ServerStartFailed
from fraudstream.monitoring.metrics import Metrics

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, Mapping[str, Any]]]


def always_ready() -> tuple[bool, dict[str, Any]]:
    return True, {}


class _MetricsWithoutSlash:
    """Route ``/metrics`` to the mounted app without the redirect a mount would answer.

    Prometheus and curl users ask for ``/metrics``; a Starlette mount matches only
    ``/metrics/``. A raw ASGI wrapper costs nothing on other routes.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            scope = dict(scope, path="/metrics/", raw_path=b"/metrics/")
        await self.app(scope, receive, send)


def create_app(metrics: Metrics, readiness: Readiness | None = None) -> FastAPI:
    """The monitoring app: ``/metrics`` (mounted ``prometheus_client`` ASGI app),
    ``/healthz`` and ``/readyz``. Further routes may be added by the caller."""
    readiness = readiness or always_ready
    app = FastAPI(
        title="fraudstream",
        version=fraudstream.__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    metrics_app = make_asgi_app(registry=metrics.registry)
    app.mount("/metrics", metrics_app)
    app.add_middleware(_MetricsWithoutSlash)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            ready, checks = readiness()
        except Exception as exc:  # a failing check means "not ready", never a crashed endpoint
            log.warning("readiness check raised %s: %s", type(exc).__name__, exc)
            return JSONResponse(
                {"ready": False, "checks": {"error": f"{type(exc).__name__}: {exc}"}},
                status_code=503,
            )
        return JSONResponse(
            {"ready": bool(ready), "checks": dict(checks)},
            status_code=200 if ready else 503,
        )

    return app


class MonitoringServer:
    """Serve an ASGI app on ``host:port`` from a daemon thread.

    ``start()`` binds the socket in the caller's thread, so a taken port fails there and
    then; ``port=0`` lets the OS pick one, read it from :attr:`port` after ``start()``.
    ``stop()`` asks uvicorn to finish in-flight requests and joins the thread.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 start_timeout: float = 10.0):
        self.app = app
        self.host = host
        self.requested_port = port
        self.start_timeout = start_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerStartFailed("the server has not been started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MonitoringServer:
        if self._thread is not None:
            raise ServerStartFailed("the server is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            raise ServerStartFailed(
                f"cannot bind {self.host}:{self.requested_port}: {exc}"
            ) from exc
        sock.listen(128)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]},
            name="fraudstream-monitoring-http", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerStartFailed(f"HTTP server on {self.url} did not start")
            time.sleep(0.01)
        log.info("monitoring endpoints on %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("monitoring HTTP thread did not stop within %.1f s", timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> MonitoringServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
