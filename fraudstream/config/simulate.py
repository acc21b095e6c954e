"""Simulator section: population, fraud pattern, concept drift and label delay.

The defaults reproduce the simulator of the "Reproducible Machine Learning for Credit Card
Fraud Detection" handbook (Le Borgne et al.), so a run with no file gives the handbook's data
shape and fraud rate (about 0.8 %). Drift is a list of changes, each in force from a day on,
so a test or a demo can say "the fraud pattern changes at day 30" and know it happened.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from fraudstream.config.base import Section

SECONDS_PER_DAY = 86_400

_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([dhms])\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_CALL = re.compile(r"^\s*(fixed|uniform|exponential)\s*\((.*)\)\s*$")


def parse_duration_days(text: str | float | int) -> float:
    """``"7d"``, ``"36h"``, ``"1d12h"``, ``"90m"``, ``"45s"`` or a bare number of days -> days.

    >>> parse_duration_days("1d12h")
    1.5
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    raw = str(text).strip().lower()
    try:
        return float(raw)
    except ValueError:
        pass
    if not _DURATION.match(raw):
        raise ValueError(f"not a duration: {text!r} (use e.g. 7d, 36h, 1d12h, 90m, 45s)")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(raw))
    return seconds / SECONDS_PER_DAY


class LabelDelay(Section):
    """How long after a transaction its label becomes known (event time).

    Written in a file either as a mapping (``{distribution: uniform, low_days: 2,
    high_days: 10}``) or as a short string: ``"7d"`` (fixed), ``"uniform(2d, 10d)"``,
    ``"exponential(3d)"`` (mean 3 days).

    >>> LabelDelay.model_validate("uniform(1d, 36h)").high_days
    1.5
    """

    distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    days: float = Field(7.0, ge=0.0, description="fixed delay, or the exponential's mean")
    low_days: float = Field(0.0, ge=0.0, description="uniform lower bound")
    high_days: float = Field(0.0, ge=0.0, description="uniform upper bound")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, (str, int, float)) and not isinstance(data, bool):
            return cls._parse(data)
        return data

    @staticmethod
    def _parse(text: str | int | float) -> dict[str, Any]:
        call = _CALL.match(str(text).lower()) if isinstance(text, str) else None
        if call is None:
            return {"distribution": "fixed", "days": parse_duration_days(text)}
        kind, args = call.group(1), [a for a in call.group(2).split(",") if a.strip()]
        wanted = {"fixed": 1, "uniform": 2, "exponential": 1}[kind]
        if len(args) != wanted:
            raise ValueError(f"{kind}(...) takes {wanted} duration(s), got {text!r}")
        values = [parse_duration_days(a) for a in args]
        if kind == "uniform":
            return {"distribution": "uniform", "low_days": values[0], "high_days": values[1]}
        return {"distribution": kind, "days": values[0]}

    @model_validator(mode="after")
    def _bounds(self) -> LabelDelay:
        if self.distribution == "uniform" and self.high_days < self.low_days:
            raise ValueError("uniform label delay needs low_days <= high_days")
        return self

    def describe(self) -> str:
        if self.distribution == "uniform":
            return f"uniform({self.low_days:g}d, {self.high_days:g}d)"
        if self.distribution == "exponential":
            return f"exponential(mean {self.days:g}d)"
        return f"{self.days:g}d"


class FraudPattern(Section):
    """The handbook's three fraud scenarios, with its numbers as defaults.

    1. every amount above ``amount_threshold`` is fraud;
    2. each day ``compromised_terminals_per_day`` terminals are compromised: all their
       transactions in the next ``terminal_compromise_days`` days are fraud;
    3. each day ``compromised_customers_per_day`` customers are compromised: a random
       ``customer_fraud_share`` of their transactions in the next
       ``customer_compromise_days`` days are fraud (each picked with that probability),
       amounts times ``customer_fraud_amount_multiplier``.
    """

    amount_threshold: float = Field(220.0, gt=0.0)
    compromised_terminals_per_day: int = Field(2, ge=0)
    terminal_compromise_days: int = Field(28, ge=1)
    compromised_customers_per_day: int = Field(3, ge=0)
    customer_compromise_days: int = Field(14, ge=1)
    customer_fraud_share: float = Field(1.0 / 3.0, ge=0.0, le=1.0)
    customer_fraud_amount_multiplier: float = Field(5.0, gt=0.0)


# Named drift changes, so a demo or a test can ask for "the clear change" by name.
# ``stealth``: compromised customers stop spending big (no amount multiplier) but a larger
# share of their transactions is fraud; a model that learnt "fraud = unusually large amount
# for this customer" misses them from that day on.
DRIFT_PRESETS: dict[str, dict[str, Any]] = {
    "stealth": {"customer_fraud_amount_multiplier": 1.0, "customer_fraud_share": 0.8},
}


class DriftChange(Section):
    """A change of the simulated world in force from ``day`` (0-based) on.

    Unset fields keep their value from before. Per-transaction knobs (amount threshold,
    customer fraud share and amount multiplier, spending multiplier) follow the
    transaction's day, so the change is sharp at ``day``; per-compromise knobs (how many
    are compromised each day, for how long) follow the day of the compromise.
    ``preset`` fills fields from a named change (see ``DRIFT_PRESETS``); fields set beside
    it win.
    """

    day: int = Field(ge=0)
    name: str = ""
    preset: Literal["stealth"] | None = None
    amount_threshold: float | None = Field(None, gt=0.0)
    compromised_terminals_per_day: int | None = Field(None, ge=0)
    terminal_compromise_days: int | None = Field(None, ge=1)
    compromised_customers_per_day: int | None = Field(None, ge=0)
    customer_compromise_days: int | None = Field(None, ge=1)
    customer_fraud_share: float | None = Field(None, ge=0.0, le=1.0)
    customer_fraud_amount_multiplier: float | None = Field(None, gt=0.0)
    spending_multiplier: float | None = Field(
        None, gt=0.0, description="every customer's amounts times this (1.0 = the profile)"
    )

    def changes(self) -> dict[str, Any]:
        """The fields this change sets, the preset's first and the explicit ones over it."""
        out = dict(DRIFT_PRESETS[self.preset]) if self.preset else {}
        for key, value in self.model_dump(exclude={"day", "name", "preset"}).items():
            if value is not None:
                out[key] = value
        return out


class SimulatorSettings(Section):
    """Everything ``fraudstream simulate`` needs; command-line flags override these."""

    customers: int = Field(5_000, ge=1)
    terminals: int = Field(10_000, ge=1)
    grid_size: float = Field(100.0, gt=0.0, description="side of the square map")
    radius: float = Field(5.0, gt=0.0, description="a customer uses terminals this close")
    days: int = Field(60, ge=1)
    seed: int = Field(0, ge=0)
    start_date: dt.date = dt.date(2026, 4, 1)
    fraud: FraudPattern = FraudPattern()
    drift: tuple[DriftChange, ...] = ()
    label_delay: LabelDelay = LabelDelay()
    label_events: bool = Field(True, description="emit separate label events")
    inline_labels: bool = Field(False, description="put a `label` field on each transaction")
    label_scenario: bool = Field(
        True, description="add the fraud scenario (0-3) to label events as `scenario`"
    )
