"""Backtest speed and memory: ``fraudstream replay`` over a six-month stream, learning and frozen.

The stream is the simulator's default population over 183 days (about 1.77 M transactions,
labels inline), the model an artifact trained on its first 61 days; both are built once and
cached (``--cache``, default ``bench/results/replay``). Each run is the command a user types,
in a process of its own, start-up and report included::

    fraudstream replay --data stream.csv --artifact artifact --label-delay 7d --out ...

once with learning on and once frozen (``training.enabled: false``). For each: wall seconds,
events per second (transactions plus label events, over the wall time), CPU seconds (user +
system, which load from other processes on a shared machine changes far less than wall
time), events per CPU-second, and the process's peak RSS. Prints them and writes
``bench/results/replay.json``.

``--stages`` adds one more learning replay, in this process, that splits its CPU time by
thread: the main thread (reading, decoding, features, scoring, the pending store, the
results), the learning thread (the trainer and its TensorFlow steps) and TensorFlow's own
worker threads (the rest of the process's CPU time). The main thread and the learning
thread share the GIL, so on two idle cores the wall time is at least the larger of the two.

    .venv/bin/python bench/bench_replay.py [--days 183] [--runs learning,frozen] [--chunk-rows 20000] [--stages]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def fraudstream(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraudstream", *args]


def build(cache: Path, days: int) -> tuple[Path, Path]:
    """The stream and the artifact, made once per ``days``."""
    cache.mkdir(parents=True, exist_ok=True)
    stream, history, artifact = cache / f"stream-{days}d.csv", cache / "train-61d.csv", cache / "artifact-61d"
    if not stream.exists():
        subprocess.run(fraudstream("simulate", "--days", str(days), "--out", str(stream), "--inline-labels",
                                   "--no-label-events"), check=True, cwd=ROOT)
    if not artifact.exists():
        subprocess.run(fraudstream("simulate", "--days", "61", "--out", str(history), "--inline-labels",
                                   "--no-label-events"), check=True, cwd=ROOT)
        subprocess.run(fraudstream("train", "--data", str(history), "--out", str(artifact), "--epochs", "3",
                                   "--train-days", "46"), check=True, cwd=ROOT)
    return stream, artifact


def measure(stream: Path, artifact: Path, learning: bool, chunk_rows: int, work: Path) -> dict:
    """One replay in its own process: wall and CPU time, peak RSS, and its counters."""
    config = work / f"config-{learning}.yaml"
    config.write_text(yaml.safe_dump({"training": {"enabled": learning}, "replay": {"chunk_rows": chunk_rows}}))
    out = work / f"out-{learning}"
    started = time.monotonic()
    child = subprocess.Popen(fraudstream("replay", "--data", str(stream), "--artifact", str(artifact),
                                         "--label-delay", "7d", "--config", str(config), "--out", str(out)),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own usage, not every child's
    wall = time.monotonic() - started
    stdout = child.stdout.read().decode()
    if status != 0:
        raise SystemExit(f"replay failed ({status}):\n{stdout}")
    counters = json.loads((out / "report.json").read_text())["counters"]
    cpu = usage.ru_utime + usage.ru_stime
    events = counters["events"]
    return {
        "learning": learning,
        "events": events,
        "transactions": counters["transactions_scored"],
        "train_steps": counters["train_steps"],
        "wall_seconds": round(wall, 1),
        "events_per_second": round(events / wall),
        "cpu_seconds": round(cpu, 1),
        "events_per_cpu_second": round(events / cpu),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "counters": counters,
    }


def stages(stream: Path, artifact: Path, chunk_rows: int) -> dict:
    """A learning replay in this process, its CPU time split by thread (see the docstring)."""
    from fraudstream.config import Settings
    from fraudstream.daemon.engine import Engine
    from fraudstream.daemon.replay import run_replay

    settings = Settings(replay={"chunk_rows": chunk_rows})
    learning = {"cpu": 0.0, "jobs": 0}
    learn = Engine._learn

    def timed_learn(self, joined, now):  # runs on the learning thread: its own CPU clock
        started = time.thread_time()
        try:
            return learn(self, joined, now)
        finally:
            learning["cpu"] += time.thread_time() - started
            learning["jobs"] += 1

    Engine._learn = timed_learn
    try:
        pipeline = Engine.create(settings, artifact)
        process, main, wall = time.process_time(), time.thread_time(), time.monotonic()
        result, _ = run_replay(settings, stream, label_delay="7d", pipeline=pipeline)
        wall, main, process = time.monotonic() - wall, time.thread_time() - main, time.process_time() - process
    finally:
        Engine._learn = learn
    events, steps = result.counters["events"], result.counters["train_steps"]
    return {
        "events": events, "train_steps": steps, "wall_seconds": round(wall, 1), "cpu_seconds": round(process, 1),
        "main_thread_cpu_seconds": round(main, 1),
        "main_thread_us_per_event": round(main / events * 1e6, 2),
        "learning_thread_cpu_seconds": round(learning["cpu"], 1),
        "learning_thread_ms_per_step": round(learning["cpu"] / max(steps, 1) * 1e3, 3),
        "tensorflow_threads_cpu_seconds": round(process - main - learning["cpu"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--runs", default="learning,frozen", help="learning, frozen, both, or none (\"\")")
    parser.add_argument("--chunk-rows", type=int, default=20_000, help="replay.chunk_rows")
    parser.add_argument("--stages", action="store_true", help="also split a learning replay's CPU time by thread")
    parser.add_argument("--cache", type=Path, default=RESULTS / "replay", help="where the stream and artifact are kept")
    args = parser.parse_args()
    stream, artifact = build(args.cache, args.days)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.runs.split(",")):
            runs[name] = measure(stream, artifact, name == "learning", args.chunk_rows, Path(tmp))
            r = runs[name]
            print(f"{name:>8}: {r['events']:,} events ({r['transactions']:,} transactions, {r['train_steps']:,} steps) "
                  f"in {r['wall_seconds']} s wall = {r['events_per_second']:,}/s; {r['cpu_seconds']} s CPU = "
                  f"{r['events_per_cpu_second']:,}/CPU-s; peak RSS {r['peak_rss_mb']} MB", flush=True)
    if args.stages:
        runs["stages"] = r = stages(stream, artifact, args.chunk_rows)
        print(f"  stages: main thread {r['main_thread_cpu_seconds']} s CPU ({r['main_thread_us_per_event']} us/event), "
              f"learning thread {r['learning_thread_cpu_seconds']} s ({r['learning_thread_ms_per_step']} ms/step), "
              f"TensorFlow threads {r['tensorflow_threads_cpu_seconds']} s; {r['wall_seconds']} s wall", flush=True)
    report = {
        "command": " ".join(["bench/bench_replay.py", *sys.argv[1:]]),
        "stream": str(stream), "days": args.days, "chunk_rows": args.chunk_rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_end": os.getloadavg()},
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replay.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'replay.json'}")


if __name__ == "__main__":
    main()
