"""``fraudstream serve``: an engine behind the HTTP API, with no Kafka.

The HTTP API is the only ingress; each request is a batch of the daemon's per-batch step
(:class:`fraudstream.daemon.service.ScoringService`). This host owns what the Kafka daemon
owns in :mod:`fraudstream.daemon.app`: the lock, the monitor, the checkpoints and the
signals.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from fraudstream.config import Settings
from fraudstream.daemon.checkpoint import CheckpointStore
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.host import EngineHost
from fraudstream.daemon.lifecycle import ModelRequests
from fraudstream.daemon.policies import handle_model_requests
from fraudstream.daemon.service import ScoringService
from fraudstream.monitoring.api import add_scoring_routes
from fraudstream.monitoring.daemon_monitor import DaemonMonitor
from fraudstream.monitoring.server import create_app

log = logging.getLogger(__name__)


class KeepSignalServer(uvicorn.Server):
    """uvicorn re-raises a SIGTERM it handled once it has shut down, and the default action
    kills the process before the stop checkpoint; this server only handles the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class ApiHost(EngineHost):
    """An engine served over HTTP only.

    Requests are the batches; after each one the monitor is fed (so ``/metrics`` counts API
    traffic) and a checkpoint is written every ``checkpoints.every_steps`` training steps,
    on a drift that asks for one, and on stop. Checkpoints carry no Kafka offsets, so give
    ``serve`` its own checkpoint directory rather than a Kafka daemon's.
    """

    def __init__(self, settings: Settings, engine: Engine, store: CheckpointStore):
        self.settings = settings
        self.engine = engine
        self.store = store
        self.lock = threading.RLock()
        self._requested: tuple[str, list[str]] | None = None
        self._steps_at_checkpoint = engine.trainer.steps
        self.monitor = DaemonMonitor(settings, serve=False)
        self.monitor.attach(self)
        self.service = ScoringService(engine, self.lock, self._after_batch)
        self.model_requests = ModelRequests(store.directory)  # checked after each request

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {"state_loaded": True, "origin": self.engine.origin}

    def app(self) -> FastAPI:
        mon = self.settings.monitoring
        app = create_app(self.monitor.metrics, self.readiness)
        return add_scoring_routes(app, self.service, mon.api_token, mon.api_max_body_bytes)

    def request_checkpoint(self, reason: str, tags: list[str] | None = None) -> None:
        self._requested = (reason, tags or [])

    def _after_batch(self, out: Any) -> None:
        """Runs under the lock after each ingested request."""
        self.monitor.on_batch(self, out, None)
        self.act_on_drift(self.monitor.on_idle(self))
        if handle_model_requests(self.engine, self.model_requests, self.store) and self._requested is None:
            self._requested = ("lifecycle", ["lifecycle"])
        if self._requested is not None:
            reason, tags = self._requested
            self._requested = None
            self.checkpoint(reason, tags)
        elif self.engine.trainer.steps - self._steps_at_checkpoint >= self.settings.checkpoints.every_steps:
            self.checkpoint("interval")

    def checkpoint(self, reason: str, tags: list[str] | None = None) -> None:
        with self.lock:
            started = time.monotonic()
            self.flush_monitor()
            info = self.engine.save_checkpoint(
                self.store, {}, reason=reason, tags=tags, extra_state=self.monitor.state_dict(),
                score=self.monitor.checkpoint_score(),
            )
            self._steps_at_checkpoint = self.engine.trainer.steps
            self.monitor.on_checkpoint(self, info, time.monotonic() - started)
            log.info("checkpoint %s (%s): model_version=%s", info.name, reason, self.engine.model_version)

    def serve(self, host: str, port: int) -> None:
        """Serve in the foreground until SIGINT/SIGTERM (uvicorn's handlers), then checkpoint."""
        self.store.lock()
        try:
            log.info("scoring API on http://%s:%d (/v1/score, /v1/labels, /v1/model, /metrics)", host, port)
            config = uvicorn.Config(self.app(), host=host, port=port, log_level="warning", access_log=False)
            KeepSignalServer(config).run()
        finally:
            self.checkpoint("stop")
            self.store.unlock()
