"""The simulated world: customer and terminal profiles on a square map.

Kept apart from the day-by-day generation so the population is drawn once per seed and the
same customers and terminals are reused whatever the number of days or the drift asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.config.simulate import SimulatorSettings

# Independent random streams, so that changing one part (e.g. the fraud pattern after a
# drift day) leaves the draws of every other part untouched.
STREAM_POPULATION = 1
STREAM_TRANSACTIONS = 2
STREAM_TERMINAL_COMPROMISE = 3
STREAM_CUSTOMER_COMPROMISE = 4
STREAM_CUSTOMER_FRAUD_PICK = 5
STREAM_LABEL_DELAY = 6


def stream(seed: int, *key: int) -> np.random.Generator:
    """A generator for one named part of the simulation, derived from the run's seed."""
    return np.random.default_rng([seed, *key])


@dataclass(frozen=True)
class Population:
    """Customer and terminal profiles plus, per customer, the terminals within reach.

    ``reach_terminals[reach_offsets[c]:reach_offsets[c + 1]]`` are the terminals customer
    ``c`` can use, in increasing terminal index (a CSR layout: one flat array, no lists).
    """

    customer_xy: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_tx_per_day: np.ndarray
    terminal_xy: np.ndarray
    reach_offsets: np.ndarray
    reach_terminals: np.ndarray

    @property
    def n_customers(self) -> int:
        return len(self.mean_amount)

    @property
    def n_terminals(self) -> int:
        return len(self.terminal_xy)

    @property
    def reach_count(self) -> np.ndarray:
        return np.diff(self.reach_offsets)


def draw_population(settings: SimulatorSettings, seed: int) -> Population:
    """Place customers and terminals uniformly on the map and draw the customer profiles.

    Profiles follow the handbook: mean amount ~ U(5, 100), std = mean / 2, mean number of
    transactions per day ~ U(0, 4); a customer can use every terminal closer than ``radius``.
    """
    rng = stream(seed, STREAM_POPULATION)
    n, m, side = settings.customers, settings.terminals, settings.grid_size
    customer_xy = rng.uniform(0.0, side, size=(n, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=n)
    mean_tx_per_day = rng.uniform(0.0, 4.0, size=n)
    terminal_xy = rng.uniform(0.0, side, size=(m, 2))
    offsets, flat = _terminals_within(customer_xy, terminal_xy, settings.radius)
    return Population(
        customer_xy=customer_xy,
        mean_amount=mean_amount,
        std_amount=mean_amount / 2.0,
        mean_tx_per_day=mean_tx_per_day,
        terminal_xy=terminal_xy,
        reach_offsets=offsets,
        reach_terminals=flat,
    )


def _terminals_within(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets, terminal indices) of terminals at distance < radius of each customer.

    Terminals are bucketed in square cells of side ``radius``; a customer's candidates are the
    3 x 3 cells around its own, which with cell id ``cx * side_cells + cy`` are three
    contiguous runs of the cell-sorted terminals. This checks about 9 cells' worth of
    terminals per customer instead of all of them.
    """
    n = len(customer_xy)
    cells_per_side = max(1, int(np.ceil(max(customer_xy.max(initial=0.0),
                                            terminal_xy.max(initial=0.0)) / radius)) + 1)
    t_cell = _cell_xy(terminal_xy, radius, cells_per_side)
    t_order = np.argsort(t_cell[:, 0] * cells_per_side + t_cell[:, 1], kind="stable")
    cell_start = np.zeros(cells_per_side * cells_per_side + 1, dtype=np.int64)
    np.cumsum(
        np.bincount(t_cell[:, 0] * cells_per_side + t_cell[:, 1],
                    minlength=cells_per_side * cells_per_side),
        out=cell_start[1:],
    )
    c_cell = _cell_xy(customer_xy, radius, cells_per_side)
    cy_lo = np.maximum(c_cell[:, 1] - 1, 0)
    cy_hi = np.minimum(c_cell[:, 1] + 1, cells_per_side - 1)
    lo_parts, hi_parts = [], []
    for dx in (-1, 0, 1):
        cx = c_cell[:, 0] + dx
        inside = (cx >= 0) & (cx < cells_per_side)
        base = np.clip(cx, 0, cells_per_side - 1) * cells_per_side
        lo = cell_start[base + cy_lo]
        hi = np.where(inside, cell_start[base + cy_hi + 1], lo)
        lo_parts.append(lo)
        hi_parts.append(hi)
    lo = np.stack(lo_parts, axis=1).ravel()  # customer-major: 3 runs per customer
    hi = np.stack(hi_parts, axis=1).ravel()
    lengths = hi - lo
    owner = np.repeat(np.arange(n, dtype=np.int64), 3)
    run_owner = np.repeat(owner, lengths)
    first = np.cumsum(lengths) - lengths
    pos = np.arange(lengths.sum()) - np.repeat(first - lo, lengths)
    candidate = t_order[pos]
    d2 = ((customer_xy[run_owner] - terminal_xy[candidate]) ** 2).sum(axis=1)
    near = d2 < radius * radius
    run_owner, candidate = run_owner[near], candidate[near]
    order = np.argsort(run_owner * len(terminal_xy) + candidate)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(run_owner, minlength=n), out=offsets[1:])
    return offsets, candidate[order].astype(np.int32)


def _cell_xy(xy: np.ndarray, radius: float, cells_per_side: int) -> np.ndarray:
    return np.clip(np.floor(xy / radius).astype(np.int64), 0, cells_per_side - 1)
