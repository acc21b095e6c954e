"""Scoring throughput: the numpy ``Scorer.score_many`` against ``model.predict`` and ``model(X)``.

Usage::

    .venv/bin/python bench/bench_score.py [--inputs 15] [--layers 2] [--seconds 1.0]

Prints a table and writes ``bench/results/score.json``. Also times one online learning step
(``OnlineLearner.learn_many`` on 64 rows), the other per-batch cost of the daemon's loop.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from fraudstream.config.model import ModelParams  # noqa: E402
from fraudstream.durable import write_json  # noqa: E402
from fraudstream.models.builder import build_model, layer_widths  # noqa: E402
from fraudstream.models.learner import OnlineLearner  # noqa: E402
from fraudstream.models.scorer import Scorer  # noqa: E402

BATCHES = (1, 64, 512)


def timed(fn, seconds: float, min_calls: int = 5) -> tuple[float, int]:
    """Median seconds per call over repeated calls for about ``seconds`` (after warm-up)."""
    for _ in range(3):
        fn()
    samples = []
    deadline = time.perf_counter() + seconds
    while len(samples) < min_calls or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples)), len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=15)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "score.json")
    args = parser.parse_args()

    params = ModelParams(n_layers=args.layers)
    model = build_model(params, args.inputs, seed=0)
    scorer = Scorer(model)
    rng = np.random.default_rng(0)
    rows = []
    print(f"network {args.inputs} -> {layer_widths(params, args.inputs)} -> 1, "
          f"keras {keras.__version__}, numpy {np.__version__}")
    print(f"{'batch':>6} {'method':<14} {'us/call':>12} {'rows/s':>14} {'calls':>7}")
    for batch in BATCHES:
        X = rng.normal(size=(batch, args.inputs)).astype(np.float32)
        ours = scorer.score_many(X)
        ref = np.asarray(model(X, training=False)).ravel()
        max_diff = float(np.max(np.abs(ours - ref)))
        methods = {
            "score_many": lambda: scorer.score_many(X),
            "model(X)": lambda: model(X, training=False),
            "model.predict": lambda: model.predict(X, verbose=0),
        }
        for name, fn in methods.items():
            per_call, calls = timed(fn, args.seconds)
            row = {
                "batch": batch,
                "method": name,
                "us_per_call": per_call * 1e6,
                "rows_per_s": batch / per_call,
                "calls": calls,
            }
            if name == "score_many":
                row["max_abs_diff_vs_keras"] = max_diff
            rows.append(row)
            print(f"{batch:>6} {name:<14} {per_call * 1e6:>12.1f} {batch / per_call:>14,.0f} {calls:>7}")

    learner = OnlineLearner(build_model(params, args.inputs, seed=1), params)
    X = rng.normal(size=(64, args.inputs)).astype(np.float32)
    y = (rng.random(64) < 0.05).astype(np.float32)
    per_step, steps = timed(lambda: learner.learn_many(X, y), args.seconds)
    print(f"learn_many(64 rows) incl. scorer refresh: {per_step * 1e6:.0f} us/step ({steps} steps)")

    report = {
        "benchmark": "score",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_1m": os.getloadavg()[0]},
        "network": {"inputs": args.inputs, "hidden": layer_widths(params, args.inputs)},
        "versions": {"keras": keras.__version__, "numpy": np.__version__},
        "results": rows,
        "learn_many_64_us": per_step * 1e6,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
