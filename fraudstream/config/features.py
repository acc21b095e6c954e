"""The ``features:`` section: which input columns mean what, and which features to compute.

The spec is data, so one file drives offline training, the ``features`` command and the
streaming daemon, and a model artifact can carry the exact spec it was trained with.

A ``preset`` gives the feature lists; ``stateless``, ``windows`` or ``ratios`` given
explicitly replace the preset's list of the same name. ``handbook`` is the 15 features of
the Fraud Detection Handbook in its order; ``extended`` adds the log amount, the hour of day
as sine/cosine and the amount over the customer's 30-day mean; ``recommended``, the
default, adds to those the customer's own known frauds, the set that measured best in a
prequential replay (``bench/bench_quality.py``, docs/features.md).
"""

from __future__ import annotations

import math
import re
import zoneinfo
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from fraudstream.config.base import Section

ROLES = ("transaction_id", "timestamp", "customer", "terminal", "amount", "label")
"""Field roles of the mapping; a window ``entity`` or ``field`` may also name any column."""

STATELESS = ("amount", "log_amount", "weekend", "night", "hour_sin", "hour_cos",
             "weekday_sin", "weekday_cos")
"""Stateless features by name; ``field:<column>`` passes a numeric column through."""

_FIELD_PASSTHROUGH = re.compile(r"^field:[A-Za-z_][A-Za-z0-9_.\-]*$")


class FieldMap(Section):
    """Input column (or JSON key) holding each role, so a user's own column names work."""

    transaction_id: str = "transaction_id"
    timestamp: str = "timestamp"
    customer: str = "customer_id"
    terminal: str = "terminal_id"
    amount: str = "amount"
    label: str = "label"

    @model_validator(mode="after")
    def _distinct(self) -> FieldMap:
        names = [getattr(self, role) for role in ROLES]
        if len(set(names)) != len(names):
            raise ValueError(f"each role needs its own column, got {dict(zip(ROLES, names))}")
        return self


def _check_days(days: tuple[float, ...]) -> tuple[float, ...]:
    if not days:
        raise ValueError("at least one window length is needed")
    if len(set(days)) != len(days):
        raise ValueError(f"window lengths repeat: {list(days)}")
    for d in days:
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"window lengths must be positive days, got {d}")
        if abs(d * 86_400_000_000 - round(d * 86_400_000_000)) > 1e-3:
            raise ValueError(f"window {d} days is not a whole number of microseconds")
    return days


def _check_stats(stats: tuple[str, ...]) -> tuple[str, ...]:
    if not stats or len(set(stats)) != len(stats):
        raise ValueError("stats must be a non-empty list without repeats")
    return stats


def _check_day(days: float) -> float:
    return _check_days((days,))[0]


WindowDays = Annotated[tuple[float, ...], AfterValidator(_check_days)]
"""Window lengths in days: positive, distinct, whole microseconds."""
Days = Annotated[float, AfterValidator(_check_day)]
"""One length of time in days, held to the same rules."""


class EventWindows(Section):
    """Count, sum or mean of ``field`` over the entity's events in ``(t - w, t]``.

    The current event is inside its own window, so a count is at least 1.
    """

    kind: Literal["events"] = "events"
    entity: str = "customer"
    days: WindowDays = (1, 7, 30)
    stats: Annotated[tuple[Literal["count", "sum", "mean"], ...], AfterValidator(_check_stats)] = ("count", "mean")
    field: str = "amount"


class LabelWindows(Section):
    """Labelled count, fraud count or fraud rate of the entity over ``(t - d - w, t - d]``.

    Only labels known ``delay_days`` after their transaction are needed, which is what makes
    the feature computable online; the rate is 0 when the window holds no label.
    """

    kind: Literal["labels"] = "labels"
    entity: str = "terminal"
    days: WindowDays = (1, 7, 30)
    delay_days: Days = Field(7.0, gt=0, description="labels are used this long after the transaction")
    stats: Annotated[tuple[Literal["count", "frauds", "fraud_rate"], ...], AfterValidator(_check_stats)] = (
        "count", "fraud_rate")


WindowGroup = Annotated[Union[EventWindows, LabelWindows], Field(discriminator="kind")]


class RatioFeature(Section):
    """``numerator`` of the event over a window statistic of its entity, e.g. the amount
    over the customer's 30-day mean amount; ``fill`` when the statistic is 0."""

    numerator: str = "amount"
    entity: str = "customer"
    field: str = "amount"
    days: Days = 30.0
    stat: Literal["mean", "sum", "count"] = "mean"
    fill: float = 0.0


class NormalizerSettings(Section):
    """Standardisation of the feature matrix before the model.

    ``fitted``: mean and std fitted once on training data. ``running``: the same statistics
    kept up to date in streaming (Welford), so the scale follows drift.
    """

    mode: Literal["fitted", "running"] = "fitted"
    std_floor: float = Field(1e-3, gt=0, description="smaller standard deviations use this")
    clip: float | None = Field(None, gt=0, description="clip normalised values to +-clip")


_HANDBOOK_STATELESS = ("amount", "weekend", "night")
_HANDBOOK_WINDOWS = (
    EventWindows(entity="customer", days=(1, 7, 30), stats=("count", "mean"), field="amount"),
    LabelWindows(entity="terminal", days=(1, 7, 30), delay_days=7, stats=("count", "fraud_rate")),
)
_EXTENDED_STATELESS = _HANDBOOK_STATELESS + ("log_amount", "hour_sin", "hour_cos")
# A compromised card keeps being used: its frauds known so far (7 days late, like the
# terminal's) mark the card's later transactions.
_CUSTOMER_FRAUDS = LabelWindows(entity="customer", days=(7,), delay_days=7, stats=("frauds",))
PRESETS: dict[str, dict[str, tuple]] = {
    "handbook": {"stateless": _HANDBOOK_STATELESS, "windows": _HANDBOOK_WINDOWS, "ratios": ()},
    "extended": {"stateless": _EXTENDED_STATELESS, "windows": _HANDBOOK_WINDOWS, "ratios": (RatioFeature(),)},
    "recommended": {
        "stateless": _EXTENDED_STATELESS,
        "windows": _HANDBOOK_WINDOWS + (_CUSTOMER_FRAUDS,),
        "ratios": (RatioFeature(),),
    },
}


class FeatureSpec(Section):
    """What the feature pipeline computes; the ``features:`` section of the config."""

    fields: FieldMap = FieldMap()
    preset: Literal["handbook", "extended", "recommended"] = "recommended"
    stateless: tuple[str, ...] | None = None
    windows: tuple[WindowGroup, ...] | None = None
    ratios: tuple[RatioFeature, ...] | None = None
    timezone: str = Field("UTC", description="IANA zone for hour, night and weekend features")
    max_amount: float = Field(1e7, gt=0, description="larger amounts are invalid events")
    epoch_unit: Literal["s", "ms", "us"] = Field("s", description="unit of numeric timestamps")
    sum_decimals: int = Field(6, ge=0, le=9, description="window sums are exact to this many decimals")
    normalizer: NormalizerSettings = NormalizerSettings()

    @field_validator("stateless")
    @classmethod
    def _stateless(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        for name in v:
            if name not in STATELESS and not _FIELD_PASSTHROUGH.match(name):
                raise ValueError(f"unknown stateless feature {name!r}; known: "
                                 f"{', '.join(STATELESS)} or field:<column>")
        if len(set(v)) != len(v):
            raise ValueError("stateless features repeat")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    def warmup_days(self) -> float:
        """Event-time days before every window of an entity seen from the start can be full:
        the longest window plus its label delay."""
        _, windows, _ = self.resolved()
        return max((max(g.days) + getattr(g, "delay_days", 0.0) for g in windows), default=0.0)

    def resolved(self) -> tuple[tuple[str, ...], tuple, tuple[RatioFeature, ...]]:
        """The stateless, window and ratio lists in force: explicit ones, else the preset's."""
        preset = PRESETS[self.preset]
        return (
            self.stateless if self.stateless is not None else preset["stateless"],
            self.windows if self.windows is not None else preset["windows"],
            self.ratios if self.ratios is not None else preset["ratios"],
        )

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureSpec:
        names = feature_names(self)
        seen: set[str] = set()
        repeated = sorted({n for n in names if n in seen or seen.add(n)})
        if repeated:
            raise ValueError(f"features repeat: {', '.join(repeated)}")
        return self


def days_label(days: float) -> str:
    """``1`` -> ``1d``, ``0.5`` -> ``12h``: the window part of a feature name."""
    if float(days).is_integer():
        return f"{int(days)}d"
    hours = days * 24
    return f"{int(hours)}h" if float(hours).is_integer() else f"{days:g}d"


def _stat_name(stat: str, field: str) -> str:
    return stat if stat == "count" else f"{stat}_{field}"


def feature_names(spec: FeatureSpec) -> list[str]:
    """The column names, in order: stateless, then each window group day by day, then ratios.

    Day-major order inside a group matches the handbook (count 1d, mean 1d, count 7d, ...).
    """
    stateless, windows, ratios = spec.resolved()
    names = [s.removeprefix("field:") for s in stateless]
    for group in windows:
        for d in group.days:
            for stat in group.stats:
                if group.kind == "events":
                    names.append(f"{group.entity}_{_stat_name(stat, group.field)}_{days_label(d)}")
                else:
                    names.append(f"{group.entity}_{stat}_{days_label(d)}_delay{days_label(group.delay_days)}")
    for r in ratios:
        names.append(f"{r.numerator}_over_{r.entity}_{_stat_name(r.stat, r.field)}_{days_label(r.days)}")
    return names
