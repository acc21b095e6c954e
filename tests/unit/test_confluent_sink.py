"""The confluent sink's handling of librdkafka's delivery reports, with a fake producer.

The real broker proves the oversize path (tests/integration/test_daemon_bad_input.py); the
failures a broker will not produce on demand (a delivery timed out, a topic not authorised,
a queue never drained) are played here.
"""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from fraudstream.config import KafkaSettings
from fraudstream.consumers import confluent
from fraudstream.consumers.exceptions import SinkFailed


class FakeMessage:
    def __init__(self, topic, value, key, headers):
        self._args = topic, value, key, headers

    def topic(self):
        return self._args[0]

    def value(self):
        return self._args[1]

    def key(self):
        return self._args[2]

    def headers(self):
        return self._args[3]


class FakeProducer:
    """Queues produced records; ``poll``/``flush`` report them with the next planned outcome."""

    def __init__(self, config):
        self.config = config
        self.produced: list[tuple] = []
        self.queued: list[tuple] = []
        self.outcomes: list[KafkaError | None] = []  # per delivery, in order; then success
        self.refuse_larger_than: int | None = None
        self.stuck = False  # flush never drains the queue

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        if self.refuse_larger_than is not None and len(value) > self.refuse_larger_than:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.produced.append((topic, value, key, headers))
        self.queued.append((FakeMessage(topic, value, key, headers), on_delivery))

    def poll(self, timeout=None):
        if self.stuck:
            return 0
        queued, self.queued = self.queued, []
        for msg, report in queued:
            report(self.outcomes.pop(0) if self.outcomes else None, msg)
        return len(queued)

    def flush(self, timeout=None):
        self.poll()
        return len(self.queued)


@pytest.fixture
def sink(monkeypatch):
    monkeypatch.setattr(confluent, "Producer", FakeProducer)
    return confluent.ConfluentSink(KafkaSettings())


def test_the_producer_gets_the_mapped_options(sink):
    assert sink.producer.config["acks"] == "all"
    assert sink.producer.config["partitioner"] == "murmur2_random"


def test_a_record_the_topic_refuses_as_too_large_is_replaced_by_its_smaller_form(sink):
    sink.producer.outcomes = [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)]
    sink.send("dlq", b"x" * 1000, b"k", if_too_large=b"small")
    sink.flush(1)
    assert [p[1] for p in sink.producer.produced] == [b"x" * 1000, b"small"]
    assert sink.failed == 0


def test_a_record_too_large_for_the_producer_goes_in_its_smaller_form_at_once(sink):
    sink.producer.refuse_larger_than = 100
    sink.send("dlq", b"x" * 1000, b"k", if_too_large=b"small")
    assert [p[1] for p in sink.producer.produced] == [b"small"]
    with pytest.raises(SinkFailed, match="too large"):
        sink.send("scores", b"y" * 1000, b"k")


def test_a_delivery_that_timed_out_is_sent_again_by_the_next_flush(sink):
    sink.producer.outcomes = [KafkaError(KafkaError._MSG_TIMED_OUT)]
    sink.send("scores", b"v", b"k", headers=[("h", b"1")])
    sink.flush(1)
    assert sink.producer.produced == [("scores", b"v", b"k", [("h", b"1")])] * 2
    assert sink.failed == 0


def test_a_record_refused_for_good_fails_the_next_flush_once(sink):
    sink.producer.outcomes = [KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)]
    sink.send("scores", b"v", b"k")
    with pytest.raises(SinkFailed, match="refused for good"):
        sink.flush(1)
    assert sink.failed == 1
    sink.flush(1)  # counted and logged once; later checkpoints are not held back by it


def test_records_not_acknowledged_in_time_fail_the_flush(sink):
    sink.producer.stuck = True
    sink.send("scores", b"v", b"k")
    with pytest.raises(SinkFailed, match="not acknowledged"):
        sink.flush(0.01)


def test_send_and_wait_reports_a_refused_record(sink):
    sink.producer.outcomes = [None, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)]
    with pytest.raises(SinkFailed, match="not acknowledged"):
        sink.send_and_wait("transactions", [(b"a", b"1"), (b"b", b"2")], timeout_s=1)
    sink.send_and_wait("transactions", [(b"a", b"1")], timeout_s=1)


def test_client_errors_librdkafka_retries_stay_at_debug_and_fatal_ones_are_errors(caplog):
    # a broker outage must leave the daemon's one warning, not one per reconnect
    caplog.set_level(logging.DEBUG, logger=confluent.__name__)
    report = confluent._ErrorLog("consumer")
    report(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    report(KafkaError(KafkaError._TRANSPORT))
    report(KafkaError(KafkaError.FENCED_INSTANCE_ID, fatal=True))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG, logging.ERROR]
