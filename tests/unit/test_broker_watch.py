"""The daemon's outage lines: one WARNING when the broker has been away 2 s, one INFO when back."""

import logging
from types import SimpleNamespace

from fraudstream.daemon.app import BROKER_AWAY_AFTER_S, Daemon


class FlakySource:
    def __init__(self):
        self.up = True

    def connected(self) -> bool:
        return self.up


def test_an_outage_is_one_warning_and_one_info_and_a_blip_is_nothing(caplog):
    source = FlakySource()
    settings = SimpleNamespace(kafka=SimpleNamespace(bootstrap_servers="broker:9092"))
    daemon = SimpleNamespace(source=source, settings=settings, _broker_lost_at=None, _broker_away=False,
                             longest_stall_s=0.0)
    script = [(0.0, True), (1.0, False), (1.0 + BROKER_AWAY_AFTER_S / 2, True),  # a blip: reconnected at once
              (10.0, False), (11.0, False), (10.0 + BROKER_AWAY_AFTER_S, False), (40.0, False), (45.0, True), (46.0, True)]
    with caplog.at_level(logging.INFO, logger="fraudstream.daemon.app"):
        for now, up in script:
            source.up = up
            Daemon._watch_broker(daemon, now)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("Kafka broker unreachable (broker:9092) for 2.0s")
    assert lines[1][1].startswith("Kafka broker reachable again after 35.0s")
