"""Bytes to event dicts, with a stable reason for every record that is not one.

A record that fails here goes to the DLQ with its original bytes, the reason and where it
came from. Field-level validation (types, NaN, amounts, timestamps) happens in the feature
module's ``parse``, which raises ``EventInvalid`` with its own reason.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import orjson

from fraudstream.errors import EventInvalid

TX = "tx"
LABEL = "label"


@dataclass(slots=True)
class Incoming:
    """One input record: a transaction or a label event, from Kafka or a file."""

    kind: str  # TX or LABEL
    value: bytes | dict[str, Any]
    topic: str = ""
    partition: int = -1
    offset: int = -1
    key: bytes | None = None
    answered: bool = False  # already scored and answered over HTTP: its score is not produced


def decode_json(value: bytes | dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Parse one JSON object; raise ``EventInvalid`` naming why not."""
    if isinstance(value, dict):
        return value
    if value is None:
        raise EventInvalid("empty", "record has no value")
    if len(value) > max_bytes:
        raise EventInvalid("oversize", f"{len(value)} bytes > {max_bytes}")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise EventInvalid("not_utf8", str(exc)) from exc
        raise EventInvalid("not_json", str(exc)) from exc
    if not isinstance(event, dict):
        raise EventInvalid("not_object", f"JSON {type(event).__name__}, expected an object")
    return event


def dlq_record(record: Incoming, error: EventInvalid) -> dict[str, Any]:
    """The DLQ event: reason, detail, source coordinates and the original bytes (base64).

    A Kafka record with no value at all (a tombstone) has ``value_b64`` null and
    ``value_null`` true, so replaying the DLQ can send a tombstone again: base64 of some
    bytes could not tell it from a value that is the JSON text ``null``.
    """
    if record.value is None:
        value_b64 = None
    else:
        raw = record.value if isinstance(record.value, bytes) else orjson.dumps(record.value, default=str)
        value_b64 = base64.b64encode(raw).decode()
    return {
        "reason": error.reason,
        "field": error.field,
        "detail": str(error)[:500],
        "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset, "kind": record.kind},
        "key": base64.b64encode(record.key).decode() if record.key else None,
        "value_b64": value_b64,
        "value_null": record.value is None,
        "failed_at": time.time(),
    }
