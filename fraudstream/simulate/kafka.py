"""Producing a simulation to Kafka: transactions and label events, merged in event time.

Both kinds are keyed by customer_id, so with equal partition counts a customer's
transactions and labels land in partitions of the same number. With a rate, sends are paced
by ``time.monotonic()`` (transactions per second; label events travel between them and do
not count); with rate 0 the producer goes as fast as the broker takes it.
"""

from __future__ import annotations

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

_PROGRESS_EVERY = 500  # events between progress-bar updates (also after each paced sleep)
_MIN_SLEEP = 0.002  # seconds: sleeping less than this costs more than it paces
#: How long the last flush may wait for the broker to acknowledge what is queued (a broker
#: that is down for a while comes back within it).
FLUSH_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ProduceReport:
    transactions: int
    labels: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return (self.transactions + self.labels) / self.seconds if self.seconds > 0 else 0.0


def produce(
    sim: Simulation,
    kafka: KafkaSettings,
    rate: float = 0.0,
    progress: bool = True,
    inline_labels: bool | None = None,
    label_events: bool | None = None,
    sink: Any = None,
    producer_options: dict[str, Any] | None = None,
) -> ProduceReport:
    """Send the simulation to ``kafka.topics.transactions`` and ``kafka.topics.labels``.

    Events go in event-time order (label events before transactions at an equal time).
    ``rate`` is transactions per second of wall clock, 0 for as fast as possible.
    ``sink`` lets a caller pass its own (``send``/``flush``/``close`` and a ``failed``
    count, as the daemon's sinks); by default the daemon's sink for ``kafka.client`` is made,
    as client ``<client_id>-simulate``, batching in bulk, with ``producer_options`` added
    (in that client's names), after the daemon's start-up check of the connection, and closed at the end.
    Raises ``KafkaProduceFailed`` if the broker cannot be reached or refuses this client
    (naming a wrong password, CA or protocol) or refuses events.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0 (0 = as fast as possible)")
    # Imported here: writing files should not pay for loading the Kafka client.
    from fraudstream.consumers.clients import check_connection, kafka_sink
    from fraudstream.consumers.exceptions import KafkaConnectFailed, SinkFailed

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

    own = sink is None
    if own:
        try:  # a wrong password, CA or protocol is named at once, not retried until a timeout
            check_connection(kafka)
            sink = kafka_sink(kafka.model_copy(update={"client_id": f"{kafka.client_id}-simulate"}),
                              producer_options, bulk=True)
        except (KafkaConnectFailed, SinkFailed) as exc:
            raise KafkaProduceFailed(str(exc)) from None

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
            if sink.failed:
                break  # the broker is refusing or gone: stop rather than queue the rest
            if lab:
                sink.send(label_topic, label_values[r], label_keys[r])
            else:
                if rate:
                    ahead = started + sent_tx / rate - time.monotonic()
                    if ahead > _MIN_SLEEP:
                        if bar:
                            bar.update(task, completed=i)
                        time.sleep(ahead)
                sink.send(tx_topic, tx_values[r], tx_keys[r])
                sent_tx += 1
            sent += 1
            if bar and i % _PROGRESS_EVERY == 0:
                bar.update(task, completed=i)
        sink.flush(FLUSH_TIMEOUT_S)
        if bar:
            bar.update(task, completed=total)
    except SinkFailed as exc:
        raise KafkaProduceFailed(f"producing to {kafka.bootstrap_servers} failed: {exc}",
                                 failed=sink.failed + 1) from exc
    finally:
        if bar:
            bar.stop()
        if own:
            sink.close()
    if sink.failed:
        raise KafkaProduceFailed(
            f"delivery to {kafka.bootstrap_servers} failed for {sink.failed} event(s); "
            f"stopped after sending {sent} of {total} (each failure is logged)",
            failed=sink.failed,
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
