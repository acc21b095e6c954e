"""The root of every error fraudstream raises on purpose.

Each package adds its own ``<Thing><Failure>`` subclasses in its ``exceptions`` module so a
caller can catch one family (``except FraudstreamError``) or one precise failure.
"""


class FraudstreamError(Exception):
    """Base class of all fraudstream errors."""


class ConfigInvalid(FraudstreamError):
    """A configuration file or environment override failed validation.

    ``problems`` holds ``(key_path, reason)`` pairs, e.g. ``("kafka.batch_size", "Input
    should be a valid integer")``, so the message names every bad key.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {key}: {reason}" for key, reason in problems)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


class EventInvalid(FraudstreamError):
    """An event cannot be turned into features: missing field, wrong type, NaN, bad time.

    ``reason`` is a short stable code used as the DLQ reason and the metric label;
    ``field`` names the offending field when there is one.
    """

    def __init__(self, reason: str, detail: str = "", field: str | None = None):
        self.reason = reason
        self.field = field
        self.detail = detail
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{reason}{where}: {detail}" if detail else f"{reason}{where}")
