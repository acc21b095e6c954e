"""Shared fixtures: the real Kafka broker that tests marked ``kafka`` run against.

fraudstream's Kafka code is tested against a real broker (dev/kafka), never a
mock, because offsets, rebalances and commit semantics are what can go wrong.

- ``FRAUDSTREAM_TEST_BOOTSTRAP`` set (``make test`` sets it after starting a
  broker): the tests use that broker and leave it running.
- Not set: the session starts its own broker with ``dev/kafka start`` on free
  ports (or ``FRAUDSTREAM_TEST_KAFKA_PORT`` and the port after it) with state in
  pytest's temporary directory, and stops it at the end. A private broker per
  session keeps two concurrent pytest runs from stopping each other's broker.

Unit tests (``tests/unit``) must never need a broker: one that asks for a
broker fixture or carries the ``kafka`` marker fails before anything starts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEV_KAFKA = REPO / "dev" / "kafka"
UNIT_DIR = REPO / "tests" / "unit"

#: Fixtures that need a running broker; a test using one is marked ``kafka`` automatically.
BROKER_FIXTURES = frozenset({"kafka_bootstrap", "kafka_admin", "unique_topic"})


def _free_port(exclude: int = 0) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != exclude:
            return port


def _dev_kafka(command: str, port: int, controller_port: int, state_dir: Path,
               *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEV_KAFKA), command, "--port", str(port),
         "--controller-port", str(controller_port), "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )


def _needs_broker(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & BROKER_FIXTURES) or item.get_closest_marker("kafka") is not None


def _is_unit_test(item: pytest.Item) -> bool:
    return UNIT_DIR in Path(str(item.path)).resolve().parents


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with importlib.resources APIs that
    # Python 3.11 deprecates; hundreds of these per run would bury our own warnings.
    for message in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every broker-using test ``kafka`` so ``-m "not kafka"`` deselects it."""
    for item in items:
        if _needs_broker(item) and item.get_closest_marker("kafka") is None:
            item.add_marker(pytest.mark.kafka)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a unit test that needs a broker before its fixtures start one."""
    if _is_unit_test(item) and _needs_broker(item):
        pytest.fail(
            "unit tests must not need a Kafka broker; move this test to tests/integration "
            "(or drop the kafka marker / broker fixture)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``host:port`` of a running broker for this test session."""
    external = os.environ.get("FRAUDSTREAM_TEST_BOOTSTRAP")
    if external:
        yield external
        return

    fixed = os.environ.get("FRAUDSTREAM_TEST_KAFKA_PORT")
    state_dir = tmp_path_factory.mktemp("kafka")
    for _ in range(3):  # a free port can be taken before the broker binds it: pick again
        port = int(fixed) if fixed else _free_port()
        controller_port = port + 1 if fixed else _free_port(exclude=port)
        started = _dev_kafka("start", port, controller_port, state_dir, timeout=600)
        if started.returncode == 0 or fixed or "already in use" not in started.stderr:
            break
    if started.returncode != 0:
        pytest.fail(f"dev/kafka could not start the test broker:\n{started.stderr}", pytrace=False)
    bootstrap = started.stdout.strip().splitlines()[-1]
    try:
        yield bootstrap
    finally:
        stopped = _dev_kafka("stop", port, controller_port, state_dir, timeout=120)
        if stopped.returncode != 0:
            warnings.warn(f"dev/kafka stop failed: {stopped.stderr}", stacklevel=1)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str):
    """A session-wide kafka-python admin client."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="fraudstream-tests")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def unique_topic(kafka_admin, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory ``unique_topic(prefix=None, partitions=1, configs=None) -> name``.

    Each call creates a fresh topic (named after the test plus a random suffix,
    so tests never see each other's records) and waits until every partition
    has a leader. The topics are deleted when the test ends.
    """
    from kafka.errors import KafkaError

    created: list[str] = []
    default_prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")

    def make(prefix: str | None = None, partitions: int = 1,
             configs: dict[str, str] | None = None) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix) if prefix else default_prefix
        name = f"{stem or 'topic'}-{uuid.uuid4().hex[:10]}"
        kafka_admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1,
                    "configs": dict(configs or {})}},
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield make

    if created:
        try:
            kafka_admin.delete_topics(created)
        except KafkaError as exc:  # cleanup only: the broker is wiped on its next start anyway
            warnings.warn(f"could not delete test topics {created}: {exc!r}", stacklevel=1)
