"""Scoring latency and throughput over real HTTP: ``fraudstream serve`` driven by an async client.

``bench/bench_api.py`` times the in-process cost of a request; this one measures what a
caller sees: JSON over a TCP connection, uvicorn, FastAPI validation, the daemon's lock and
the per-batch step, for one transaction per request.

1. ``python -m fraudstream serve`` starts as a separate process on 127.0.0.1 (a free port)
   with a temporary config and checkpoint directory and a fresh model built from the config.
2. Warm-up: a few simulated days (transactions and their delayed label events, in event-time
   order) are posted in batches, so the windows hold real entities and the model has learned.
3. For each mode and each ``--concurrency`` level, that many workers, each with its own
   ``httpx.AsyncClient`` and keep-alive connection, send one transaction per
   ``POST /v1/score`` and wait for the answer before the next (a closed loop), for
   ``--seconds``, after ``--warmup-seconds`` unrecorded.
   Each transaction is a (customer, terminal, amount) drawn from the simulated ones, with a
   fresh id and a timestamp after the warm-up's, increasing from request to request.
   Modes: ``ingest`` (the default write path: windows, pending store), ``dry_run`` (scores
   without changing state), ``explain`` (ingest plus the top-3 occlusion explanation).
4. Latency is measured by the client per request (send to full response); requests/s is
   completed requests over the measured span; any non-2xx answer or transport error is
   counted and reported (and the exit status is 1). Server and client CPU seconds show how
   the cores were shared. No labels are sent while measuring, so no training step runs then.

The server is stopped by its pid (SIGTERM, then a kill after 60 s) however the run ends.
Server and client share the machine's cores, so the figures are a floor for a server with
cores of its own. Prints a table and writes ``bench/results/http.json``.

    .venv/bin/python bench/bench_http.py [--concurrency 16] [--seconds 25] [--modes ingest,dry_run]

``--concurrency 1,16`` runs each mode at both levels.

Needs ``httpx`` (in the ``test`` extra that ``make venv`` installs); no Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import orjson
import yaml

from fraudstream.config.simulate import SimulatorSettings
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import merged_events

ROOT = Path(__file__).resolve().parents[1]
MODES = {"ingest": "", "dry_run": "?dry_run=true", "explain": "?explain=true"}
SCORE_HEADERS = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, port: int) -> subprocess.Popen:
    config = {
        "checkpoints": {"directory": str(workdir / "checkpoints")},
        "monitoring": {"host": "127.0.0.1", "port": port},
    }
    path = workdir / "fraudstream.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - the child holds it until it exits
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "serve", "--config", str(path), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
    )


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM by pid (the server writes its stop checkpoint), a kill if it hangs."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_ready(proc: subprocess.Popen, base_url: str, log: Path, timeout_s: float = 300.0) -> float:
    """Seconds until ``/readyz`` answers 200; fails with the server log if it exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"fraudstream serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"fraudstream serve not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process from /proc (NaN where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warm_up(client: httpx.Client, sim, batch: int) -> dict:
    """Post the simulated stream in event-time order, consecutive events of one kind per request."""
    counts = {"transactions": 0, "labels": 0, "requests": 0}
    run: list[dict] = []
    run_kind = None

    def flush() -> None:
        if not run:
            return
        route = "/v1/score" if run_kind == "transaction" else "/v1/labels"
        r = client.post(route, content=orjson.dumps(run), headers=SCORE_HEADERS)
        if r.status_code != 200:
            raise SystemExit(f"warm-up {route} answered {r.status_code}: {r.text[:500]}")
        counts["transactions" if run_kind == "transaction" else "labels"] += len(run)
        counts["requests"] += 1
        run.clear()

    for kind, event in merged_events(sim, inline_labels=False, label_events=True, scenario=False):
        if kind != run_kind or len(run) >= batch:
            flush()
            run_kind = kind
        run.append(event)
    flush()
    return counts


class TransactionSource:
    """Single transactions shaped like the simulated ones: a (customer, terminal, amount) row
    drawn from the simulation, a new id, and a timestamp ``step_s`` after the previous one."""

    def __init__(self, sim, seed: int, step_s: float):
        tx = sim.transactions
        self.customers = tx["customer_id"].to_numpy()
        self.terminals = tx["terminal_id"].to_numpy()
        self.amounts = tx["amount"].to_numpy()
        self.start = tx["timestamp"].max().timestamp() + 1.0
        self.step_s = step_s
        self.rng = np.random.default_rng(seed)
        self.counter = itertools.count()

    def next_body(self) -> bytes:
        n = next(self.counter)
        row = int(self.rng.integers(len(self.customers)))
        when = datetime.fromtimestamp(self.start + n * self.step_s, tz=timezone.utc)
        return orjson.dumps({
            "transaction_id": f"http-{n}",
            "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "customer_id": str(self.customers[row]), "terminal_id": str(self.terminals[row]),
            "amount": float(self.amounts[row]),
        })


async def drive(base_url: str, route: str, source: TransactionSource, concurrency: int,
                seconds: float, warmup_s: float, server_pid: int) -> dict:
    """``concurrency`` closed-loop workers; latencies of requests that start after the warm-up."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    # one client with one keep-alive connection per worker: a shared pool of ``concurrency``
    # connections costs the client more CPU per request than the server spends on it
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) for _ in range(concurrency)]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        begin = time.perf_counter()
        measure_from = begin + warmup_s
        measure_until = measure_from + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            while True:
                body = source.next_body()
                sent = time.perf_counter()
                if sent >= measure_until:
                    return
                try:
                    r = await client.post(route, content=body, headers=SCORE_HEADERS)
                    await r.aread()
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                done = time.perf_counter()
                if sent >= measure_from:
                    latencies.append(done - sent)
                    statuses[status] = statuses.get(status, 0) + 1

        await asyncio.sleep(0)
        tasks = [asyncio.create_task(worker(client)) for client in clients]
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        client_cpu, server_cpu = own_cpu_seconds(), cpu_seconds(server_pid)
        await asyncio.gather(*tasks)
        span = time.perf_counter() - measure_from  # to the end of the last measured request
        client_cpu, server_cpu = own_cpu_seconds() - client_cpu, cpu_seconds(server_pid) - server_cpu
    lat_ms = np.array(latencies or [float("nan")]) * 1000
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    return {
        "requests": len(latencies), "ok": ok, "errors": len(latencies) - ok, "statuses": statuses,
        "seconds": span, "requests_per_s": len(latencies) / span,
        "p50_ms": float(np.percentile(lat_ms, 50)), "p90_ms": float(np.percentile(lat_ms, 90)),
        "p99_ms": float(np.percentile(lat_ms, 99)), "max_ms": float(lat_ms.max()),
        "mean_ms": float(lat_ms.mean()), "server_cpu_s": server_cpu, "client_cpu_s": client_cpu,
        # CPU per request depends little on what else the machine runs, unlike req/s
        "server_cpu_ms_per_request": server_cpu * 1000 / max(1, len(latencies)),
        "client_cpu_ms_per_request": client_cpu * 1000 / max(1, len(latencies)),
    }


def print_table(results: list[dict]) -> None:
    head = f"{'mode':<9} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} " \
           f"{'requests':>9} {'errors':>6} {'server cpu':>19} {'client cpu':>19}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['mode']:<9} {r['concurrency']:>4} {r['requests_per_s']:>8.0f} {r['p50_ms']:>8.1f} "
              f"{r['p90_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['requests']:>9} {r['errors']:>6} "
              f"{r['server_cpu_s'] / r['seconds']:>5.2f}c {r['server_cpu_ms_per_request']:>5.2f} ms/req "
              f"{r['client_cpu_s'] / r['seconds']:>5.2f}c {r['client_cpu_ms_per_request']:>5.2f} ms/req")
    print("server/client cpu: cores busy on average over the measured span, CPU time per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="16", help="requests in flight (closed loop); a comma list runs each")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured span per mode and concurrency")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="unrecorded traffic before each mode")
    parser.add_argument("--modes", default="ingest,dry_run", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--customers", type=int, default=2000, help="simulated customers (terminals: twice)")
    parser.add_argument("--warmup-days", type=int, default=7, help="simulated days posted before measuring")
    parser.add_argument("--warmup-batch", type=int, default=500, help="events per warm-up request")
    parser.add_argument("--step-ms", type=float, default=50.0, help="event-time gap between measured transactions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http.json")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency: integers separated by commas, not {args.concurrency!r}")
    if not levels or min(levels) < 1:
        parser.error("--concurrency: at least 1")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")

    # SIGTERM to the bench becomes an exception, so the server is stopped in ``finally``
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-http-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": os.getloadavg()},
        "args": vars(args) | {"out": str(args.out)},
        "note": "server and client run on the same machine and share its cores",
    }
    sim = simulate(SimulatorSettings(customers=args.customers, terminals=2 * args.customers),
                   days=args.warmup_days, seed=args.seed)
    started = time.monotonic()
    proc = start_server(workdir, port)
    print(f"fraudstream serve pid {proc.pid} on {base_url} (workdir {workdir})")
    try:
        ready_s = wait_ready(proc, base_url, workdir / "serve.log")
        print(f"ready after {ready_s:.1f} s (process start to /readyz 200)")
        with httpx.Client(base_url=base_url, timeout=120.0) as client:
            t = time.monotonic()
            warm = warm_up(client, sim, args.warmup_batch)
            warm["seconds"] = time.monotonic() - t
            model = client.get("/v1/model").json()
        print(f"warm-up: {warm['transactions']:,} transactions and {warm['labels']:,} labels in "
              f"{warm['requests']:,} requests, {warm['seconds']:.1f} s; model_version {model['model_version']}, "
              f"{model['rows_learned']:,} rows learned, {model['pending']:,} pending")
        report["server"] = {"ready_s": ready_s, "warm_up": warm, "model_after_warm_up": {
            k: model[k] for k in ("model_version", "origin", "steps", "rows_learned", "pending")}}
        source = TransactionSource(sim, args.seed, args.step_ms / 1000)
        results: list[dict] = []
        for mode, concurrency in itertools.product(modes, levels):
            print(f"{mode}: {args.warmup_seconds:.0f} s warm-up, {args.seconds:.0f} s measured at "
                  f"concurrency {concurrency} ...", flush=True)
            result = asyncio.run(drive(base_url, "/v1/score" + MODES[mode], source, concurrency,
                                       args.seconds, args.warmup_seconds, proc.pid))
            results.append({"mode": mode, "concurrency": concurrency} | result)
            if proc.poll() is not None:
                log_tail = (workdir / "serve.log").read_text()[-3000:]
                raise SystemExit(f"fraudstream serve died during {mode}:\n{log_tail}")
        report["results"] = results
        report["machine"]["load_average_after"] = os.getloadavg()
    finally:
        stop_server(proc)
        print(f"server stopped (exit {proc.returncode}) after {time.monotonic() - started:.0f} s")
    print_table(results)
    failed = [r for r in results if r["errors"]]
    for r in failed:
        print(f"{r['mode']} at concurrency {r['concurrency']}: {r['errors']} failed requests: {r['statuses']}")
    if failed:
        print(f"server log kept: {workdir / 'serve.log'}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average before {report['machine']['load_average_before']}, "
          f"after {report['machine']['load_average_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {args.out}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
