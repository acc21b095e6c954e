"""Every ``kafka.*`` key reaches each Kafka client, through the one mapping per client.

A key added to ``KafkaSettings`` later fails here until both mappings use it (or it is
listed in ``NOT_CLIENT_KEYS`` as the daemon's own) and it has a changed value below.
"""

from __future__ import annotations

import pytest

from fraudstream.config import KafkaSettings, Topics, load_settings
from fraudstream.consumers.options import NOT_CLIENT_KEYS, kafka_python_options, librdkafka_options
from fraudstream.errors import ConfigInvalid

MAPPINGS = {"kafka-python": kafka_python_options, "confluent": librdkafka_options}

#: Settings with every optional key set, so that changing any one of them is visible.
BASE = {
    "bootstrap_servers": "127.0.0.1:9092,127.0.0.1:9093",
    "group_id": "g",
    "client_id": "c",
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "PLAIN",
    "sasl_username": "user",
    "sasl_password": "secret",
    "ssl_cafile": "/etc/ca.pem",
    "ssl_certfile": "/etc/cert.pem",
    "ssl_keyfile": "/etc/key.pem",
    "ssl_password": "key-secret",
}
#: Another valid value for every key.
CHANGED = {
    "client": "confluent",
    "bootstrap_servers": "10.0.0.1:9092",
    "topics": Topics(transactions="other"),
    "group_id": "g2",
    "client_id": "c2",
    "security_protocol": "SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "user2",
    "sasl_password": "secret2",
    "ssl_cafile": "/etc/ca2.pem",
    "ssl_certfile": "/etc/cert2.pem",
    "ssl_keyfile": "/etc/key2.pem",
    "ssl_password": "key-secret2",
    "batch_size": 123,
    "poll_timeout_ms": 7,
    "fetch_max_wait_ms": 50,
    "auto_offset_reset": "latest",
    "max_event_bytes": 4 << 20,
    "rejoin_after_s": 30.0,
    "group_instance_id": "member-2",
}


def test_every_key_has_a_changed_value_to_try():
    assert set(CHANGED) == set(KafkaSettings.model_fields), "give each new kafka.* key a value in CHANGED"


@pytest.mark.parametrize("client", sorted(MAPPINGS))
@pytest.mark.parametrize("key", sorted(set(KafkaSettings.model_fields) - NOT_CLIENT_KEYS))
def test_every_client_key_reaches_the_client(client, key):
    options = MAPPINGS[client]
    base = KafkaSettings(**BASE)
    changed = KafkaSettings(**(BASE | {key: CHANGED[key]}))
    assert options(changed) != options(base), f"kafka.{key} does not reach {client}'s options"


@pytest.mark.parametrize("client", sorted(MAPPINGS))
@pytest.mark.parametrize("key", sorted(NOT_CLIENT_KEYS))
def test_the_daemons_own_keys_do_not_reach_the_client(client, key):
    options = MAPPINGS[client]
    assert options(KafkaSettings(**(BASE | {key: CHANGED[key]}))) == options(KafkaSettings(**BASE))


@pytest.mark.parametrize("client", sorted(MAPPINGS))
def test_the_static_member_id_the_daemon_resolves_reaches_the_consumer(client):
    options = MAPPINGS[client]
    static, dynamic = options(KafkaSettings(), "host-0123456789ab"), options(KafkaSettings())
    assert "host-0123456789ab" in static.consumer.values()
    assert "host-0123456789ab" not in dynamic.consumer.values()
    assert static.producer == dynamic.producer


@pytest.mark.parametrize("client", sorted(MAPPINGS))
def test_consumer_and_producer_connect_like_the_shared_options(client):
    options = MAPPINGS[client](KafkaSettings(**BASE))
    assert options.common.items() <= options.consumer.items()
    assert options.common.items() <= options.producer.items()


def test_both_clients_get_the_same_security_settings():
    python, librdkafka = kafka_python_options(KafkaSettings(**BASE)), librdkafka_options(KafkaSettings(**BASE))
    assert (python.common["sasl_plain_username"], python.common["sasl_plain_password"]) == ("user", "secret")
    assert (librdkafka.common["sasl.username"], librdkafka.common["sasl.password"]) == ("user", "secret")
    assert python.common["ssl_cafile"] == librdkafka.common["ssl.ca.location"] == "/etc/ca.pem"
    assert python.common["ssl_password"] == librdkafka.common["ssl.key.password"] == "key-secret"
    assert librdkafka.common["security.protocol"] == python.common["security_protocol"] == "SASL_SSL"


def test_librdkafka_partitions_keys_as_kafka_python_does():
    # librdkafka's default (CRC32) would send a customer to another partition than kafka-python
    assert librdkafka_options(KafkaSettings()).producer["partitioner"] == "murmur2_random"


def test_the_client_is_kafka_python_unless_chosen():
    assert KafkaSettings().client == "kafka-python"


def test_an_unknown_client_fails_naming_the_key():
    with pytest.raises(ConfigInvalid) as failed:
        load_settings(kafka={"client": "librdkafka"})
    assert "kafka.client" in str(failed.value)
