"""``fraudstream demo``: a local broker, a bootstrap model, the daemon and live traffic.

1. start the local Kafka broker (``dev/kafka``) unless a bootstrap address is given;
2. create fresh topics for this run;
3. simulate history + stream days; train a bootstrap model offline on the history;
4. start the daemon (with its metrics endpoint) in a thread;
5. stream the simulated days (transactions and delayed label events) at a rate, showing
   live progress: events/s, scored, trained steps, rolling AP, drift alarms;
6. when the stream is drained (or on Ctrl-C) stop the daemon cleanly, then the broker.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudstream.config import Settings
from fraudstream.errors import FraudstreamError

REPO = Path(__file__).resolve().parents[1]
DEV_KAFKA = REPO / "dev" / "kafka"


class DemoFailed(FraudstreamError):
    """The demo could not set up one of its parts."""


def _broker(port: int, console: Console) -> tuple[str, bool]:
    """Start the local broker (idempotent); return its address and whether we started it."""
    if not DEV_KAFKA.exists():
        raise DemoFailed(f"{DEV_KAFKA} not found: run the demo from a checkout or pass --bootstrap")
    running = subprocess.run([str(DEV_KAFKA), "status", "--port", str(port)], capture_output=True).returncode == 0
    console.print(f"[bold]1/5[/] local Kafka broker on 127.0.0.1:{port} ({'already running' if running else 'starting'})")
    started = subprocess.run([str(DEV_KAFKA), "start", "--port", str(port)], capture_output=True, text=True)
    if started.returncode != 0:
        raise DemoFailed(f"dev/kafka start failed:\n{started.stderr[-2000:]}")
    return started.stdout.strip().splitlines()[-1], not running


def _stop_broker(port: int, console: Console) -> None:
    result = subprocess.run([str(DEV_KAFKA), "stop", "--port", str(port)], capture_output=True, text=True)
    console.print(f"broker stopped ({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'ok'})")


def _split(sim, history_days: int):
    """The simulation's first ``history_days`` (to train on) and the rest (to stream)."""
    import numpy as np

    tx = sim.transactions
    history = tx[tx["day"] < history_days]
    stream_rows = np.flatnonzero(tx["day"].to_numpy() >= history_days)
    keep_labels = np.isin(sim.label_tx_index, stream_rows)
    position = np.full(len(tx), -1)
    position[stream_rows] = np.arange(len(stream_rows))
    stream = dataclasses.replace(
        sim,
        transactions=tx.iloc[stream_rows].reset_index(drop=True),
        labels=sim.labels[keep_labels].reset_index(drop=True),
        label_tx_index=position[sim.label_tx_index[keep_labels]],
    )
    return history, stream


def _view(stats: dict[str, Any]) -> Table:
    table = Table(title="fraudstream demo (Ctrl-C stops everything cleanly)", show_header=False)
    for key, value in stats.items():
        table.add_row(key, value if isinstance(value, str) else f"{value:,}" if isinstance(value, int) else f"{value:.3f}")
    return table


def run_demo(
    settings: Settings,
    console: Console,
    bootstrap: str | None = None,
    port: int = 9092,
    customers: int = 2000,
    terminals: int = 4000,
    history_days: int = 56,
    stream_days: int = 21,
    rate: float = 2000.0,
    workdir: Path = Path(".demo"),
    keep_broker: bool = False,
) -> dict[str, Any]:
    from fraudstream.config.simulate import SimulatorSettings  # noqa: F401 - settings type
    from fraudstream.consumers.clients import create_topics
    from fraudstream.daemon.app import Daemon
    from fraudstream.features import read_events
    from fraudstream.models.training import train_offline
    from fraudstream.monitoring.daemon_monitor import DaemonMonitor
    from fraudstream.simulate.engine import simulate
    from fraudstream.simulate.kafka import produce
    from fraudstream.simulate.output import write_transactions

    started_broker = False
    if bootstrap is None:
        bootstrap, started_broker = _broker(port, console)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    topics = {kind: f"demo-{run_id}-{kind}" for kind in ("transactions", "labels", "scores", "dlq")}
    workdir = workdir / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    kafka = settings.kafka.model_copy(update={
        "bootstrap_servers": bootstrap, "group_id": f"demo-{run_id}",
        "topics": settings.kafka.topics.model_copy(update=topics),
    })
    settings = settings.model_copy(update={
        "kafka": kafka,
        "checkpoints": settings.checkpoints.model_copy(update={"directory": workdir / "checkpoints", "every_seconds": 10.0}),
        "model": settings.model.model_copy(update={"epochs": min(settings.model.epochs, 5)}),
        "simulator": settings.simulator.model_copy(update={"customers": customers, "terminals": terminals}),
    })
    daemon = None
    daemon_thread = None
    try:
        create_topics(bootstrap, {name: 1 if kind == "dlq" else 3 for kind, name in topics.items()},
                      client_id="fraudstream-demo")
        console.print(f"[bold]2/5[/] topics {', '.join(topics.values())}")

        console.print(f"[bold]3/5[/] simulating {history_days + stream_days} days of {customers:,} customers; "
                      f"training a bootstrap model on the first {history_days}")
        sim = simulate(settings.simulator, days=history_days + stream_days, seed=settings.simulator.seed)
        history, stream = _split(sim, history_days)
        history_file = workdir / "history.jsonl"
        write_transactions(dataclasses.replace(sim, transactions=history), history_file, inline_labels=True)
        report = train_offline(read_events(history_file, settings.features.fields), settings, workdir / "artifact")
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in report.metrics.items() if isinstance(v, float))
        console.print(f"      bootstrap model: {metrics}")

        console.print("[bold]4/5[/] starting the daemon")
        monitor = DaemonMonitor(settings)
        daemon = Daemon.open(settings, report.artifact, monitor=monitor, warm_from=history_file)
        if daemon.engine.resumed_seq is None:
            console.print(f"      feature windows warmed from the history: {daemon.engine.features.n_entities}")
        daemon_thread = threading.Thread(target=daemon.run, name="fraudstream-daemon", daemon=True)
        daemon_thread.start()
        console.print(f"      metrics on {daemon.http.url}/metrics" if daemon.http else "")

        console.print(f"[bold]5/5[/] streaming {len(stream.transactions):,} transactions and their labels "
                      f"at {rate:,.0f} tx/s")
        produced: dict[str, Any] = {}

        def producer() -> None:
            try:
                produced["report"] = produce(stream, settings.kafka, rate=rate, progress=False)
            except Exception as exc:  # shown in the summary; the demo still stops cleanly
                produced["error"] = exc

        producer_thread = threading.Thread(target=producer, name="fraudstream-demo-producer", daemon=True)
        started = time.monotonic()
        producer_thread.start()
        total_tx = len(stream.transactions)
        stats: dict[str, Any] = {}
        with Live(_view(stats), console=console, refresh_per_second=4) as live:
            last_consumed, last_t = 0, time.monotonic()
            caught_up = False
            while True:
                time.sleep(0.5)
                m = monitor.metrics
                value = lambda name, **labels: int(m.registry.get_sample_value(name, labels or None) or 0)  # noqa: E731
                consumed = value("fraudstream_events_consumed_total", topic=topics["transactions"]) + value(
                    "fraudstream_events_consumed_total", topic=topics["labels"])
                now = time.monotonic()
                rate_now = (consumed - last_consumed) / max(now - last_t, 1e-6)
                last_consumed, last_t = consumed, now
                scored = sum(value("fraudstream_scores_total", decision=d) for d in ("approve", "review", "block"))
                snap = monitor.snapshot
                ap = snap.get("average_precision")
                stats = {
                    "elapsed": f"{now - started:.0f} s",
                    "events consumed": consumed,
                    "events/s": f"{rate_now:,.0f}",
                    "transactions scored": f"{scored:,} / {total_tx:,}",
                    "labels joined": value("fraudstream_labels_joined_total"),
                    "training steps": daemon.engine.trainer.steps,
                    "model version": daemon.engine.model_version,
                    "rolling AP (prequential)": "-" if ap is None else f"{ap:.3f}",
                    "rolling ROC AUC": "-" if snap.get("roc_auc") is None else f"{snap['roc_auc']:.3f}",
                    "drift alarms": len(monitor.detections),
                    "checkpoints written": daemon.checkpoints_written,
                }
                live.update(_view(stats))
                sent = produced.get("report")
                drained = sent is not None and consumed >= sent.transactions + sent.labels
                if drained and not caught_up:
                    daemon.engine.drain()  # the learning thread catches up before the last view
                    caught_up = True
                    continue
                if drained or not daemon_thread.is_alive() or "error" in produced:
                    break
        if "error" in produced:
            raise DemoFailed(f"producing the stream failed: {produced['error']}")
        return stats
    finally:
        if daemon is not None:
            daemon.stopping.set()
        if daemon_thread is not None:
            daemon_thread.join(timeout=120)
            console.print("daemon stopped (final checkpoint written, offsets committed)")
        if started_broker and not keep_broker:
            _stop_broker(port, console)
        (workdir / "history.jsonl").unlink(missing_ok=True)
