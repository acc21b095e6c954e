"""Model quality, prequentially: named variants (feature sets, learner options), each run the
way a user runs the product, on the same simulated streams.

Per simulator seed, the default simulator (population scaled by ``--customers`` /
``--terminals``) writes ``--days`` days with inline labels. Per variant, with the variant's
settings as its config file and nothing else::

    fraudstream train  --data first-60-days.csv --out artifact
    fraudstream replay --data stream.csv --artifact artifact --label-delay 7d \\
                       --from <day 60> --report-from <last 4 weeks> --out replay

so the model is trained offline on the first 60 days (``train``'s own time split inside
them), then scores days 60.. online and keeps learning from labels 7 days late; the days
before ``--from`` only fill the feature windows. Every transaction of the last 4 weeks is
scored before its label is learned. The figures are read from ``scores.csv`` joined with the
stream's labels: average precision, ROC AUC and card precision@100 (the handbook's) per test
week, and their mean over the 4 weeks (the handbook's protocol; its test-set rule of
dropping cards already known compromised is not applied), plus AP and AUC over the whole
4-week window. CPU seconds (user + system) of each command are recorded.

Each variant names its parent: its settings are the parent's plus its own, and its gain is
measured against the parent, so a chain of variants gives each change's share of the gain.
Prints a table and writes ``bench/results/quality.json`` and ``bench/results/quality.md``.

    .venv/bin/python bench/bench_quality.py [--seeds 1,2] [--variants before,after]
        [--days 120] [--customers 2000] [--terminals 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DAY = pd.Timedelta(days=1)
TRAIN_DAYS = 60
TEST_WEEKS = 4

# The settings that were the defaults before issue 14: the handbook's 15 features, frauds
# weighted by the legit/fraud ratio. "before" pins them so it stays "before" after the
# defaults change.
HANDBOOK = {"features": {"preset": "handbook"}, "model": {"fraud_weight": None}}
CUSTOMER_FRAUDS = {"kind": "labels", "entity": "customer", "days": [7], "delay_days": 7,
                   "stats": ["frauds"]}
TERMINAL_LABELS = {"kind": "labels", "entity": "terminal", "days": [1, 7, 30], "delay_days": 7,
                   "stats": ["count", "fraud_rate"]}
CUSTOMER_EVENTS = {"kind": "events", "entity": "customer", "days": [1, 7, 30], "stats": ["count", "mean"],
                   "field": "amount"}

VARIANTS: dict[str, tuple[str | None, str, dict]] = {
    # name: (parent, what it changes, settings on top of the parent's)
    "before": (None, "the handbook's 15 features (the default before)", HANDBOOK),
    "extended": ("before", "preset extended: log amount, hour sin/cos, amount / customer 30-day mean",
                 {"features": {"preset": "extended"}}),
    "customer_frauds": ("extended", "+ the customer's known frauds over 7 days (label delay 7 days)",
                        {"features": {"windows": [CUSTOMER_EVENTS, TERMINAL_LABELS, CUSTOMER_FRAUDS]}}),
    "terminal_windows": ("customer_frauds", "+ terminal known-fraud windows of 3 and 14 days",
                         {"features": {"windows": [CUSTOMER_EVENTS, dict(TERMINAL_LABELS, days=[1, 3, 7, 14, 30]),
                                                   CUSTOMER_FRAUDS]}}),
    "fraud_weight": ("customer_frauds", "fraud weight 10 instead of the legit/fraud ratio",
                     {"model": {"fraud_weight": 10.0}}),
    "wide": ("customer_frauds", "first layer 128 units, L2 1e-5, dropout 0.2",
             {"model": {"first_width": 128, "l2": 1e-5, "dropout": 0.2}}),
    "weighted_wide": ("fraud_weight", "+ first layer 128 units, L2 1e-5, dropout 0.2",
                      {"model": {"first_width": 128, "l2": 1e-5, "dropout": 0.2}}),
    "fraud_weight_5": ("customer_frauds", "fraud weight 5 instead of the legit/fraud ratio",
                       {"model": {"fraud_weight": 5.0}}),
    "weighted_terminal_windows": ("fraud_weight", "+ terminal known-fraud windows of 3 and 14 days",
                                  {"features": {"windows": [CUSTOMER_EVENTS, dict(TERMINAL_LABELS, days=[1, 3, 7, 14, 30]),
                                                            CUSTOMER_FRAUDS]}}),
    "after": (None, "the defaults now (no settings)", {}),
}


def fraudstream(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraudstream", *args]


def merged(parent: dict, child: dict) -> dict:
    out = dict(parent)
    for key, value in child.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def settings_of(name: str) -> dict:
    parent, _, own = VARIANTS[name]
    return merged(settings_of(parent), own) if parent else own


def run(args: list[str], log: Path) -> float:
    """Run a command in its own process; its CPU seconds (user + system)."""
    with open(log, "w") as fh:
        child = subprocess.Popen(args, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(args[2:4])} failed ({status}); see {log}:\n{log.read_text()[-3000:]}")
    return usage.ru_utime + usage.ru_stime


def stream_for(seed: int, args: argparse.Namespace) -> tuple[Path, Path, pd.Timestamp]:
    """The seed's stream and its first 60 days, made once; and the stream's first midnight."""
    work = args.cache / f"stream-{args.days}d-{args.customers}c-{args.terminals}t-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    stream, head = work / "stream.csv", work / f"first-{TRAIN_DAYS}-days.csv"
    if not head.exists():
        run(fraudstream("simulate", "--days", str(args.days), "--customers", str(args.customers),
                        "--terminals", str(args.terminals), "--seed", str(seed), "--out", str(stream),
                        "--inline-labels", "--no-label-events", "--no-progress"), work / "simulate.log")
        frame = pd.read_csv(stream)
        ts = pd.to_datetime(frame["timestamp"], utc=True)
        start = ts.min().floor("D")
        frame[ts < start + TRAIN_DAYS * DAY].to_csv(head, index=False)
    first = pd.read_csv(head, usecols=["timestamp"], nrows=1)["timestamp"].iloc[0]
    return stream, head, pd.Timestamp(first).floor("D")


def figures(stream: Path, scores: Path, report_from: pd.Timestamp) -> dict:
    """AP, AUC and CP@100 per test week, their mean, and AP/AUC over the whole window."""
    from fraudstream.models.evaluation import average_precision, card_precision_per_day, day_index, roc_auc

    frame = pd.read_csv(stream, usecols=["transaction_id", "timestamp", "customer_id", "label"])
    frame = frame.merge(pd.read_csv(scores, usecols=["transaction_id", "score"]), on="transaction_id", how="inner")
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    frame = frame[ts >= report_from].assign(t=(ts[ts >= report_from] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1))
    weeks = []
    for w in range(TEST_WEEKS):
        lo = (report_from + w * 7 * DAY - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        part = frame[(frame["t"] >= lo) & (frame["t"] < lo + 7 * 86_400)]
        y, s = part["label"].to_numpy(), part["score"].to_numpy()
        cp = card_precision_per_day(y, s, part["customer_id"].to_numpy(), day_index(part["t"].to_numpy()), 100)
        weeks.append({"transactions": len(part), "frauds": int(y.sum()), "ap": average_precision(y, s),
                      "auc": roc_auc(y, s), "cp100": cp.mean})
    y, s = frame["label"].to_numpy(), frame["score"].to_numpy()
    return {"weeks": weeks,
            **{k: float(np.mean([w[k] for w in weeks])) for k in ("ap", "auc", "cp100")},
            "window_ap": average_precision(y, s), "window_auc": roc_auc(y, s),
            "transactions": len(frame), "frauds": int(y.sum())}


def run_variant(name: str, seed: int, args: argparse.Namespace) -> dict:
    stream, head, first_day = stream_for(seed, args)
    work = args.cache / "runs" / f"{name}-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    config, done = work / "config.yaml", work / "result.json"
    wanted = yaml.safe_dump(settings_of(name))
    if done.exists() and config.read_text() == wanted and not args.rerun:
        return json.loads(done.read_text())  # the same settings on the same stream: measured already
    config.write_text(wanted)
    start = first_day + TRAIN_DAYS * DAY
    report_from = first_day + (args.days - 7 * TEST_WEEKS) * DAY
    artifact, out = work / "artifact", work / "replay"
    began = time.monotonic()
    train_cpu = run(fraudstream("train", "--data", str(head), "--out", str(artifact), "--config", str(config),
                                "--force"), work / "train.log")
    replay_cpu = run(fraudstream("replay", "--data", str(stream), "--artifact", str(artifact), "--label-delay", "7d",
                                 "--from", start.date().isoformat(), "--report-from", report_from.date().isoformat(),
                                 "--config", str(config), "--out", str(out)), work / "replay.log")
    meta = json.loads((artifact / "metadata.json").read_text())
    result = {"variant": name, "seed": seed, **figures(stream, out / "scores.csv", report_from),
            "n_features": meta["n_inputs"], "validation_ap": meta["metrics"]["average_precision"],
            "best_epoch": meta["data"]["best_epoch"], "train_cpu_s": round(train_cpu, 1),
            "replay_cpu_s": round(replay_cpu, 1), "wall_s": round(time.monotonic() - began, 1)}
    done.write_text(json.dumps(result, default=float))
    return result


def table(runs: list[dict], names: list[str], seeds: list[int]) -> list[str]:
    by = {(r["variant"], r["seed"]): r for r in runs}
    mean = {n: {k: float(np.mean([by[n, s][k] for s in seeds])) for k in ("ap", "auc", "cp100", "window_ap", "window_auc")}
            for n in names}
    lines = ["Means over simulator seeds " + ", ".join(map(str, seeds)) + ".", ""]
    lines += ["| variant | change | features | AP (4-week mean) | AUC | CP@100 | window AP | window AUC | "
             "AP gain vs parent | AP gain vs before | AP per seed | CPU s (train + replay) per seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        parent, change, _ = VARIANTS[n]
        m = mean[n]
        gain = f"{m['ap'] - mean[parent]['ap']:+.4f} vs {parent}" if parent in mean else "-"
        vs_before = f"{m['ap'] - mean['before']['ap']:+.4f}" if "before" in mean else "-"
        lines.append(f"| {n} | {change} | {by[n, seeds[0]]['n_features']} | {m['ap']:.4f} | {m['auc']:.4f} | "
                     f"{m['cp100']:.4f} | {m['window_ap']:.4f} | {m['window_auc']:.4f} | {gain} | {vs_before} | "
                     + " / ".join(f"{by[n, s]['ap']:.4f}" for s in seeds) + " | "
                     + " / ".join(f"{by[n, s]['train_cpu_s']:.0f} + {by[n, s]['replay_cpu_s']:.0f}" for s in seeds) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2", help="simulator seeds")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of: {', '.join(VARIANTS)}")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--terminals", type=int, default=4000)
    parser.add_argument("--rerun", action="store_true", help="measure again variants already measured")
    parser.add_argument("--cache", type=Path, default=RESULTS / "quality", help="streams and runs are kept here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    runs = []
    for name in names:
        for seed in seeds:
            r = run_variant(name, seed, args)
            runs.append(r)
            print(f"{name:>18} seed {seed}: AP {r['ap']:.4f} AUC {r['auc']:.4f} CP@100 {r['cp100']:.4f} "
                  f"(window AP {r['window_ap']:.4f}, AUC {r['window_auc']:.4f}; {r['frauds']} frauds) "
                  f"val AP {r['validation_ap']:.4f}; CPU {r['train_cpu_s']} + {r['replay_cpu_s']} s", flush=True)
    lines = table(runs, names, seeds)
    print("\n".join(lines))
    command = " ".join(["bench/bench_quality.py", *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.md").write_text(f"`{command}`\n\n" + "\n".join(lines) + "\n")
    report = {"command": command, "days": args.days, "customers": args.customers, "terminals": args.terminals,
              "seeds": seeds, "variants": {n: {"parent": VARIANTS[n][0], "change": VARIANTS[n][1],
                                               "settings": settings_of(n)} for n in names},
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_average_at_end": os.getloadavg()},
              "runs": runs}
    (RESULTS / "quality.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {RESULTS / 'quality.md'} and quality.json")


if __name__ == "__main__":
    main()
