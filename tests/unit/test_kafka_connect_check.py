"""The start-up connection check fails fast, naming the cause, and never shows a password.

Fake listeners on loopback stand in for a broker's wrong port: one that is closed, one that
drops the client without answering (a TLS listener to a PLAINTEXT client), and one that
speaks TLS with a certificate the client does not trust.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fraudstream.config import KafkaSettings
from fraudstream.consumers.exceptions import KafkaConnectFailed
from fraudstream.consumers.kafka import check_connection

PASSWORD = "s3cret-never-shown-0123"


def _listener(handle) -> tuple[int, threading.Thread, socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, server


def _settings(port: int, **extra) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", **extra)


def _fails(settings: KafkaSettings) -> str:
    started = time.monotonic()
    with pytest.raises(KafkaConnectFailed) as caught:
        check_connection(settings, timeout_s=5.0)
    assert time.monotonic() - started < 10.0
    message = str(caught.value)
    assert PASSWORD not in message and PASSWORD not in repr(caught.value)
    return message


def test_a_closed_port_is_named():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = _fails(_settings(port))
    assert "cannot connect" in message and f"127.0.0.1:{port}" in message


def test_every_bootstrap_server_is_tried_and_each_cause_named():
    def drop(conn: socket.socket) -> None:
        conn.recv(64)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    port, thread, server = _listener(drop)
    with server:
        message = _fails(KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed}, 127.0.0.1:{port}"))
    assert "none of the 2 Kafka bootstrap servers works" in message
    assert f"127.0.0.1:{closed} (PLAINTEXT): [Errno" in message
    assert f"127.0.0.1:{port} (PLAINTEXT) dropped the connection" in message


def test_a_listener_that_drops_the_client_names_the_protocol():
    def drop(conn: socket.socket) -> None:
        conn.recv(64)  # a TLS listener reads the request, finds no handshake, and closes

    port, thread, server = _listener(drop)
    with server:
        message = _fails(_settings(port, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                   sasl_username="fraud", sasl_password=PASSWORD))
    assert "dropped the connection" in message and "security_protocol" in message


def _empty_answers(conn: socket.socket) -> None:
    """Answers every request with its correlation id and nothing else."""
    while True:
        head = conn.recv(12, socket.MSG_WAITALL)
        if len(head) < 12:
            return
        size, _api_key, _version, correlation = struct.unpack(">ihhi", head)
        conn.recv(size - 8, socket.MSG_WAITALL)
        conn.sendall(struct.pack(">ii", 4, correlation))


def _http(conn: socket.socket) -> None:
    conn.recv(64)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


@pytest.mark.parametrize("serve", [_empty_answers, _http], ids=["truncated-answers", "http"])
def test_a_listener_that_does_not_speak_kafka_is_named(serve):
    port, thread, server = _listener(serve)
    with server:
        message = _fails(_settings(port, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                   sasl_username="fraud", sasl_password=PASSWORD))
    assert "did not answer as a Kafka listener" in message and "security_protocol" in message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_an_untrusted_certificate_is_named(tmp_path: Path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def tls(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client refuses the certificate

    port, thread, server = _listener(tls)
    with server:
        other_ca = tmp_path / "other-ca.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
             "-keyout", str(tmp_path / "other.key"), "-out", str(other_ca)],
            check=True, capture_output=True,
        )
        message = _fails(_settings(port, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                   sasl_username="fraud", sasl_password=PASSWORD, ssl_cafile=other_ca))
    assert "certificate verify failed" in message and "ssl_cafile" in message
