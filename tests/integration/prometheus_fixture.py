"""A real Prometheus server (Debian's ``prometheus`` package) for tests.

It listens on a free 127.0.0.1 port, keeps its config and TSDB in a temporary directory,
scrapes the given targets every second and is stopped by its pid. Without the binaries the
tests skip on a developer machine and fail under CI (``CI=true``), where ``.ci/run``
installs them, so a missing install step cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def require_binary(name: str) -> str:
    """Path of ``name``; skip the test without it, or fail when running under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (apt-get install -y prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class PrometheusServer:
    """``prometheus`` scraping ``targets`` as job ``job``, optionally evaluating rules."""

    def __init__(
        self,
        workdir: Path,
        targets: Iterable[str],
        job: str = "fraudstream",
        rule_files: Iterable[Path] = (),
        interval: str = "1s",
    ):
        self.workdir = Path(workdir)
        self.targets = list(targets)
        self.job = job
        self.rule_files = [Path(p) for p in rule_files]
        self.interval = interval
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        rules = []
        for path in self.rule_files:
            copy = self.workdir / path.name
            shutil.copyfile(path, copy)
            rules.append(copy.name)
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": rules,
            "scrape_configs": [{
                "job_name": self.job,
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "static_configs": [{"targets": self.targets}],
            }],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        binary = require_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self.port = free_port()
        log = open(self.workdir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        self.client = httpx.Client(base_url=self.url, timeout=10)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
            try:
                return self.client.get("/-/ready").status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, timeout, "prometheus to be ready")
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    # --- HTTP API ------------------------------------------------------------------------

    def query(self, expr: str) -> list[dict]:
        """Instant query; raises with Prometheus' message when the expression is refused."""
        assert self.client is not None, "server not started"
        r = self.client.get("/api/v1/query", params={"query": expr})
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}\n{body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def targets_up(self) -> list[dict]:
        assert self.client is not None
        return self.client.get("/api/v1/targets").json()["data"]["activeTargets"]

    def rules(self) -> list[dict]:
        assert self.client is not None
        groups = self.client.get("/api/v1/rules").json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
