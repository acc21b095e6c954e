"""The dev/kafka launcher's logic, without starting a broker.

The real start/stop cycle is exercised by every integration test; these cover
what is easy to get wrong and slow to notice there: configuration precedence,
the generated broker config, the Java check, and pid files that belong to
someone else.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "dev" / "kafka"


def _load_launcher():
    loader = SourceFileLoader("dev_kafka_launcher", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


dk = _load_launcher()


def _args(**overrides) -> argparse.Namespace:
    values = dict(port=None, controller_port=None, state_dir=None, kafka_version=None,
                  heap=None, keep_data=False, timeout=30.0, tls=False, ssl_port=None, sasl_ssl_port=None)
    values.update(overrides)
    return argparse.Namespace(**values)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("FRAUDSTREAM_KAFKA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FRAUDSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_defaults_put_state_under_the_cache_by_port(clean_env):
    cfg = dk.build_config(_args())
    assert (cfg.port, cfg.controller_port) == (9092, 9093)
    assert cfg.bootstrap == "127.0.0.1:9092"
    assert cfg.state_dir == (clean_env / "cache" / "run" / "9092").resolve()
    assert cfg.libs == (clean_env / "cache" / f"kafka-{dk.DEFAULT_KAFKA_VERSION}" / "libs").resolve()


def test_environment_overrides_and_flags_win(clean_env, monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_PORT", "29092")
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_VERSION", "4.0.1")
    cfg = dk.build_config(_args())
    assert (cfg.port, cfg.controller_port, cfg.version) == (29092, 29093, "4.0.1")

    cfg = dk.build_config(_args(port=39092, controller_port=39999,
                                state_dir=str(clean_env / "s")))
    assert (cfg.port, cfg.controller_port) == (39092, 39999)
    assert cfg.state_dir == (clean_env / "s").resolve()


@pytest.mark.parametrize("overrides, message", [
    (dict(port=9092, controller_port=9092), "must differ"),
    (dict(port=70000), "outside"),
    (dict(kafka_version="3.9.1"), "not a 4.x release"),
    (dict(heap="lots"), "JVM size"),
])
def test_bad_settings_fail_with_a_message(clean_env, overrides, message):
    with pytest.raises(dk.LauncherError, match=message):
        dk.build_config(_args(**overrides))


def test_server_properties_describe_a_single_node_kraft_cluster(clean_env):
    cfg = dk.build_config(_args(port=39092, controller_port=39093))
    props = dict(
        line.split("=", 1) for line in dk.server_properties(cfg).splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092"
    assert props["log.dirs"] == str(cfg.data_dir)
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor",
                "share.coordinator.state.topic.min.isr"):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_tls_adds_an_ssl_and_a_sasl_ssl_listener(clean_env, monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_KAFKA_TLS", "1")
    cfg = dk.build_config(_args(port=39092, controller_port=39093))
    assert (cfg.tls, cfg.ssl_port, cfg.sasl_ssl_port) == (True, 39094, 39095)
    props = dict(
        line.split("=", 1) for line in dk.server_properties(cfg).splitlines()
        if line and not line.startswith("#")
    )
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:39092,SSL://127.0.0.1:39094,"
                                  "SASL_SSL://127.0.0.1:39095,CONTROLLER://127.0.0.1:39093")
    assert props["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:39092,SSL://127.0.0.1:39094,"
                                             "SASL_SSL://127.0.0.1:39095")
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["ssl.keystore.location"] == str(cfg.broker_pem)
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,SCRAM-SHA-256"
    for mechanism in ("scram-sha-512", "scram-sha-256"):
        assert "ScramLoginModule" in props[f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config"]

    with pytest.raises(dk.LauncherError, match="must differ"):
        dk.build_config(_args(port=39092, controller_port=39093, tls=True, ssl_port=39093))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="--tls needs openssl")
def test_tls_certificates_pass_a_handshake_for_127_0_0_1(clean_env):
    cfg = dk.build_config(_args(state_dir=str(clean_env / "state"), tls=True))
    dk.make_certificates(cfg)
    assert sorted(p.name for p in cfg.tls_dir.iterdir()) == ["broker.pem", "ca.pem"]  # the CA key is gone
    assert cfg.broker_pem.stat().st_mode & 0o077 == 0
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cfg.broker_pem)
    client = ssl.create_default_context(cafile=str(cfg.ca_file))
    left, right = socket.socketpair()
    with left, right:
        accepted = threading.Thread(target=lambda: server.wrap_socket(right, server_side=True).close())
        accepted.start()
        with client.wrap_socket(left, server_hostname="127.0.0.1") as tls:
            assert set(tls.getpeercert()["subjectAltName"]) == {("DNS", "localhost"), ("IP Address", "127.0.0.1")}
        accepted.join(timeout=10)


def test_keep_data_keeps_the_scram_password(clean_env):
    cfg = dk.build_config(_args(state_dir=str(clean_env / "state"), tls=True, keep_data=True))
    cfg.tls_dir.mkdir(parents=True)
    dk.write_private(cfg.password_file, "kept\n")
    assert dk.scram_password(cfg) == "kept"
    cfg.password_file.unlink()
    cfg.data_dir.mkdir()
    (cfg.data_dir / "meta.properties").write_text("")
    with pytest.raises(dk.LauncherError, match="no SCRAM user"):
        dk.scram_password(cfg)
    fresh = dk.build_config(_args(state_dir=str(clean_env / "state"), tls=True))
    assert len({dk.scram_password(fresh) for _ in range(3)}) == 3


def test_cluster_ids_are_kafka_uuids():
    ids = {dk.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def _fake_java(tmp_path: Path, version_line: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("line, ok", [
    ('openjdk version "17.0.15" 2025-04-15', True),
    ('openjdk version "21" 2023-09-19', True),
    ('openjdk version "11.0.2" 2019-01-15', False),
    ('java version "1.8.0_392"', False),
])
def test_java_older_than_17_is_refused(tmp_path, monkeypatch, line, ok):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(_fake_java(tmp_path, line)))
    if ok:
        assert dk.find_java().endswith("/java")
    else:
        with pytest.raises(dk.LauncherError, match="Java 17 or newer"):
            dk.find_java()


def test_missing_java_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(dk.LauncherError, match="no `java` was found"):
        dk.find_java()


def test_missing_maven_is_named_when_jars_are_not_cached(clean_env, monkeypatch):
    monkeypatch.setenv("PATH", str(clean_env))  # neither mvn nor java here
    cfg = dk.build_config(_args())
    with pytest.raises(dk.LauncherError, match="Maven"):
        dk.ensure_jars(cfg)


def test_a_pid_file_of_another_process_is_stale_and_never_signalled(clean_env):
    cfg = dk.build_config(_args(port=39592, state_dir=str(clean_env / "state")))
    cfg.state_dir.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "30"])
    try:
        cfg.pid_file.write_text(f"{other.pid}\n")
        assert not dk.is_our_broker(cfg, other.pid)
        assert dk.cmd_status(cfg) == dk.EXIT_NOT_RUNNING
        assert dk.cmd_stop(cfg) == 0
        assert not cfg.pid_file.exists()
        assert other.poll() is None, "stop signalled a process that is not the broker"
    finally:
        other.kill()
        other.wait()


def test_probe_reports_a_closed_port_as_not_ready():
    import socket

    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ready, reason = dk.probe_ready(port, timeout=1.0)
    assert not ready
    assert "not accepting connections" in reason


def test_launcher_runs_on_the_standard_library_alone(tmp_path):
    # -I -S: no site-packages, as before the venv exists.
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), "status", "--port", "39594",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == dk.EXIT_NOT_RUNNING, result.stderr
    assert "not running at 127.0.0.1:39594" in result.stdout
