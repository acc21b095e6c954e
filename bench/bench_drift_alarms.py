"""Drift alarms of a backtest: false alarms on stationary streams, detection delay on drifts.

Runs the scenario of ``tests/integration/alarm_scenario.py`` with the default config: a
simulated world of ``--customers`` customers (twice as many terminals), 180 days, ``train``
on the first 60, then ``replay`` of all 180 days through the artifact with the daemon's
monitor, labels 7 days late. For each ``--seeds`` seed it runs the stationary stream and
each drift (``--changes``, from ``--change-day``):

* ``stealth``: the simulator's drift preset (docs/simulator.md): compromised customers'
  frauds get ordinary amounts, and 80% of their transactions are fraud instead of a third;
* ``spending``: every customer spends 1.3 times as much (``spending_multiplier: 1.3``), a
  move of the inputs; not a preset, here to show the data detectors (PSI, Page-Hinkley).

Prints, per run, each detector's alarms after the feature windows' warm-up (event days)
and, for a drift, the delay from the change to its first alarm on or after the change day,
in days of event time (a label-driven detector, ADWIN, cannot fire before the labels of the
changed transactions arrive, 7 days after them). Writes ``bench/results/drift_alarms.json``.

    .venv/bin/python bench/bench_drift_alarms.py [--seeds 0 1 2] [--changes stealth spending]
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

from alarm_scenario import DETECTORS, AlarmScenario, prepare, replay_with_alarms  # noqa: E402

RESULTS = REPO / "bench" / "results" / "drift_alarms.json"
CHANGES = {
    "stealth": {"preset": "stealth"},
    "spending": {"spending_multiplier": 1.3},
}


def one_run(scenario: AlarmScenario) -> dict:
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-alarms-") as tmp:
        t0 = time.perf_counter()
        prepared = prepare(scenario, Path(tmp))
        t1 = time.perf_counter()
        alarms = replay_with_alarms(prepared)
        t2 = time.perf_counter()
    warm = alarms.warm_from_day
    out = {
        "seed": scenario.seed,
        "change": scenario.change,
        "change_day": scenario.change_day,
        "warm_from_day": warm,
        "events": alarms.result.counters["events"],
        "labels_joined": alarms.result.counters["labels_joined"],
        "seconds": {"simulate_and_train": t1 - t0, "replay": t2 - t1},
        "alarms_during_warm_up": {d: [round(x, 2) for x in alarms.days_of(d) if x < warm] for d in DETECTORS},
        "alarms_after_warm_up": {d: [round(x, 2) for x in alarms.days_of(d) if x >= warm] for d in DETECTORS},
    }
    if scenario.change_day is not None:
        day = scenario.change_day
        first = {d: alarms.first_after(d, day) for d in DETECTORS}
        out["alarms_before_change_after_warm_up"] = {
            d: len([x for x in alarms.days_of(d) if warm <= x < day]) for d in DETECTORS}
        out["detection_delay_days"] = {d: None if f is None else round(f - day, 2) for d, f in first.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--changes", nargs="*", choices=sorted(CHANGES), default=list(CHANGES))
    parser.add_argument("--customers", type=int, default=AlarmScenario.customers)
    parser.add_argument("--change-day", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    runs = []
    for seed in args.seeds:
        for name in [None, *args.changes]:
            scenario = AlarmScenario(customers=args.customers, seed=seed,
                                     change_day=None if name is None else args.change_day,
                                     change=None if name is None else CHANGES[name])
            r = dict(one_run(scenario), name=name or "stationary")
            runs.append(r)
            after = ", ".join(f"{d} {len(v)} {v}" for d, v in r["alarms_after_warm_up"].items())
            during = ", ".join(f"{d} {len(v)}" for d, v in r["alarms_during_warm_up"].items())
            print(f"seed {seed} {r['name']}: {r['events']:,} events, warm from day {r['warm_from_day']:.1f}, "
                  f"{r['seconds']['simulate_and_train']:.0f} s + {r['seconds']['replay']:.0f} s")
            print(f"  alarms after warm-up (event day): {after}")
            print(f"  alarms during warm-up: {during}")
            if name is not None:
                print(f"  detection delay from day {args.change_day} (days): {r['detection_delay_days']}")
    stationary = [r for r in runs if r["name"] == "stationary"]
    labelled = sum(r["labels_joined"] for r in stationary)
    summary = {
        "false_alarms_after_warm_up": {d: sum(len(r["alarms_after_warm_up"][d]) for r in stationary)
                                       for d in DETECTORS},
        "stationary_days_after_warm_up": sum(180 - r["warm_from_day"] for r in stationary),
        "stationary_labelled_rows": labelled,
        "detection_delay_days": {name: {d: [r["detection_delay_days"][d] for r in runs if r["name"] == name]
                                        for d in DETECTORS} for name in args.changes},
    }
    print(f"false alarms after warm-up, {len(stationary)} stationary runs "
          f"({summary['stationary_days_after_warm_up']:.0f} days): {summary['false_alarms_after_warm_up']}")
    for name, delays in summary["detection_delay_days"].items():
        print(f"{name}: detection delay (days) per seed: {delays}")
    report = {
        "scenario": {"customers": args.customers, "terminals": 2 * args.customers, "days": AlarmScenario.days,
                     "train_days": AlarmScenario.train_days, "change_day": args.change_day,
                     "label_delay_days": 7, "seeds": args.seeds, "changes": {c: CHANGES[c] for c in args.changes}},
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report, default=float)  # numpy figures as plain floats
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
