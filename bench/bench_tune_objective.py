"""Does ``tune --objective prequential`` pick a better online model than the offline objective,
on streams it did not tune on?

1. Simulate a tuning stream and ``--holdout`` other streams (other simulator seeds), each
   ``--days`` days of ``--customers`` customers, labels inline.
2. On the tuning stream, two searches with the same budget (random, ``--trials`` trials of
   ``--epochs`` epochs, the default search space): ``tune --objective offline`` (validation
   AP; the online settings stay the defaults) and ``tune --objective prequential`` (each
   trial replayed from day 60 through the online learner, labels 7 days late, scored by the
   AP of the last 28 days; it also picks the online settings).
3. On every held-out stream, each pick as a user would run it: ``train`` on the first 60
   days with the pick's hyperparameters (validation days 67-71, before the scored window),
   then ``replay --from <day 60> --label-delay 7d`` with the pick's online settings. The
   figure is the replay's ``last_28_days`` prequential AP (and ROC AUC, card precision).

Prints a table and writes ``bench/results/tune_objective.json`` and ``.md``. Everything
runs as the commands a user types, each in its own process.

    .venv/bin/python bench/bench_tune_objective.py [--days 100] [--customers 1000] [--trials 10] [--epochs 5]
        [--holdout 202,303] [--cross]

A second run with the same arguments reuses the streams and the finished searches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TRAIN_DAYS, DELAY_DAYS, WINDOW_DAYS = 60, 7, 28
#: the model fields a pick fixes (its searched ones); the online ones are the training section
PICKED = ("first_width", "n_layers", "dropout", "l1", "l2", "learning_rate", "optimizer", "batch_size",
          "initializer", "imbalance", "fraud_weight")


def fraudstream(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fraudstream", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def simulate(path: Path, days: int, customers: int, seed: int) -> Path:
    if not path.exists():
        fraudstream("simulate", "--days", str(days), "--customers", str(customers), "--terminals", str(2 * customers),
                    "--seed", str(seed), "--out", str(path), "--inline-labels", "--no-label-events", "--no-progress")
    return path


def tune(stream: Path, out: Path, objective: str, trials: int, epochs: int, work: Path) -> dict:
    config = work / f"tune-{objective}.yaml"
    config.write_text(yaml.safe_dump({"model": {
        "split": {"train_days": TRAIN_DAYS, "delay_days": DELAY_DAYS},
        "tuning": {"objective": objective, "prequential_days": WINDOW_DAYS, "strategy": "random",
                   "max_trials": trials, "epochs": epochs}}}))
    started = time.monotonic()
    fraudstream("tune", "--data", str(stream), "--out", str(out), "--config", str(config))
    meta = json.loads((out / "best" / "metadata.json").read_text())
    hp = meta["hyperparameters"]
    return {"model": {k: hp[k] for k in PICKED}, "training": meta["tuning"].get("training", {}),
            "tuning_value": meta["tuning"]["objective_value"], "trial": meta["tuning"]["trial_id"],
            "seconds": round(time.monotonic() - started, 1)}


def evaluate(pick: dict, stream: Path, days: int, epochs: int, work: Path) -> dict:
    """Train the pick on the stream's first 60 days, replay the rest; the last 28 days' figures."""
    config = work / "config.yaml"
    validation_days = days - WINDOW_DAYS - TRAIN_DAYS - DELAY_DAYS
    config.write_text(yaml.safe_dump({
        "model": {**pick["model"], "epochs": epochs,
                  "split": {"train_days": TRAIN_DAYS, "delay_days": DELAY_DAYS, "validation_days": validation_days}},
        "training": pick["training"]}))
    first = pd.read_csv(stream, usecols=["timestamp"], nrows=1)["timestamp"].iloc[0]
    start = (pd.Timestamp(first).floor("D") + pd.Timedelta(days=TRAIN_DAYS)).strftime("%Y-%m-%d")
    fraudstream("train", "--data", str(stream), "--out", str(work / "artifact"), "--config", str(config), "--force")
    fraudstream("replay", "--data", str(stream), "--artifact", str(work / "artifact"), "--config", str(config),
                "--from", start, "--label-delay", f"{DELAY_DAYS}d", "--out", str(work / "replay"))
    report = json.loads((work / "replay" / "report.json").read_text())
    return report["last_28_days"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tune-seed", type=int, default=101)
    parser.add_argument("--holdout", type=str, default="202,303", help="simulator seeds of the held-out streams")
    parser.add_argument("--cross", action="store_true",
                        help="also each pick's model with the other's online settings")
    parser.add_argument("--work", type=Path, default=RESULTS / "tune_objective")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    tuning_stream = simulate(work / f"tune-{args.tune_seed}.csv", args.days, args.customers, args.tune_seed)
    picks = {}
    for objective in ("offline", "prequential"):
        picks[objective] = tune(tuning_stream, work / f"search-{objective}", objective, args.trials, args.epochs, work)
        print(f"{objective} pick (trial {picks[objective]['trial']}, {picks[objective]['seconds']} s): "
              f"{picks[objective]['model']} online {picks[objective]['training'] or 'defaults'}", flush=True)
    if args.cross:  # which half of the prequential pick carries its difference
        picks["offline model, prequential online"] = {**picks["offline"], "training": picks["prequential"]["training"]}
        picks["prequential model, default online"] = {**picks["prequential"], "training": {}}
    rows = []
    for seed in [int(s) for s in args.holdout.split(",")]:
        stream = simulate(work / f"holdout-{seed}.csv", args.days, args.customers, seed)
        for objective, pick in picks.items():
            run = work / f"eval-{seed}-{objective.replace(' ', '_').replace(',', '')}"
            run.mkdir(exist_ok=True)
            m = evaluate(pick, stream, args.days, args.epochs, run)
            rows.append({"stream_seed": seed, "objective": objective, **m})
            print(f"held-out seed {seed}, {objective} pick: AP {m['average_precision']:.4f}, "
                  f"ROC AUC {m['roc_auc']:.4f}, card precision@100 {m['card_precision_at_100']:.4f}", flush=True)
    mean = {o: statistics.mean(r["average_precision"] for r in rows if r["objective"] == o) for o in picks}
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "picks": picks, "held_out": rows,
              "mean_ap": mean, "prequential_minus_offline": mean["prequential"] - mean["offline"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tune_objective.json").write_text(json.dumps(result, indent=1))
    lines = ["# Tuning objective on held-out streams (last 28 days, prequential)", "",
             "| held-out seed | pick | AP | ROC AUC | card precision@100 |", "|---|---|---|---|---|"]
    lines += [f"| {r['stream_seed']} | {r['objective']} | {r['average_precision']:.4f} | {r['roc_auc']:.4f} | "
              f"{r['card_precision_at_100']:.4f} |" for r in rows]
    lines += ["", "Mean AP: " + ", ".join(f"{o} {m:.4f}" for o, m in mean.items())
              + f"; prequential minus offline pick {result['prequential_minus_offline']:+.4f}."]
    (RESULTS / "tune_objective.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
