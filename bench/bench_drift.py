"""Concept drift on a known day: ADWIN's detection delay, and AP after it with ``adapt`` vs ``none``.

Runs the scenario of ``tests/integration/drift_scenario.py`` (1,000 customers, a change on
day 35, a fresh model warmed up online on days 0-27, days 28-48 replayed through the daemon's
loop and monitor, labels 7 days late) for each seed and each change, once with
``monitoring.drift_action: none`` and once with ``adapt``. Changes: ``lower_threshold`` (the
amount rule's threshold falls from 220 to 120: contradicts what the model learnt) and
``stealth`` (frauds with ordinary amounts: new evidence, contradicts nothing). Prints, per
seed, the ADWIN detections (labelled post-change rows until the first) and the prequential
AP from the change on for both actions; writes ``bench/results/drift.json``.

    .venv/bin/python bench/bench_drift.py [--changes lower_threshold stealth] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

from fraudstream.durable import write_json  # noqa: E402

from drift_scenario import (  # noqa: E402
    LABEL_DELAY_DAYS,
    LOWER_THRESHOLD,
    STEALTH,
    Scenario,
    monitored_replay,
    prepare,
    window_ap,
)

RESULTS = REPO / "bench" / "results" / "drift.json"
ACTIONS = ("none", "adapt")
CHANGES = {"lower_threshold": LOWER_THRESHOLD, "stealth": STEALTH}
# days-to-recover counts label days until the daily AP first reaches this: well above the
# AP of the week before the change (0.56-0.58 on ``lower_threshold``), short of what the
# model reaches once it has learnt the new band
RECOVERED_AP = 0.75


def fmt(v: float | None) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def one_seed(scenario: Scenario, monitoring: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-drift-") as tmp:
        t0 = time.perf_counter()
        prepared = prepare(scenario, Path(tmp))
        t1 = time.perf_counter()
        runs = {a: monitored_replay(prepared, a, monitoring) for a in ACTIONS}
        t2 = time.perf_counter()
    s = scenario
    labels_from = s.change_day + LABEL_DELAY_DAYS  # first day scored after post-change labels arrive
    out = {
        "seed": s.seed,
        "warm_up_ap_last_week": prepared.warm_ap_last_week,
        "seconds": {"simulate_and_warm_up": t1 - t0, "two_replays": t2 - t1},
        "stream_labelled_rows": len(runs["none"].result.labels),
        "actions": {},
    }
    for action, run in runs.items():
        first = run.first_adwin_after_change()
        out["actions"][action] = {
            "adwin": [{k: d[k] for k in ("day", "labelled_rows", "post_change_labelled_rows", "action")}
                      | {"window_mean": d["values"]["window_mean"]} for d in run.adwin],
            "adwin_before_change": len(run.adwin_before_change()),
            "first_detection_post_change_labelled_rows": first["post_change_labelled_rows"] if first else None,
            "daily_ap_from_change": run.daily_ap,
            "ap_week_before_change": window_ap(prepared, run, s.warm_days, s.change_day),
            "ap_first_week_after_change": window_ap(prepared, run, s.change_day, labels_from),
            "ap_after_labels_arrive": window_ap(prepared, run, labels_from, s.days),
            "ap_after_labels_arrive_first_3_days": window_ap(prepared, run, labels_from, labels_from + 3),
            f"days_from_labels_to_daily_ap_{RECOVERED_AP}": next(
                (d for d, v in enumerate(run.daily_ap[LABEL_DELAY_DAYS:]) if v is not None and v >= RECOVERED_AP), None),
        }
    a, n = out["actions"]["adapt"], out["actions"]["none"]
    out["adapt_minus_none"] = {k: a[k] - n[k] for k in ("ap_after_labels_arrive_first_3_days", "ap_after_labels_arrive")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--changes", nargs="+", choices=sorted(CHANGES), default=list(CHANGES))
    parser.add_argument("--customers", type=int, default=Scenario.customers)
    parser.add_argument("--lr-multiplier", type=float, help="monitoring.drift_adapt_lr_multiplier (default: config default)")
    parser.add_argument("--recent-share", type=float, help="monitoring.drift_adapt_recent_share")
    parser.add_argument("--adapt-steps", type=int, help="monitoring.drift_adapt_steps")
    parser.add_argument("--replay-keep", type=float, help="monitoring.drift_adapt_replay_keep")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from fraudstream.config.settings import MonitoringSettings

    given = {"drift_adapt_lr_multiplier": args.lr_multiplier, "drift_adapt_recent_share": args.recent_share,
             "drift_adapt_steps": args.adapt_steps, "drift_adapt_replay_keep": args.replay_keep}
    monitoring = {k: v for k, v in given.items() if v is not None}
    used = MonitoringSettings(**monitoring)
    adapt = {k: getattr(used, k) for k in ("drift_adwin_delta", "drift_adapt_lr_multiplier",
                                            "drift_adapt_recent_share", "drift_adapt_steps",
                                            "drift_adapt_replay_keep")}
    changes = {}
    for name in args.changes:
        results = []
        for seed in args.seeds:
            scenario = Scenario(customers=args.customers, seed=seed, change=dict(CHANGES[name]))
            r = one_seed(scenario, monitoring)
            results.append(r)
            print(f"{name}, seed {seed}: warm-up AP (last week) {fmt(r['warm_up_ap_last_week'])}, "
                  f"{r['seconds']['simulate_and_warm_up']:.0f} s + {r['seconds']['two_replays']:.0f} s")
            for action in ACTIONS:
                a = r["actions"][action]
                print(f"  {action:5s}: ADWIN before change {a['adwin_before_change']}, first after change at "
                      f"{a['first_detection_post_change_labelled_rows']} labelled post-change rows; "
                      f"AP week before {fmt(a['ap_week_before_change'])}, first week after {fmt(a['ap_first_week_after_change'])}, "
                      f"after labels arrive {fmt(a['ap_after_labels_arrive'])} (first 3 days {fmt(a['ap_after_labels_arrive_first_3_days'])})")
                print(f"         daily AP from day {scenario.change_day}: " + " ".join(fmt(v) for v in a["daily_ap_from_change"]))
        diffs = [r["adapt_minus_none"] for r in results]
        changes[name] = {
            "change": CHANGES[name],
            "seeds": results,
            "adapt_minus_none_min": {k: min(d[k] for d in diffs) for k in diffs[0]},
            "adapt_minus_none_max": {k: max(d[k] for d in diffs) for k in diffs[0]},
        }
        print(f"{name}: adapt - none, min over seeds: {changes[name]['adapt_minus_none_min']}")
    report = {
        "scenario": {"customers": args.customers, "terminals": 2 * args.customers, "days": Scenario.days,
                     "warm_days": Scenario.warm_days, "change_day": Scenario.change_day,
                     "label_delay_days": LABEL_DELAY_DAYS},
        "monitoring": adapt,
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "changes": changes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report, default=float)  # numpy figures as plain floats
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
