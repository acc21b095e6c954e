"""Day-by-day transaction generation, the three fraud scenarios, drift and label delays.

Everything is drawn with numpy in whole-day blocks (no Python call per transaction), so a
run of the handbook's size takes about a second. Each part draws from its own stream derived
from the seed (see ``world.stream``): the same seed gives the same data, and a drift from day
D leaves every transaction before D exactly as it was without the drift.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.config.simulate import SECONDS_PER_DAY, SimulatorSettings
from fraudstream.simulate.world import (
    STREAM_CUSTOMER_COMPROMISE,
    STREAM_CUSTOMER_FRAUD_PICK,
    STREAM_LABEL_DELAY,
    STREAM_TERMINAL_COMPROMISE,
    STREAM_TRANSACTIONS,
    Population,
    draw_population,
    stream,
)

TIME_OF_DAY_MEAN = 43_200.0  # seconds: noon
TIME_OF_DAY_STD = 20_000.0

SCENARIO_NONE, SCENARIO_AMOUNT, SCENARIO_TERMINAL, SCENARIO_CUSTOMER = 0, 1, 2, 3

_INT_KNOBS = (
    "compromised_terminals_per_day",
    "terminal_compromise_days",
    "compromised_customers_per_day",
    "customer_compromise_days",
)


def daily_schedule(settings: SimulatorSettings, days: int) -> dict[str, np.ndarray]:
    """The value of every drift knob on each day: the base pattern, then each change from its day.

    Changes are applied in order of their day (ties in the order written), so a later change
    overrides an earlier one from its own day on.

    >>> from fraudstream.config.simulate import DriftChange
    >>> s = SimulatorSettings(drift=(DriftChange(day=2, spending_multiplier=1.5),))
    >>> daily_schedule(s, 4)["spending_multiplier"].tolist()
    [1.0, 1.0, 1.5, 1.5]
    """
    base = settings.fraud.model_dump() | {"spending_multiplier": 1.0}
    out = {
        key: np.full(days, value, dtype=np.int64 if key in _INT_KNOBS else np.float64)
        for key, value in base.items()
    }
    for change in sorted(settings.drift, key=lambda c: c.day):
        for key, value in change.changes().items():
            out[key][change.day :] = value
    return out


@dataclass(frozen=True)
class Simulation:
    """A simulated run, columnar.

    ``transactions`` (in event-time order): transaction_id, timestamp (UTC), customer_id,
    terminal_id, amount, label (0/1), scenario (0 none, 1 amount, 2 terminal, 3 customer),
    day (0-based). ``labels`` (in order of the time the label becomes known):
    transaction_id, label, timestamp, scenario; ``label_tx_index[i]`` is the transactions
    row of label row ``i``. ``compromises`` lists every compromised terminal and customer:
    kind, id, day, until_day (exclusive).
    """

    transactions: pd.DataFrame
    labels: pd.DataFrame
    label_tx_index: np.ndarray
    customers: pd.DataFrame
    terminals: pd.DataFrame
    compromises: pd.DataFrame
    settings: SimulatorSettings
    days: int
    seed: int

    @property
    def fraud_rate(self) -> float:
        return float(self.transactions["label"].mean()) if len(self.transactions) else 0.0

    def summary(self) -> dict[str, object]:
        """Counts for a log line or a report."""
        tx = self.transactions
        per_scenario = tx["scenario"].value_counts().reindex(range(4), fill_value=0)
        return {
            "days": self.days,
            "seed": self.seed,
            "transactions": len(tx),
            "frauds": int(tx["label"].sum()),
            "fraud_rate": round(self.fraud_rate, 6),
            "by_scenario": {int(k): int(v) for k, v in per_scenario.items()},
        }


def simulate(
    settings: SimulatorSettings | None = None,
    days: int | None = None,
    seed: int | None = None,
) -> Simulation:
    """Simulate ``days`` days of transactions with their fraud labels and label times.

    ``days`` and ``seed`` default to ``settings.days`` and ``settings.seed``.

    >>> from fraudstream.config.simulate import SimulatorSettings
    >>> sim = simulate(SimulatorSettings(customers=50, terminals=100), days=3, seed=1)
    >>> list(sim.transactions.columns)
    ['transaction_id', 'timestamp', 'customer_id', 'terminal_id', 'amount', 'label', 'scenario', 'day']
    >>> sim.transactions.equals(simulate(SimulatorSettings(customers=50, terminals=100), 3, 1).transactions)
    True
    """
    settings = settings or SimulatorSettings()
    days = settings.days if days is None else int(days)
    seed = settings.seed if seed is None else int(seed)
    if days < 1:
        raise ValueError("days must be at least 1")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    pop = draw_population(settings, seed)
    schedule = daily_schedule(settings, days)

    day, secs, cust, term, amount = _base_transactions(pop, schedule, days, seed)
    fraud = np.zeros(len(day), dtype=np.int8)
    scenario = np.zeros(len(day), dtype=np.int8)

    # Scenario 1, 2, 3 in this order: a later scenario overwrites an earlier one's mark.
    big = amount > schedule["amount_threshold"][day]
    fraud[big], scenario[big] = 1, SCENARIO_AMOUNT
    terminal_events = _compromise_terminals(pop, schedule, days, seed, day, term, fraud, scenario)
    customer_events = _compromise_customers(
        pop, schedule, days, seed, day, cust, amount, fraud, scenario
    )

    start_epoch = calendar.timegm(settings.start_date.timetuple())
    epoch = start_epoch + day.astype(np.int64) * SECONDS_PER_DAY + secs
    delay = _label_delays(settings, seed, len(day))
    return _assemble(
        settings, days, seed, pop, epoch, day, cust, term, amount, fraud, scenario, delay,
        terminal_events + customer_events,
    )


def _base_transactions(
    pop: Population, schedule: dict[str, np.ndarray], days: int, seed: int
) -> tuple[np.ndarray, ...]:
    """Legitimate spending, one whole day per numpy block, sorted by time within the day."""
    reach = pop.reach_count
    n = pop.n_customers
    parts: list[tuple[np.ndarray, ...]] = []
    for d in range(days):
        rng = stream(seed, STREAM_TRANSACTIONS, d)
        per_customer = rng.poisson(pop.mean_tx_per_day)
        cust = np.repeat(np.arange(n, dtype=np.int32), per_customer)
        k = len(cust)
        secs = np.floor(rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, k)).astype(np.int64)
        drawn = rng.normal(pop.mean_amount[cust], pop.std_amount[cust])
        fallback = rng.uniform(0.0, 2.0 * pop.mean_amount[cust])
        pick = rng.random(k)
        # Draw for every candidate, then drop: the kept ones do not depend on the dropped.
        keep = (secs >= 0) & (secs < SECONDS_PER_DAY) & (reach[cust] > 0)
        cust, secs, drawn, fallback, pick = (a[keep] for a in (cust, secs, drawn, fallback, pick))
        amount = np.where(drawn < 0.0, fallback, drawn) * schedule["spending_multiplier"][d]
        amount = np.round(amount, 2)
        slot = np.minimum((pick * reach[cust]).astype(np.int64), reach[cust] - 1)
        term = pop.reach_terminals[pop.reach_offsets[cust] + slot]
        order = np.argsort(secs, kind="stable")
        parts.append(
            (np.full(len(cust), d, dtype=np.int32), secs[order], cust[order], term[order],
             amount[order])
        )
    return tuple(np.concatenate(cols) for cols in zip(*parts))


def _group_rows(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by key, each group in time order; ``rows[start[k]:start[k + 1]]``."""
    rows = np.argsort(keys, kind="stable")
    start = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=start[1:])
    return rows, start


def _window(rows: np.ndarray, day: np.ndarray, first: int, until: int) -> np.ndarray:
    """The rows (time-ordered) whose day is in [first, until)."""
    days = day[rows]
    return rows[np.searchsorted(days, first) : np.searchsorted(days, until)]


def _compromise_terminals(
    pop, schedule, days, seed, day, term, fraud, scenario
) -> list[tuple[str, int, int, int]]:
    """Scenario 2: each day some terminals are compromised; all their transactions in the
    window starting that day are fraud."""
    rows, start = _group_rows(term, pop.n_terminals)
    events = []
    for d in range(days):
        k = min(int(schedule["compromised_terminals_per_day"][d]), pop.n_terminals)
        if k == 0:
            continue
        until = d + int(schedule["terminal_compromise_days"][d])
        chosen = stream(seed, STREAM_TERMINAL_COMPROMISE, d).choice(
            pop.n_terminals, size=k, replace=False
        )
        for t in chosen.tolist():
            hit = _window(rows[start[t] : start[t + 1]], day, d, until)
            fraud[hit], scenario[hit] = 1, SCENARIO_TERMINAL
            events.append(("terminal", t, d, until))
    return events


def _compromise_customers(
    pop, schedule, days, seed, day, cust, amount, fraud, scenario
) -> list[tuple[str, int, int, int]]:
    """Scenario 3: each day some customers are compromised; a share of their transactions
    in the window starting that day are fraud, with the amount multiplied.

    Each transaction of the window is picked with probability ``customer_fraud_share`` of its
    own day (the handbook picks exactly floor(n / 3); an independent pick per transaction
    keeps the share on average and lets a change of share from day D leave every pick before
    D as it was). A transaction in two overlapping windows gets a pick from each, as in the
    handbook, but its amount is multiplied once.
    """
    rows, start = _group_rows(cust, pop.n_customers)
    share = schedule["customer_fraud_share"]
    picked = np.zeros(len(day), dtype=bool)
    events = []
    for d in range(days):
        k = min(int(schedule["compromised_customers_per_day"][d]), pop.n_customers)
        if k == 0:
            continue
        until = d + int(schedule["customer_compromise_days"][d])
        chosen = stream(seed, STREAM_CUSTOMER_COMPROMISE, d).choice(
            pop.n_customers, size=k, replace=False
        )
        for j, c in enumerate(chosen.tolist()):
            events.append(("customer", c, d, until))
            window = _window(rows[start[c] : start[c + 1]], day, d, until)
            draws = stream(seed, STREAM_CUSTOMER_FRAUD_PICK, d, j).random(len(window))
            picked[window[draws < share[day[window]]]] = True
    multiplier = schedule["customer_fraud_amount_multiplier"][day[picked]]
    amount[picked] = np.round(amount[picked] * multiplier, 2)
    fraud[picked], scenario[picked] = 1, SCENARIO_CUSTOMER
    return events


def _label_delays(settings: SimulatorSettings, seed: int, n: int) -> np.ndarray:
    """Seconds from each transaction to the moment its label is known."""
    spec = settings.label_delay
    rng = stream(seed, STREAM_LABEL_DELAY)
    if spec.distribution == "uniform":
        days = rng.uniform(spec.low_days, spec.high_days, n)
    elif spec.distribution == "exponential":
        days = rng.exponential(spec.days, n) if spec.days > 0 else np.zeros(n)
    else:
        days = np.full(n, spec.days)
    return np.rint(days * SECONDS_PER_DAY).astype(np.int64)


def _names(prefix: str, count: int, width: int = 5) -> pa.Array:
    """``prefix`` + zero-padded index strings, built in Arrow (no Python call per name)."""
    width = max(width, len(str(max(count - 1, 0))))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(count)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _strings(values: pa.Array) -> pd.api.extensions.ExtensionArray:
    return pd.array(values, dtype="str")


def _utc(epoch_seconds: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(epoch_seconds, unit="s", utc=True))


def _assemble(
    settings, days, seed, pop, epoch, day, cust, term, amount, fraud, scenario, delay, events
) -> Simulation:
    customer_names = _names("C", pop.n_customers)
    terminal_names = _names("T", pop.n_terminals)
    tx_ids = _names(f"tx-{seed}-", len(day), width=9)
    transactions = pd.DataFrame(
        {
            "transaction_id": _strings(tx_ids),
            "timestamp": _utc(epoch),
            "customer_id": _strings(customer_names.take(cust)),
            "terminal_id": _strings(terminal_names.take(term)),
            "amount": amount,
            "label": fraud,
            "scenario": scenario,
            "day": day,
        }
    )
    label_epoch = epoch + delay
    order = np.argsort(label_epoch, kind="stable")
    labels = pd.DataFrame(
        {
            "transaction_id": _strings(tx_ids.take(order)),
            "label": fraud[order],
            "timestamp": _utc(label_epoch[order]),
            "scenario": scenario[order],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": _strings(customer_names),
            "x": pop.customer_xy[:, 0],
            "y": pop.customer_xy[:, 1],
            "mean_amount": pop.mean_amount,
            "std_amount": pop.std_amount,
            "mean_tx_per_day": pop.mean_tx_per_day,
            "n_terminals": pop.reach_count,
        }
    )
    terminals = pd.DataFrame(
        {"terminal_id": _strings(terminal_names), "x": pop.terminal_xy[:, 0], "y": pop.terminal_xy[:, 1]}
    )
    names = {"terminal": terminal_names, "customer": customer_names}
    compromises = pd.DataFrame(
        [(kind, names[kind][i].as_py(), d, until) for kind, i, d, until in events],
        columns=["kind", "id", "day", "until_day"],
    )
    return Simulation(
        transactions=transactions,
        labels=labels,
        label_tx_index=order,
        customers=customers,
        terminals=terminals,
        compromises=compromises,
        settings=settings,
        days=days,
        seed=seed,
    )
