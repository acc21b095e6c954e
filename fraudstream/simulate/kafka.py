"""Producing a simulation to Kafka: transactions and label events, merged in event time.

Both kinds are keyed by customer_id, so with equal partition counts a customer's
transactions and labels land in partitions of the same number. With a rate, sends are paced
by ``time.monotonic()`` (transactions per second; label events travel between them and do
not count); with rate 0 the producer goes as fast as the broker takes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fraudstream.config import KafkaSettings
from fraudstream.simulate.engine import Simulation
from fraudstream.simulate.exceptions import KafkaProduceFailed
from fraudstream.simulate.output import label_lines, merged_order, transaction_lines

log = logging.getLogger(__name__)

_PROGRESS_EVERY = 500  # events between progress-bar updates (also after each paced sleep)
_MIN_SLEEP = 0.002  # seconds: sleeping less than this costs more than it paces


@dataclass(frozen=True)
class ProduceReport:
    transactions: int
    labels: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return (self.transactions + self.labels) / self.seconds if self.seconds > 0 else 0.0


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python producer options from the settings: batching on, the daemon's connection
    and security options (one mapping, so both connect the same way)."""
    from fraudstream.consumers.kafka import client_options  # loads the Kafka client

    return client_options(kafka) | {
        "client_id": f"{kafka.client_id}-simulate",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "bootstrap_timeout_ms": 15_000,
    }


def produce(
    sim: Simulation,
    kafka: KafkaSettings,
    rate: float = 0.0,
    progress: bool = True,
    inline_labels: bool | None = None,
    label_events: bool | None = None,
    producer: Any = None,
    producer_options: dict[str, Any] | None = None,
) -> ProduceReport:
    """Send the simulation to ``kafka.topics.transactions`` and ``kafka.topics.labels``.

    Events go in event-time order (label events before transactions at an equal time).
    ``rate`` is transactions per second of wall clock, 0 for as fast as possible.
    ``producer`` lets a caller pass its own (anything with ``send``/``flush``/``close``);
    by default one is made from the settings (plus ``producer_options``, kafka-python
    names) and closed at the end, after the daemon's start-up check of the connection. Raises
    ``KafkaProduceFailed`` if the broker cannot be reached or refuses this client (naming a
    wrong password, CA or protocol) or refuses events.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0 (0 = as fast as possible)")
    # Imported here: writing files should not pay for loading the Kafka client.
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    settings = sim.settings
    inline = settings.inline_labels if inline_labels is None else inline_labels
    use_labels = settings.label_events if label_events is None else label_events
    tx_values = [line.encode() for line in transaction_lines(sim.transactions, inline)]
    tx_keys = [c.encode() for c in sim.transactions["customer_id"].tolist()]
    if use_labels:
        label_values = [line.encode() for line in label_lines(sim.labels, settings.label_scenario)]
        label_keys = [tx_keys[i] for i in sim.label_tx_index.tolist()]
    else:
        label_values, label_keys = [], []
    is_label, rows = merged_order(sim, use_labels)

    own = producer is None
    if own:
        from fraudstream.consumers.exceptions import KafkaConnectFailed
        from fraudstream.consumers.kafka import check_connection

        try:  # a wrong password, CA or protocol is named at once, not retried until a timeout
            check_connection(kafka)
        except KafkaConnectFailed as exc:
            raise KafkaProduceFailed(str(exc)) from None
        try:
            producer = KafkaProducer(**(producer_config(kafka) | (producer_options or {})))
        except KafkaError as exc:
            raise KafkaProduceFailed(
                f"cannot start a producer for {kafka.bootstrap_servers}: {exc}"
            ) from exc
    failures: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        if not failures:
            log.error("simulate: delivery to Kafka failed: %s", exc)
        failures.append(exc)

    tx_topic, label_topic = kafka.topics.transactions, kafka.topics.labels
    total = len(rows)
    bar = _progress_bar(progress)
    task = bar.add_task("producing", total=total) if bar else None
    started = time.monotonic()
    sent_tx = sent = 0
    try:
        if bar:
            bar.start()
        for i, (lab, r) in enumerate(zip(is_label.tolist(), rows.tolist())):
            if failures:
                break  # the broker is refusing or gone: stop rather than queue the rest
            if lab:
                future = producer.send(label_topic, value=label_values[r], key=label_keys[r])
            else:
                if rate:
                    ahead = started + sent_tx / rate - time.monotonic()
                    if ahead > _MIN_SLEEP:
                        if bar:
                            bar.update(task, completed=i)
                        time.sleep(ahead)
                future = producer.send(tx_topic, value=tx_values[r], key=tx_keys[r])
                sent_tx += 1
            sent += 1
            future.add_errback(on_error)
            if bar and i % _PROGRESS_EVERY == 0:
                bar.update(task, completed=i)
        producer.flush()
        if bar:
            bar.update(task, completed=total)
    except KafkaError as exc:
        raise KafkaProduceFailed(f"producing to {kafka.bootstrap_servers} failed: {exc}",
                                 failed=len(failures) + 1) from exc
    finally:
        if bar:
            bar.stop()
        if own:
            producer.close()
    if failures:
        raise KafkaProduceFailed(
            f"delivery to {kafka.bootstrap_servers} failed for {len(failures)} event(s); "
            f"stopped after sending {sent} of {total}; first error: {failures[0]}",
            failed=len(failures),
        )
    return ProduceReport(
        transactions=sent_tx, labels=total - sent_tx, seconds=time.monotonic() - started
    )


def _progress_bar(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class _RateColumn(ProgressColumn):
    """Events per second so far (Rich's own speed column counts bytes)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s")
