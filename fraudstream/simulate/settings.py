"""Command-line overrides of the simulator section, validated like the file itself."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fraudstream.config.simulate import DriftChange, SimulatorSettings
from fraudstream.errors import ConfigInvalid


def with_overrides(
    settings: SimulatorSettings, extra_drift: list[DriftChange] | None = None, **overrides: Any
) -> SimulatorSettings:
    """``settings`` with the given fields replaced (``None`` = keep) and drift changes appended.

    The result is validated again, so a bad flag fails the same way a bad file does, naming
    ``simulator.<key>``.

    >>> with_overrides(SimulatorSettings(), customers=10, seed=None).customers
    10
    """
    data = settings.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    if extra_drift:
        data["drift"] = [*data["drift"], *(c.model_dump() for c in extra_drift)]
    try:
        return SimulatorSettings.model_validate(data)
    except ValidationError as exc:
        problems = [
            (".".join(["simulator", *(str(p) for p in err["loc"])]), err["msg"])
            for err in exc.errors()
        ]
        raise ConfigInvalid("command-line options", problems) from exc
