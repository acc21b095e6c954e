"""Feature pipeline speed and memory, on one core.

Streams simulated wire records (JSON-decoded dicts, as the daemon gets them from Kafka)
through ``parse`` + ``update_many`` in polls of ``--batch`` events, with label events
learned per poll, then runs the offline ``transform_many`` on the whole table, and
measures the window state's memory per entity. Prints a summary and writes
``bench/results/features.json``.

Rates are per second of this process's CPU time (``time.process_time``) on one pinned
core, so other work on a shared machine does not make them look slower than they are;
the wall-clock rates are reported next to them.

    .venv/bin/python bench/bench_features.py [--days 30] [--preset handbook] [--batch 500]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from fraudstream.config.features import PRESETS, FeatureSpec  # noqa: E402
from fraudstream.config.simulate import SimulatorSettings  # noqa: E402
from fraudstream.features import FeaturePipeline, Transaction, load_state, save_state  # noqa: E402
from fraudstream.simulate import merged_events, simulate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"


def polls(records: list[tuple[str, dict]], size: int):
    """Consecutive slices of the merged stream: (label events, transaction records)."""
    for i in range(0, len(records), size):
        chunk = records[i:i + size]
        yield ([e for k, e in chunk if k == "label"], [e for k, e in chunk if k == "transaction"])


def bench_stream(spec: FeatureSpec, records, batch: int, repeats: int) -> dict:
    best = {}
    clock = time.process_time
    for _ in range(repeats):
        pipe = FeaturePipeline(spec)
        parse = pipe.parse
        pending: dict[str, Transaction] = {}
        t_parse = t_update = t_labels = 0.0
        n_tx = n_lab = 0
        wall = time.perf_counter()
        for labels, txs in polls(records, batch):
            t0 = clock()
            pipe.learn_labels([(pending.pop(e["transaction_id"]), e["label"]) for e in labels])
            t1 = clock()
            parsed = [parse(r) for r in txs]
            t2 = clock()
            pipe.update_many(parsed)
            t3 = clock()
            for tx in parsed:
                pending[tx.transaction_id] = tx
            t_labels += t1 - t0
            t_parse += t2 - t1
            t_update += t3 - t2
            n_tx += len(txs)
            n_lab += len(labels)
        wall = time.perf_counter() - wall
        run = {
            "transactions": n_tx,
            "labels": n_lab,
            "parse_per_s": n_tx / t_parse,
            "update_many_per_s": n_tx / t_update,
            "parse_plus_update_per_s": n_tx / (t_parse + t_update),
            "labels_per_s": n_lab / t_labels if t_labels else None,
            "whole_loop_events_per_s": (n_tx + n_lab) / (t_parse + t_update + t_labels),
            "whole_loop_events_per_wall_s": (n_tx + n_lab) / wall,
        }
        if not best or run["parse_plus_update_per_s"] > best["parse_plus_update_per_s"]:
            best = run
    best["entities_held"] = pipe.n_entities
    best["late_events"] = pipe.late_events
    return best, pipe


def bench_offline(spec: FeatureSpec, frame, repeats: int) -> dict:
    pipe = FeaturePipeline(spec)
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        X = pipe.transform_many(frame)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"rows": len(frame), "cpu_seconds": min(cpu), "rows_per_s": len(frame) / min(cpu),
            "wall_seconds": min(wall), "rows_per_wall_s": len(frame) / min(wall), "shape": list(X.shape)}


def _state_bytes(spec: FeatureSpec, records, batch: int) -> tuple[int, FeaturePipeline]:
    """Bytes allocated by windows.py and still held after streaming ``records``."""
    gc.collect()
    tracemalloc.start()
    pipe = FeaturePipeline(spec)
    pending: dict[str, Transaction] = {}
    for labels, txs in polls(records, batch):
        pipe.learn_labels([(pending.pop(e["transaction_id"]), e["label"]) for e in labels])
        parsed = [pipe.parse(r) for r in txs]
        pipe.update_many(parsed)
        for tx in parsed:
            pending[tx.transaction_id] = tx
    gc.collect()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = snap.filter_traces([tracemalloc.Filter(True, "*fraudstream/features/windows.py")])
    return sum(s.size for s in held.statistics("filename")), pipe


def bench_memory(spec: FeatureSpec, records, batch: int, tmp: Path) -> dict:
    """Window state bytes per entity, group by group (one spec per window group)."""
    out: dict = {"groups": {}}
    _, windows, _ = spec.resolved()
    for group in windows:
        one = FeatureSpec(fields=spec.fields, stateless=(), windows=(group,), ratios=())
        size, pipe = _state_bytes(one, records, batch)
        (st,) = pipe._event_states + pipe._label_states
        entries = sum(len(e.times) for e in st.entities.values())
        keys = sum(sys.getsizeof(k) for k in st.entities)
        out["groups"][st.group.name] = {
            "entities": len(st.entities),
            "entries": entries,
            "bytes": size,
            "bytes_per_entity": size / len(st.entities),
            "entries_per_entity": entries / len(st.entities),
            "key_string_bytes_per_entity": keys / len(st.entities),
        }
    pipe = FeaturePipeline(spec)
    pending: dict[str, Transaction] = {}
    for labels, txs in polls(records, batch):
        pipe.learn_labels([(pending.pop(e["transaction_id"]), e["label"]) for e in labels])
        parsed = [pipe.parse(r) for r in txs]
        pipe.update_many(parsed)
        for tx in parsed:
            pending[tx.transaction_id] = tx
    entities = sum(pipe.n_entities.values())
    path = save_state(pipe.state_dict(), tmp / "features-state.npz")
    out["state_file_bytes"] = path.stat().st_size
    out["state_file_bytes_per_entity"] = path.stat().st_size / entities
    t0 = time.process_time()
    FeaturePipeline(spec).load_state_dict(load_state(path))
    out["state_load_cpu_seconds"] = time.process_time() - t0
    path.unlink()
    return out


def _auc_ap(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC AUC (rank statistic) and average precision, without ties handling subtleties."""
    order = np.argsort(-score, kind="stable")
    y = y[order]
    tp = np.cumsum(y)
    ap = float((tp / np.arange(1, len(y) + 1))[y == 1].mean())
    ranks = np.empty(len(y))
    ranks[np.argsort(score[order], kind="stable")] = np.arange(1, len(y) + 1)
    pos = y == 1
    auc = (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
    return float(auc), ap


def _logistic(X: np.ndarray, y: np.ndarray, steps: int = 400, lr: float = 0.5) -> np.ndarray:
    """Plain full-batch logistic regression (gradient descent on standardised inputs)."""
    Xb = np.hstack([X, np.ones((len(X), 1))])
    w = np.zeros(Xb.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(Xb @ w, -30, 30)))
        w -= lr * Xb.T @ (p - y) / len(y)
    return w


def bench_quality(days: int = 60) -> dict:
    """How much the extended preset helps a simple model, handbook protocol: train on
    two weeks after a 30-day warm-up, skip the 7-day label delay, test on the rest."""
    sim = simulate(SimulatorSettings(), days=days, seed=2)
    tx = sim.transactions
    day = tx["day"].to_numpy()
    train, test = (day >= 30) & (day < 44), day >= 51
    y = tx["label"].to_numpy().astype(float)
    out = {"days": days, "train_rows": int(train.sum()), "test_rows": int(test.sum())}
    for preset in ("handbook", "extended"):
        pipe = FeaturePipeline(FeatureSpec(preset=preset))
        X = pipe.transform_many(tx)
        pipe.fit_normalizer(X[train])
        Z = pipe.normalize(X).astype(np.float64)
        w = _logistic(Z[train], y[train])
        score = np.hstack([Z[test], np.ones((int(test.sum()), 1))]) @ w
        auc, ap = _auc_ap(y[test], score)
        out[preset] = {"roc_auc": round(auc, 4), "average_precision": round(ap, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--terminals", type=int, default=10000)
    ap.add_argument("--preset", default="handbook", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=500, help="events per poll")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--quality", action="store_true",
                    help="also compare presets with a logistic regression (60 simulated days)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    spec = FeatureSpec(preset=args.preset)
    sim = simulate(SimulatorSettings(customers=args.customers, terminals=args.terminals),
                   days=args.days, seed=1)
    records = list(merged_events(sim))
    print(f"{len(sim.transactions)} transactions, {len(records)} events, {args.days} days, "
          f"preset {args.preset}, polls of {args.batch}")

    stream, _ = bench_stream(spec, records, args.batch, args.repeats)
    offline = bench_offline(spec, sim.transactions, args.repeats)
    as_text = sim.transactions.assign(
        timestamp=sim.transactions["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    offline["text_timestamps"] = bench_offline(spec, as_text, args.repeats)
    memory = bench_memory(spec, records, args.batch, args.out.parent)
    quality = bench_quality() if args.quality else None
    report = {
        "preset": args.preset, "days": args.days, "customers": args.customers,
        "terminals": args.terminals, "batch": args.batch, "one_core": hasattr(os, "sched_setaffinity"),
        "python": platform.python_version(), "machine": platform.machine(),
        "stream": stream, "offline": offline, "memory": memory, "quality": quality,
        "command": " ".join(["bench/bench_features.py"] + sys.argv[1:]),
    }
    print("rates per CPU second of this process, pinned to one core")
    print(f"stream  parse             {stream['parse_per_s']:>12,.0f} tx/s")
    print(f"stream  update_many       {stream['update_many_per_s']:>12,.0f} tx/s")
    print(f"stream  parse+update_many {stream['parse_plus_update_per_s']:>12,.0f} tx/s")
    print(f"stream  learn_labels      {stream['labels_per_s']:>12,.0f} labels/s")
    print(f"stream  whole loop        {stream['whole_loop_events_per_s']:>12,.0f} events/s "
          f"({stream['whole_loop_events_per_wall_s']:,.0f} per wall-clock s)")
    print(f"offline transform_many    {offline['rows_per_s']:>12,.0f} rows/s ({offline['cpu_seconds']:.2f} s CPU, "
          f"{offline['rows_per_wall_s']:,.0f} rows per wall-clock s)")
    print(f"offline  with RFC 3339 text times {offline['text_timestamps']['rows_per_s']:>8,.0f} rows/s")
    for name, g in memory["groups"].items():
        print(f"memory  {name}: {g['entities']} entities, {g['entries_per_entity']:.0f} entries and "
              f"{g['bytes_per_entity']:.0f} B each (+{g['key_string_bytes_per_entity']:.0f} B key text)")
    print(f"state   file {memory['state_file_bytes']:,} B ({memory['state_file_bytes_per_entity']:.0f} B/entity),"
          f" load {memory['state_load_cpu_seconds']:.2f} s CPU")
    if quality:
        for preset in ("handbook", "extended"):
            q = quality[preset]
            print(f"quality {preset:9} logistic regression: ROC AUC {q['roc_auc']:.4f}, "
                  f"average precision {q['average_precision']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
