"""Cost of a dry-run score and of explanations, against the size of the feature state.

A dry run copies the window state of only the entities a request names
(:meth:`fraudstream.features.FeaturePipeline.fork`); the alternative, copying the whole
feature state, is timed alongside. Prints the figures and writes bench/results/api.json.

    .venv/bin/python bench/bench_api.py [--transactions 200000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fraudstream.config import load_settings
from fraudstream.daemon.decode import TX, Incoming
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.service import ScoringService
from fraudstream.features import FeaturePipeline

START = 1_775_000_000  # 2026-04-01


def events(rng: np.random.Generator, n: int, first: int, customers: int, terminals: int) -> list[dict]:
    return [
        {"transaction_id": f"t{first + i}", "timestamp": START + (first + i) * 3,
         "customer_id": f"c{rng.integers(customers)}", "terminal_id": f"m{rng.integers(terminals)}",
         "amount": float(rng.gamma(2, 30))}
        for i in range(n)
    ]


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transactions", type=int, default=200_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pipe = Engine.create(load_settings())
    for first in range(0, args.transactions, 5_000):
        pipe.process([Incoming(TX, e) for e in events(rng, 5_000, first, 50_000, 100_000)])
    service = ScoringService(pipe)
    report = {"transactions_streamed": args.transactions, "entities": pipe.features.n_entities}
    t = time.perf_counter()
    FeaturePipeline.from_state_dict(pipe.features.state_dict())
    report["full_state_copy_s"] = round(time.perf_counter() - t, 4)
    nxt = args.transactions
    for n in (1, 100, 1000):
        batch = events(rng, n, nxt, 50_000, 100_000)
        report[f"dry_run_{n}_s"] = round(best_of(lambda b=batch: service.score(b, dry_run=True)), 5)
        report[f"dry_run_explain_{n}_s"] = round(best_of(lambda b=batch: service.score(b, dry_run=True, explain=True)), 5)
    for key, value in report.items():
        print(f"{key}: {value}")
    out = Path(__file__).parent / "results" / "api.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
