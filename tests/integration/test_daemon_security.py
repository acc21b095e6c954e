"""TLS and SASL_SSL against a real broker: the daemon works through each, bad settings fail at start.

One broker of this module's own (``dev/kafka start --tls``) has three client listeners:
PLAINTEXT, which only the test's own setup and reading use; SSL; and SASL_SSL with a SCRAM
user made by the broker's storage tool. The daemon runs through SSL and through SASL_SSL
(SCRAM-SHA-512) and must score every transaction and learn every label once; the simulator
feeds the SASL_SSL run through the same listener. A wrong password, a CA that did not sign
the broker's certificate and a PLAINTEXT client on the TLS port must each stop ``run`` at
start with one line naming the cause. The start-up check, called in-process, names the
other wrong settings against the real listeners. The password (and the wrong one) must
appear in no output of the test: daemon logs, command output, ``config show``, checkpoints,
broker logs.

Cost, measured on a loaded 2-core machine: 70-110 s in all. The broker start takes 7-40 s;
two daemons side by side on streams of about 800 transactions, 30 s; three failing daemons
side by side, 24 s (TensorFlow's import is most of it); the in-process checks, 1 s.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from daemon_harness import (
    Broker,
    Daemon,
    Stream,
    TopicSet,
    assert_learned_exactly_once,
    covers,
    daemons,  # noqa: F401 - fixture
    end_offsets,
    free_port_pair,
    newest_checkpoint,
    produce_stream,
    read_topic,
    scored_ids,
    with_clients,
    write_config,
)
from fraudstream.config import KafkaSettings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.consumers.exceptions import KafkaConnectFailed
from fraudstream.consumers.kafka import check_connection
from fraudstream.simulate import produce, simulate
from fraudstream.simulate.exceptions import KafkaProduceFailed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WRONG_PASSWORD = "wrong-" + uuid.uuid4().hex
#: Seconds from the daemon's "checking the connection" line to its exit when the broker refuses it.
FAIL_WITHIN_S = 30.0
PASSWORD_ENV = "FRAUDSTREAM__KAFKA__SASL_PASSWORD"


def _free_ports(count: int, taken: set[int]) -> list[int]:
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in taken:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class TlsBroker:
    """The module's broker and what a client needs for each listener."""

    def __init__(self, broker: Broker, outputs: Path):
        self.broker = broker
        self.outputs = outputs
        security = broker.security()
        self.listeners: dict[str, str] = security["listeners"]
        self.ca = security["ssl_cafile"]
        self.user = security["sasl_username"]
        self.password = Path(security["sasl_password_file"]).read_text().strip()

    @property
    def plain(self) -> str:
        return self.listeners["PLAINTEXT"]

    def kafka(self, protocol: str, listener: str | None = None, **extra) -> dict:
        """The ``kafka`` config section (no password: that goes in the environment)."""
        section = {"bootstrap_servers": self.listeners[listener or protocol], "security_protocol": protocol}
        if protocol.endswith("SSL"):
            section["ssl_cafile"] = self.ca
        if protocol.startswith("SASL"):
            section |= {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": self.user}
        return section | extra

    def topics(self, name: str) -> TopicSet:
        suffix = uuid.uuid4().hex[:8]
        topics = TopicSet(f"{name}-tx-{suffix}", f"{name}-labels-{suffix}", f"{name}-scores-{suffix}",
                          f"{name}-dlq-{suffix}")
        admin = KafkaAdminClient(bootstrap_servers=self.plain, client_id="fraudstream-tests")
        try:
            admin.create_topics([NewTopic(topics.transactions, 2, 1), NewTopic(topics.labels, 2, 1),
                                 NewTopic(topics.scores, 1, 1), NewTopic(topics.dlq, 1, 1)],
                                wait_for_metadata=True)
        finally:
            admin.close()
        return topics


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory) -> TlsBroker:
    state_dir = tmp_path_factory.mktemp("tls-broker")
    outputs = tmp_path_factory.mktemp("tls-broker-outputs")
    for attempt in range(3):  # a free port can be taken before the broker binds it: pick again
        port = free_port_pair()
        broker = Broker(port, state_dir, tls_ports=tuple(_free_ports(2, {port, port + 1})))
        try:
            started = broker.start()
            break
        except AssertionError as exc:
            if attempt == 2 or "already in use" not in str(exc):
                raise
    try:
        (outputs / "dev-kafka-start.txt").write_text(started.stdout + started.stderr)
        yield TlsBroker(broker, outputs)
    finally:
        broker.stop()


def _assert_no_secret(roots: list[Path], secrets: list[str]) -> int:
    """No file under ``roots`` holds any of ``secrets``; the number of files read."""
    read = 0
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                read += 1
                for secret in secrets:
                    assert secret.encode() not in data, f"a secret is in {path}"
    assert read, f"nothing to read under {roots}"
    return read


def _cli(tmp_path: Path, name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``fraudstream ARGS`` with its output kept in ``<name>.txt`` for the secrets check."""
    done = subprocess.run([sys.executable, "-m", "fraudstream", *args], capture_output=True, text=True,
                          env=os.environ | env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    (tmp_path / f"{name}.txt").write_text(f"exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def _finish(daemon: Daemon, plain: str, topics: TopicSet, tx_ids: list[str], label_ids: list[str],
            checkpoints: Path) -> None:
    ends = end_offsets(plain, topics.inputs)
    assert sum(ends.values()) == len(tx_ids) + len(label_ids)
    info = daemon.wait_until(
        lambda: (i := newest_checkpoint(checkpoints)) is not None and covers(i, ends) and i,
        timeout=300, what="a checkpoint at the end offsets of both inputs",
    )
    assert_learned_exactly_once(info, label_ids)
    missing = set(tx_ids) - set(scored_ids(plain, topics.scores))
    assert not missing, f"{len(missing)} transactions never scored, e.g. {sorted(missing)[:5]}"


@with_clients("kafka-python", "confluent")  # librdkafka's TLS and SCRAM options from the same keys
def test_the_daemon_scores_and_learns_through_ssl_and_through_sasl_ssl(tls_broker, daemons, tmp_path):
    secret_env = {PASSWORD_ENV: tls_broker.password}

    # SSL: the stream is produced by the test on the PLAINTEXT listener.
    ssl_topics = tls_broker.topics("ssl")
    stream = Stream.simulated(customers=80, terminals=160, days=8, seed=7)
    produce_stream(tls_broker.plain, ssl_topics, stream)
    ssl_config = write_config(tmp_path / "ssl.yaml", tls_broker.listeners["SSL"], ssl_topics,
                              f"ssl-{uuid.uuid4().hex[:8]}", tmp_path / "ssl-checkpoints",
                              kafka=tls_broker.kafka("SSL"))

    # SASL_SSL: the simulator produces through the SASL_SSL listener with the daemon's settings.
    sasl_topics = tls_broker.topics("sasl")
    sasl_config = write_config(tmp_path / "sasl.yaml", tls_broker.listeners["SASL_SSL"], sasl_topics,
                               f"sasl-{uuid.uuid4().hex[:8]}", tmp_path / "sasl-checkpoints",
                               kafka=tls_broker.kafka("SASL_SSL"))
    simulated = _cli(tmp_path, "simulate", "simulate", "--kafka", "--config", str(sasl_config), "--days", "8",
                     "--customers", "80", "--terminals", "160", "--seed", "8", "--no-progress", env=secret_env)
    assert simulated.returncode == 0, simulated.stderr
    sasl_tx = [json.loads(r.value)["transaction_id"] for r in read_topic(tls_broker.plain, sasl_topics.transactions)]
    sasl_labels = [json.loads(r.value)["transaction_id"] for r in read_topic(tls_broker.plain, sasl_topics.labels)]
    assert len(sasl_tx) > 500 and len(sasl_labels) > 500

    ssl_daemon = daemons.start(ssl_config, "ssl")
    # At debug level kafka-python logs its authentication, and its own records are the likeliest
    # place for a password to leak.
    sasl_daemon = daemons.start(sasl_config, "sasl", args=["--log-level", "debug"], env=secret_env)
    _finish(ssl_daemon, tls_broker.plain, ssl_topics, stream.tx_ids, stream.label_ids, tmp_path / "ssl-checkpoints")
    _finish(sasl_daemon, tls_broker.plain, sasl_topics, sasl_tx, sasl_labels, tmp_path / "sasl-checkpoints")
    assert "Authenticated as fraudstream via SASL / SCRAM-SHA-512" in sasl_daemon.log()
    for daemon in (ssl_daemon, sasl_daemon):
        assert daemon.terminate() == 0, daemon.tail()
    daemons.assert_none_running()

    shown = _cli(tmp_path, "config-show", "config", "show", "--config", str(sasl_config), env=secret_env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"sasl_password: '?\*+'?", shown.stdout), shown.stdout
    # Every file of the test: configs, daemon logs, command output, both checkpoint directories.
    read = _assert_no_secret([tmp_path, tls_broker.outputs, tls_broker.broker.state_dir / "logs"],
                             [tls_broker.password])
    assert read > 20


def _settings(tls_broker: TlsBroker, protocol: str, listener: str | None = None, **extra) -> KafkaSettings:
    section = tls_broker.kafka(protocol, listener, **extra)
    if protocol.startswith("SASL"):
        section.setdefault("sasl_password", tls_broker.password)
    return KafkaSettings(**section)


def _check_fails(settings: KafkaSettings, password: str) -> str:
    started = time.monotonic()
    with pytest.raises(KafkaConnectFailed) as caught:
        check_connection(settings)
    assert time.monotonic() - started < FAIL_WITHIN_S
    message = str(caught.value)
    assert password not in message and "\n" not in message
    return message


def test_the_connection_check_names_each_cause_against_the_real_listeners(tls_broker):
    password = tls_broker.password
    [dead] = _free_ports(1, set())
    ssl_port = tls_broker.listeners["SSL"]
    # The first bootstrap server is down: the second one serves.
    check_connection(_settings(tls_broker, "SSL", bootstrap_servers=f"127.0.0.1:{dead},{ssl_port}"))
    # None serves: each one's cause is named.
    message = _check_fails(_settings(tls_broker, "SSL", bootstrap_servers=f"127.0.0.1:{dead},{tls_broker.plain}"),
                           password)
    assert f"127.0.0.1:{dead}" in message and "cannot connect" in message
    assert tls_broker.plain in message and "TLS handshake" in message

    message = _check_fails(_settings(tls_broker, "SASL_PLAINTEXT", "PLAINTEXT"), password)
    assert "not a SASL listener" in message and "kafka.security_protocol" in message
    message = _check_fails(_settings(tls_broker, "SSL", "SASL_SSL"), password)
    assert "dropped the connection when asked for metadata" in message and "kafka.security_protocol" in message
    # The same user logs in with SCRAM-SHA-256 (the daemon's run uses SCRAM-SHA-512); PLAIN is not offered.
    check_connection(_settings(tls_broker, "SASL_SSL", sasl_mechanism="SCRAM-SHA-256"))
    message = _check_fails(_settings(tls_broker, "SASL_SSL", sasl_mechanism="PLAIN"), password)
    assert "does not offer SASL PLAIN (it offers SCRAM-SHA-512, SCRAM-SHA-256)" in message
    assert "kafka.sasl_mechanism" in message
    message = _check_fails(_settings(tls_broker, "SASL_SSL", sasl_password=WRONG_PASSWORD), password)
    assert "SASL authentication failed" in message and WRONG_PASSWORD not in message

    # The simulator's producer is checked the same way before it sends anything.
    sim = simulate(SimulatorSettings(customers=5, terminals=10), 1, 0)
    with pytest.raises(KafkaProduceFailed, match="SASL authentication failed"):
        produce(sim, _settings(tls_broker, "SASL_SSL", sasl_password=WRONG_PASSWORD), progress=False)


def _other_ca(directory: Path) -> Path:
    ca = directory / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=a CA that signed nothing of this broker",
         "-keyout", str(directory / "other-ca.key"), "-out", str(ca)],
        check=True, capture_output=True,
    )
    return ca


def test_a_wrong_password_an_unknown_ca_and_plaintext_on_tls_fail_run_at_start(tls_broker, daemons, tmp_path):
    topics = tls_broker.topics("refused")
    cases = {
        "wrong-password": (tls_broker.kafka("SASL_SSL"), {PASSWORD_ENV: WRONG_PASSWORD},
                           ["SASL authentication failed", "'fraudstream'", "invalid credentials"]),
        "unknown-ca": (tls_broker.kafka("SSL", ssl_cafile=str(_other_ca(tmp_path))), {},
                       ["certificate verify failed", "kafka.ssl_cafile"]),
        "plaintext-on-tls": (tls_broker.kafka("PLAINTEXT", "SSL"), {},
                             ["dropped the connection", "kafka.security_protocol"]),
    }
    running: dict[str, tuple[Daemon, float]] = {}
    for name, (kafka, env, _) in cases.items():
        config = write_config(tmp_path / f"{name}.yaml", kafka["bootstrap_servers"], topics, f"{name}-group",
                              tmp_path / f"{name}-checkpoints", kafka=kafka)
        running[name] = (daemons.start(config, name, env=env), time.monotonic())

    # All three side by side; each must exit by itself. Its start-up (TensorFlow, the model)
    # is slow on a busy machine, so the bound counts from the line the connection check logs
    # first to the exit, both seen by polling every 0.1 s.
    checking_at: dict[str, float] = {}
    said_at: dict[str, float] = {}  # the error line (the exit follows once the interpreter is down)
    exited_at: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(exited_at) < len(running):
        assert time.monotonic() < deadline, {n: d.tail(5) for n, (d, _) in running.items() if d.alive()}
        for name, (daemon, _) in running.items():
            if name not in checking_at and "checking the connection to Kafka" in daemon.log():
                checking_at[name] = time.monotonic()
            if name not in said_at and "error:" in daemon.log():
                said_at[name] = time.monotonic()
            if name not in exited_at and not daemon.alive():
                exited_at[name] = time.monotonic()
        time.sleep(0.1)

    for name, (daemon, started) in running.items():
        expected = cases[name][2]
        text = daemon.log_path.read_text()
        assert daemon.proc.returncode != 0, text
        assert "Traceback" not in text, text
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, text
        assert all(part in errors[0] for part in expected), errors[0]
        assert name in checking_at, f"{name} exited before it checked the connection:\n{text}"
        refused_in = exited_at[name] - checking_at[name]
        assert refused_in < FAIL_WITHIN_S, f"{name} took {refused_in:.1f} s to fail:\n{text}"
        print(f"{name}: error line {said_at[name] - checking_at[name]:.1f} s and exit {refused_in:.1f} s after "
              f"the check began, {exited_at[name] - started:.1f} s after launch: {errors[0]}")
    daemons.assert_none_running()
    _assert_no_secret([tmp_path, tls_broker.broker.state_dir / "logs"], [tls_broker.password, WRONG_PASSWORD])
