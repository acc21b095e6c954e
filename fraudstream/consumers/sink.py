"""What the Kafka sinks of both clients share: JSON records on top of their ``send``."""

from __future__ import annotations

import orjson


class JsonSink:
    """A sink's ``send_json``; subclasses provide ``send``, ``send_and_wait``, ``flush``, ``close``."""

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None,
             if_too_large: bytes | None = None) -> None:
        raise NotImplementedError

    def send_json(self, topic: str, event: dict, key: bytes | None = None, if_too_large: dict | None = None) -> None:
        self.send(
            topic, orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY), key,
            if_too_large=None if if_too_large is None else orjson.dumps(if_too_large, option=orjson.OPT_SERIALIZE_NUMPY),
        )
