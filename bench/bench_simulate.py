"""How fast the simulator makes and writes transactions, and the fraud rate it gives.

Times ``simulate`` plus writing the transactions and the label events as JSONL, at the
handbook's size (5,000 customers, 10,000 terminals) by default, best of a few repeats, and
measures the fraud rate of a longer run. Prints the figures and writes
``bench/results/simulate.json``.

    .venv/bin/python bench/bench_simulate.py [--days 30] [--repeats 3] [--rate-days 60]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from fraudstream.config.simulate import SimulatorSettings
from fraudstream.simulate import simulate, write_labels, write_transactions

RESULTS = Path(__file__).resolve().parent / "results" / "simulate.json"


def one_run(settings: SimulatorSettings, days: int, seed: int, out_dir: Path) -> dict:
    t0 = time.perf_counter()
    sim = simulate(settings, days=days, seed=seed)
    t1 = time.perf_counter()
    tx_path, label_path = out_dir / "tx.jsonl", out_dir / "tx.labels.jsonl"
    write_transactions(sim, tx_path)
    t2 = time.perf_counter()
    write_labels(sim, label_path)
    t3 = time.perf_counter()
    n = len(sim.transactions)
    return {
        "transactions": n,
        "simulate_s": t1 - t0,
        "write_transactions_s": t2 - t1,
        "write_labels_s": t3 - t2,
        "total_s": t3 - t0,
        "tx_per_s": n / (t3 - t0),
        "tx_per_s_without_labels": n / (t2 - t0),
        "bytes_written": tx_path.stat().st_size + label_path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-days", type=int, default=60, help="days of the fraud-rate run (0 = skip)")
    args = parser.parse_args()

    settings = SimulatorSettings(customers=args.customers, terminals=args.terminals)
    runs = []
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as tmp:
        for _ in range(args.repeats):
            runs.append(one_run(settings, args.days, args.seed, Path(tmp)))
    best = max(runs, key=lambda r: r["tx_per_s"])
    report = {
        "benchmark": "simulate",
        "customers": args.customers,
        "terminals": args.terminals,
        "days": args.days,
        "repeats": args.repeats,
        "best": best,
        "runs": runs,
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    print(
        f"simulate+write {args.days} days, {args.customers} customers, {args.terminals} terminals: "
        f"{best['transactions']:,} transactions in {best['total_s']:.2f} s "
        f"(simulate {best['simulate_s']:.2f} s, transactions {best['write_transactions_s']:.2f} s, "
        f"labels {best['write_labels_s']:.2f} s) = {best['tx_per_s']:,.0f} tx/s with labels, "
        f"{best['tx_per_s_without_labels']:,.0f} tx/s without (best of {args.repeats})"
    )
    if args.rate_days:
        summary = simulate(settings, days=args.rate_days, seed=args.seed).summary()
        report["fraud_rate_run"] = summary
        print(
            f"fraud rate over {args.rate_days} days (seed {args.seed}): "
            f"{100 * summary['fraud_rate']:.3f}% of {summary['transactions']:,} transactions; "
            f"by scenario {summary['by_scenario']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {RESULTS}")


if __name__ == "__main__":
    main()
