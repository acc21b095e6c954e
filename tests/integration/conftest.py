"""Fixtures of the integration tests beyond the shared broker ones in ``tests/conftest.py``."""

import pytest


@pytest.fixture
def kafka_client() -> str:
    """The Kafka client of the daemons a test starts; ``daemon_harness.with_clients``
    parametrises it per test."""
    return "kafka-python"
