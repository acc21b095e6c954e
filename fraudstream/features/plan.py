"""The feature spec compiled into what both paths execute: columns, window groups, outputs.

Both the offline and the streaming path read this one plan, so they cannot disagree about
which column feeds which window or in which order the features come out.
"""

from __future__ import annotations

from dataclasses import dataclass

from fraudstream.config.features import ROLES, FeatureSpec, feature_names

US_PER_DAY = 86_400_000_000


def days_to_us(days: float) -> int:
    return int(round(days * US_PER_DAY))


@dataclass(frozen=True)
class EventGroup:
    """Windows over one entity's events; ``field`` is None when only counts are asked."""

    entity: str
    field: str | None
    wins_us: tuple[int, ...]  # ascending

    @property
    def name(self) -> str:
        return f"events:{self.entity}:{self.field or '-'}"

    @property
    def span_us(self) -> int:
        return self.wins_us[-1]


@dataclass(frozen=True)
class LabelGroup:
    """Delayed label windows over one entity: ``(t - delay - w, t - delay]``."""

    entity: str
    delay_us: int
    wins_us: tuple[int, ...]  # ascending

    @property
    def name(self) -> str:
        return f"labels:{self.entity}:{self.delay_us}"

    @property
    def span_us(self) -> int:
        return self.delay_us + self.wins_us[-1]


@dataclass(frozen=True)
class Plan:
    spec: FeatureSpec
    names: tuple[str, ...]
    stateless: tuple[str, ...]            # stateless feature names ("field:x" kept)
    event_groups: tuple[EventGroup, ...]
    label_groups: tuple[LabelGroup, ...]
    # One entry per feature after the stateless ones:
    #   ("event", g, j, stat) | ("label", g, j, stat) | ("ratio", numerator_col, g, j, stat, fill)
    outputs: tuple[tuple, ...]
    numeric_cols: tuple[str, ...]         # numeric columns read from events (amount first)
    entity_cols: tuple[str, ...]          # key columns read from events
    needs_amount: bool

    def event_raw_offsets(self) -> list[int]:
        """Start column of each event group in the raw integer matrix (count[, sum] per window)."""
        offs, at = [], 0
        for g in self.event_groups:
            offs.append(at)
            at += len(g.wins_us) * (2 if g.field else 1)
        return offs


def column(spec: FeatureSpec, name: str) -> str:
    """A role name (``customer``, ``amount``, ...) maps to its column; anything else is a column."""
    return getattr(spec.fields, name) if name in ROLES else name


def compile_plan(spec: FeatureSpec) -> Plan:
    stateless, windows, ratios = spec.resolved()
    amount_col = spec.fields.amount

    # Collect every (entity, field) window need, then build groups.
    ev_needs: dict[tuple[str, str | None], set[int]] = {}
    lab_needs: dict[tuple[str, int], set[int]] = {}
    requests: list[tuple] = []

    def ev_request(entity: str, field: str, days: float, stat: str) -> tuple:
        ent, fld = column(spec, entity), column(spec, field)
        key = (ent, fld if stat != "count" else None)
        ev_needs.setdefault(key, set()).add(days_to_us(days))
        return ("event", key, days_to_us(days), stat)

    for w in windows:
        for d in w.days:
            for stat in w.stats:
                if w.kind == "events":
                    requests.append(ev_request(w.entity, w.field, d, stat))
                else:
                    key = (column(spec, w.entity), days_to_us(w.delay_days))
                    lab_needs.setdefault(key, set()).add(days_to_us(d))
                    requests.append(("label", key, days_to_us(d), stat))
    for r in ratios:
        inner = ev_request(r.entity, r.field, r.days, r.stat)
        requests.append(("ratio", column(spec, r.numerator), inner, r.fill))

    # Count-only needs ride along with a summing group on the same entity when there is one.
    for (ent, fld) in [k for k in ev_needs if k[1] is None]:
        host = next((k for k in ev_needs if k[0] == ent and k[1] is not None), None)
        if host is not None:
            ev_needs[host] |= ev_needs.pop((ent, None))

    def host_of(key: tuple[str, str | None]) -> tuple[str, str | None]:
        if key in ev_needs:
            return key
        return next(k for k in ev_needs if k[0] == key[0] and k[1] is not None)

    ev_keys = list(ev_needs)
    event_groups = tuple(EventGroup(e, f, tuple(sorted(ev_needs[(e, f)]))) for e, f in ev_keys)
    lab_keys = list(lab_needs)
    label_groups = tuple(LabelGroup(e, dl, tuple(sorted(lab_needs[(e, dl)]))) for e, dl in lab_keys)

    def resolve(req: tuple) -> tuple:
        kind, key, w_us, stat = req
        if kind == "event":
            gi = ev_keys.index(host_of(key))
            return ("event", gi, event_groups[gi].wins_us.index(w_us), stat)
        gi = lab_keys.index(key)
        return ("label", gi, label_groups[gi].wins_us.index(w_us), stat)

    outputs = []
    for req in requests:
        if req[0] == "ratio":
            _, num, inner, fill = req
            _, gi, j, stat = resolve(inner)
            outputs.append(("ratio", num, gi, j, stat, float(fill)))
        else:
            outputs.append(resolve(req))

    numeric: list[str] = []
    needs_amount = False
    for s in stateless:
        if s in ("amount", "log_amount"):
            needs_amount = True
        elif s.startswith("field:"):
            numeric.append(s.removeprefix("field:"))
    numeric += [g.field for g in event_groups if g.field]
    numeric += [o[1] for o in outputs if o[0] == "ratio"]
    if amount_col in numeric:
        needs_amount = True
    numeric = [amount_col] + [c for c in dict.fromkeys(numeric) if c != amount_col]
    entities = list(dict.fromkeys([g.entity for g in event_groups] + [g.entity for g in label_groups]))

    return Plan(
        spec=spec,
        names=tuple(feature_names(spec)),
        stateless=tuple(stateless),
        event_groups=event_groups,
        label_groups=label_groups,
        outputs=tuple(outputs),
        numeric_cols=tuple(numeric),
        entity_cols=tuple(entities),
        needs_amount=needs_amount,
    )
