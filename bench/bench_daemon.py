"""End-to-end daemon speed through a real broker, per Kafka client, against pass-through baselines.

Usage (``make bench`` starts a broker and sets FRAUDSTREAM_BENCH_BOOTSTRAP)::

    FRAUDSTREAM_BENCH_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/bench_daemon.py

Each measure runs once per ``kafka.client`` (``--clients``, default both), in one run so the
ratios compare like with like on a machine whose load changes from minute to minute.

1. Throughput: a backlog of simulated transactions and their label events is produced up
   front; the daemon (``fraudstream run``, a separate process, learning on) drains it, timed
   from its first score to its last. The baseline is a pass-through on the same client with
   the daemon's consumer and producer settings on the same inputs and no work: both topics
   read, each transaction forwarded unchanged. The ratio compares transactions per second;
   the confluent daemon is also compared with the kafka-python one (target 2x).
2. Latency: events (transactions and labels, half each) are produced at a fixed offered load
   (default 5,000/s) by a process of its own while the daemon runs; for each transaction, the
   time from its produce call to its score's arrival at a reader process. The load generator
   and the reader use librdkafka (confluent-kafka, the ``bench`` extra) so that they take as
   little as they can of the CPU they measure. p50/p90/p99 are
   reported, with the daemon's own histograms (produce time to score sent, batch time), and
   then the same paced events through a pass-through relay process on the same client (what
   the Kafka client alone costs on this machine), and, once, straight from the load
   generator to the reader (the floor the broker and the harness set). Target with
   confluent: p99 <= 15 ms.

Prints the figures and writes ``bench/results/daemon.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from fraudstream.config import KafkaSettings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.consumers.options import kafka_python_options, librdkafka_options
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import merged_events

ROOT = Path(__file__).resolve().parents[1]


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    admin.close()


def produce(bootstrap: str, events: list[tuple[str, bytes, bytes, str | None]]) -> None:
    """Send ``(topic, key, value, tx_id)`` as fast as the producer goes (a backlog)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1)
    for topic, key, value, _ in events:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def produce_paced(bootstrap: str, events: list, rate: float, out: Path) -> None:
    """Load generator process: sends ``events`` at ``rate`` per second; writes each
    transaction's send time. It uses librdkafka (confluent-kafka), not kafka-python, so that
    the harness takes as little of the machine's CPU as it can from what it measures."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": 1})
    for topic in {e[0] for e in events}:  # connections and metadata before the clock starts
        producer.list_topics(topic, timeout=30)
    sent_at: dict[str, float] = {}
    start = time.perf_counter()
    for i, (topic, key, value, tx_id) in enumerate(events):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        if tx_id is not None:
            sent_at[tx_id] = time.time()
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    seconds = time.perf_counter() - start
    producer.flush(30)
    out.write_text(json.dumps({"seconds": seconds, "sent_at": sent_at}))


def read_new_scores(bootstrap: str, topic: str, expected: int, timeout_s: float, out: Path) -> None:
    """Score reader process (librdkafka, like the load generator): arrival time of each score
    produced after it started."""
    from confluent_kafka import Consumer, TopicPartition as Partition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5, "fetch.min.bytes": 1})
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    # start at the end offsets read now, before the live traffic starts
    consumer.assign([Partition(topic, p, consumer.get_watermark_offsets(Partition(topic, p), timeout=30)[1])
                     for p in partitions])
    arrivals: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(arrivals) < expected and time.monotonic() < deadline:
        # consume() waits for all num_messages unless the timeout ends first: wait for one
        # record, then take whatever else is already fetched
        first = consumer.poll(0.1)
        if first is None:
            continue
        records = [first] + consumer.consume(num_messages=1000, timeout=0)
        now = time.time()
        for r in records:
            if r.error() is None:
                arrivals.setdefault(orjson.loads(r.value())["transaction_id"], now)
    consumer.close()
    out.write_text(json.dumps(arrivals))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(port: int) -> list:
    """Every sample on the daemon's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def sample_value(port: int, name: str) -> float | None:
    """An unlabelled sample of the daemon's /metrics; None when it is not there."""
    return next((s.value for s in samples(port) if s.name == name), None)


def histogram(port: int, name: str, labels: dict[str, str] | None = None) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of a histogram on the daemon's /metrics."""
    return {float(s.labels["le"]): s.value for s in samples(port)
            if s.name == f"{name}_bucket" and all(s.labels.get(k) == v for k, v in (labels or {}).items())}


def learner_caught_up(port: int, timeout_s: float) -> float:
    """Wait until the daemon's learning thread has no batch left (its backlog gauge is 0, and
    still 0 a snapshot later); seconds waited. A drained backlog can leave the learner minutes
    behind, and its catching up would otherwise be measured as the paced run's latency."""
    started = time.monotonic()
    zeros = 0
    while zeros < 2 and time.monotonic() - started < timeout_s:
        zeros = zeros + 1 if sample_value(port, "fraudstream_train_backlog_batches") == 0 else 0
        time.sleep(2.5)  # the gauge is refreshed every 2 s
    return time.monotonic() - started


def share_within(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Share of the observations between two scrapes at or under each bucket bound (up to 100 ms)."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    return {f"<= {le * 1000:g} ms": (after[le] - before.get(le, 0.0)) / total
            for le in sorted(after) if le <= 0.1} if total else {}


def stream(customers: int, days: int, seed: int, tx_topic: str, label_topic: str, split_day: int | None = None):
    """Merged transaction and label events; with ``split_day``, (before, from) that day."""
    sim = simulate(SimulatorSettings(customers=customers, terminals=2 * customers), days=days, seed=seed)
    out, before = [], []
    start = sim.transactions["timestamp"].min().normalize()
    for kind, event in merged_events(sim, inline_labels=False, label_events=True):
        if split_day is not None and not before and event["timestamp"] >= (start + np.timedelta64(split_day, "D")).strftime("%Y-%m-%dT%H:%M:%SZ"):
            before, out = out, []
        key = event.get("customer_id", "").encode() or None
        if kind == "transaction":
            out.append((tx_topic, key, orjson.dumps(event), event["transaction_id"]))
        else:
            out.append((label_topic, key, orjson.dumps(event), None))
    return (before, out) if split_day is not None else out


def start_daemon(bootstrap: str, topics: dict[str, str], workdir: Path, group: str,
                 checkpoint_seconds: float = 60, monitoring_port: int = 0, client: str = "kafka-python",
                 profile: Path | None = None) -> subprocess.Popen:
    config = {
        "kafka": {"client": client, "bootstrap_servers": bootstrap, "group_id": group, "topics": topics,
                  "rejoin_after_s": 15},
        "checkpoints": {"directory": str(workdir / group), "every_seconds": checkpoint_seconds},
        "monitoring": {"port": monitoring_port},
    }
    path = workdir / f"{group}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(workdir / f"{group}.log", "wb")
    python = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    proc = subprocess.Popen(python + ["-m", "fraudstream", "run", "--config", str(path)], stdout=log, stderr=log)
    return proc


def count_scores(bootstrap: str, topic: str, expected: int, timeout_s: float, arrivals: dict[str, float] | None = None):
    """Consume ``topic`` until ``expected`` distinct transaction ids; first/last arrival times."""
    # assigned, not subscribed: a reader needs no group (and no rebalance to wait for)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=5)
    partitions = None
    while not partitions:
        partitions = consumer.partitions_for_topic(topic)
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    seen: set[str] = set()
    first = last = None
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            now = time.time()
            for r in records:
                tx_id = orjson.loads(r.value)["transaction_id"]
                if tx_id not in seen:
                    seen.add(tx_id)
                    if arrivals is not None:
                        arrivals[tx_id] = now
                first = first or now
                last = now
    consumer.close()
    return len(seen), first, last


def pass_through(bootstrap: str, topics: dict[str, str], target: str, expected: int, batch: int,
                 client: str = "kafka-python") -> float:
    """The daemon's client settings on the same inputs with no work: both topics read, each
    transaction forwarded unchanged to ``target``; transactions moved per second."""
    moved, started = 0, None
    with PassThrough(client, bootstrap, topics, f"pass-{uuid.uuid4().hex[:8]}", "earliest", batch) as relay:
        while moved < expected:
            n = relay.forward(target, commit=True)
            if n and started is None:
                started = time.perf_counter()
            moved += n
        relay.flush()
    return moved / (time.perf_counter() - started)


class PassThrough:
    """One client's consumer and producer with the daemon's options for that client (both
    input topics read): each transaction forwarded unchanged, labels read and dropped."""

    def __init__(self, client: str, bootstrap: str, topics: dict[str, str], group: str, reset: str, batch: int = 500):
        self.client, self.tx_topic, self.batch = client, topics["transactions"], batch
        inputs = [topics["transactions"], topics["labels"]]
        kafka = KafkaSettings(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset=reset, batch_size=batch)
        if client == "confluent":
            from confluent_kafka import Consumer, Producer

            options = librdkafka_options(kafka)
            self.consumer = Consumer(options.consumer)
            self.consumer.subscribe(inputs)
            self.producer = Producer(options.producer)
        else:
            options = kafka_python_options(kafka)
            self.consumer = KafkaConsumer(*inputs, **options.consumer)
            self.producer = KafkaProducer(**options.producer)

    def __enter__(self) -> PassThrough:
        return self

    def __exit__(self, *exc) -> None:
        self.consumer.close()
        if self.client == "confluent":
            self.producer.flush(30)
        else:
            self.producer.close()

    def assigned(self) -> bool:
        self.forward(None)
        return bool(self.consumer.assignment())

    def forward(self, target: str | None, commit: bool = False) -> int:
        """One poll; its transactions sent to ``target``; how many records it brought."""
        if self.client == "confluent":
            first = self.consumer.poll(0.1)
            records = [] if first is None else [first] + self.consumer.consume(self.batch - 1, 0)
            for r in records:
                if target is not None and r.error() is None and r.topic() == self.tx_topic:
                    self.producer.produce(target, value=r.value(), key=r.key())
            self.producer.poll(0)
            if commit and records:  # the daemon's options store no offsets: name them
                from confluent_kafka import TopicPartition as Partition

                ends = {(r.topic(), r.partition()): r.offset() + 1 for r in records if r.error() is None}
                self.consumer.commit(offsets=[Partition(t, p, o) for (t, p), o in ends.items()], asynchronous=False)
            return sum(1 for r in records if r.error() is None and r.topic() == self.tx_topic)
        moved = 0
        for tp, records in self.consumer.poll(timeout_ms=100).items():
            if tp.topic == self.tx_topic:
                for r in records:
                    if target is not None:
                        self.producer.send(target, key=r.key, value=r.value)
                moved += len(records)
        if commit:
            self.consumer.commit()
        return moved

    def flush(self) -> None:
        self.producer.flush()


def relay(bootstrap: str, topics: dict[str, str], done, client: str = "kafka-python") -> None:
    """The pass-through baseline as a live process: the daemon's consumer and producer
    settings, both input topics read, each transaction forwarded unchanged to the scores
    topic (it carries its transaction_id), until ``done`` is set."""
    with PassThrough(client, bootstrap, topics, f"relay-{uuid.uuid4().hex[:8]}", "latest") as relay:
        while not relay.assigned():
            pass
        while not done.is_set():
            relay.forward(topics["scores"])


def paced_run(args, topics: dict[str, str], live: list, workdir: Path) -> tuple[np.ndarray, float]:
    """Produce ``live`` at ``args.rate`` from a process of its own while another process reads
    the scores topic; latency (ms) of each transaction, and the load actually offered."""
    spawn = multiprocessing.get_context("spawn")
    workdir.mkdir(parents=True, exist_ok=True)
    arrivals_file, sent_file = workdir / "arrivals.json", workdir / "sent.json"
    n_live = sum(1 for e in live if e[3] is not None)
    reader = spawn.Process(target=read_new_scores, args=(args.bootstrap, topics["scores"], n_live, 600, arrivals_file))
    reader.start()
    time.sleep(3)  # the reader has its partitions and end offsets before the first live event
    producer = spawn.Process(target=produce_paced, args=(args.bootstrap, live, args.rate, sent_file))
    producer.start()
    producer.join()
    reader.join()
    sent = json.loads(sent_file.read_text())
    arrivals = json.loads(arrivals_file.read_text())
    lat = np.array([arrivals[t] - sent["sent_at"][t] for t in sent["sent_at"] if t in arrivals]) * 1000
    return lat, len(live) / sent["seconds"]


def summary(lat: np.ndarray) -> dict[str, float]:
    q = dict(zip(("p50_ms", "p90_ms", "p99_ms", "p999_ms"), np.percentile(lat, [50, 90, 99, 99.9]))) if lat.size else {}
    return q | {"max_ms": float(lat.max()) if lat.size else float("nan"), "scored": int(lat.size)}


def describe(lat: np.ndarray) -> str:
    q = summary(lat)
    return (f"p50 {q['p50_ms']:.1f} ms, p90 {q['p90_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms, max {q['max_ms']:.1f} ms "
            f"({q['scored']:,} transactions)") if lat.size else "nothing arrived"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def throughput(args, client: str, topics: dict[str, str], events: list, n_tx: int, copy_topic: str,
               workdir: Path) -> dict:
    """The daemon on ``client`` drains the backlog (learning on), timed from its first score
    to its last; the pass-through on the same client moves the same inputs to ``copy_topic``."""
    baseline = pass_through(args.bootstrap, topics, copy_topic, n_tx, 500, client)
    print(f"[{client}] pass-through baseline (both topics read, transactions forwarded): {baseline:,.0f} transactions/s")
    port = free_port()
    proc = start_daemon(args.bootstrap, topics, workdir, f"{copy_topic}-daemon", monitoring_port=port, client=client)
    try:
        got, first, last = count_scores(args.bootstrap, topics["scores"], n_tx, timeout_s=900)
        polls = histogram(port, "fraudstream_batch_size_events")
        per_poll = sample_value(port, "fraudstream_batch_size_events_sum") / polls[float("inf")]
    finally:
        stop(proc)
    daemon_tx_s = got / (last - first) if got and last > first else 0.0
    # label events consumed with the transactions: those written before the last one (the
    # daemon reads its inputs aligned by record time); later labels are not counted
    consumed = max(i for i, e in enumerate(events) if e[3] is not None) + 1
    events_s = daemon_tx_s * consumed / n_tx
    print(f"[{client}] daemon: {got:,} transactions scored, {daemon_tx_s:,.0f} tx/s ({events_s:,.0f} events/s with "
          f"the label events read meanwhile; learning on); ratio to pass-through {daemon_tx_s / baseline:.2f}; "
          f"{per_poll:.0f} events per poll")
    return {"transactions": got, "daemon_tx_per_s": daemon_tx_s, "daemon_events_per_s": events_s,
            "pass_through_tx_per_s": baseline, "ratio": daemon_tx_s / baseline, "events_per_poll": per_poll}


def latency(args, client: str, topics: dict[str, str], backlog: list, live: list, group: str, workdir: Path) -> dict:
    """The daemon on ``client`` at ``args.rate`` events/s after a scored backlog, then the
    same paced events through the pass-through relay on that client."""
    port = free_port()
    profile = workdir / f"{group}.prof" if args.profile else None
    proc = start_daemon(args.bootstrap, topics, workdir, group, args.checkpoint_seconds, port, client=client,
                        profile=profile)
    try:
        produce(args.bootstrap, backlog)
        count_scores(args.bootstrap, topics["scores"], sum(1 for e in backlog if e[3] is not None), timeout_s=600)
        print(f"[{client}] backlog scored; the learner caught up {learner_caught_up(port, 600):.0f} s later")
        before = {"latency": histogram(port, "fraudstream_score_latency_seconds"),
                  "batch": histogram(port, "fraudstream_batch_processing_seconds", {"stage": "total"})}
        lat, offered = paced_run(args, topics, live, workdir / group)
        inside = {
            "produce_to_score_sent": share_within(before["latency"], histogram(port, "fraudstream_score_latency_seconds")),
            "batch_processing": share_within(before["batch"], histogram(
                port, "fraudstream_batch_processing_seconds", {"stage": "total"})),
        }
    finally:
        stop(proc)
    out = {"latency": summary(lat) | {"offered_events_per_s": offered, "inside_daemon_share_within": inside}}
    if profile is not None:  # written when the daemon exits; backlog and paced run together
        out["stages"] = stage_breakdown(profile)
        print(f"[{client}] where the loop's time goes (cProfile, backlog and paced run): " + "; ".join(
            f"{stage} {v['seconds']:.1f} s ({v['ms_per_batch']:.2f} ms/batch)" for stage, v in out["stages"].items()))
    print(f"[{client}] latency at {offered:,.0f} events/s offered (transactions and labels, learning on, checkpoint "
          f"every {args.checkpoint_seconds:g} s): " + describe(lat))
    print(f"[{client}] inside the daemon (its own histograms over the paced run): " + "; ".join(
        f"{what}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()) for what, shares in inside.items()))

    # the same paced events through the pass-through relay: what the client alone costs
    base = {k: f"{group}-base-{k}" for k in topics}
    create_topics(args.bootstrap, list(base.values()), args.partitions)
    rename = {topics["transactions"]: base["transactions"], topics["labels"]: base["labels"]}
    spawn = multiprocessing.get_context("spawn")
    done = spawn.Event()
    relayer = spawn.Process(target=relay, args=(args.bootstrap, base, done, client))
    relayer.start()
    try:
        time.sleep(8)  # the relay has joined its group and holds its partitions
        lat, offered = paced_run(args, base, [(rename[t], k, v, i) for t, k, v, i in live], workdir / f"{group}-relay")
    finally:
        done.set()
        relayer.join(30)
        if relayer.is_alive():
            relayer.kill()
    out["latency_pass_through"] = summary(lat) | {"offered_events_per_s": offered}
    print(f"[{client}] pass-through relay at {offered:,.0f} events/s offered: " + describe(lat))
    return out


#: The loop's stages (the daemon's functions whose cumulative time each one is) for --profile.
STAGES = {
    "poll": ["consumers/kafka.py:*(poll)", "consumers/confluent.py:*(poll)"],
    "decode": ["daemon/decode.py:*(decode_json)", "features/pipeline.py:*(parse)", "daemon/step.py:*(parse_label)"],
    "features": ["features/pipeline.py:*(replay_many)", "features/pipeline.py:*(normalize)"],
    "score": ["models/learner.py:*(score_many)"],
    "produce": ["consumers/sink.py:*(send_json)"],
    "learn (hand-off)": ["daemon/engine.py:*(_learn)"],
    "monitoring": ["monitoring/daemon_monitor.py:*(on_batch)", "monitoring/daemon_monitor.py:*(on_idle)"],
    "checkpoint capture": ["daemon/engine.py:*(capture_checkpoint)"],
    "batch (process)": ["daemon/engine.py:*(process)"],
}


def stage_breakdown(profile: Path) -> dict[str, dict[str, float]]:
    """Per stage of the loop (main thread, cProfile): seconds in all, and ms per batch."""
    import fnmatch
    import pstats

    stats = pstats.Stats(str(profile)).stats
    batches = sum(v[0] for k, v in stats.items() if fnmatch.fnmatch(f"{k[0]}:{k[1]}({k[2]})", "*daemon/app.py:*(_process)"))
    out = {}
    for stage, patterns in STAGES.items():
        seconds = sum(v[3] for k, v in stats.items()
                      if any(fnmatch.fnmatch(f"{k[0]}:{k[1]}({k[2]})", "*" + p) for p in patterns))
        out[stage] = {"seconds": seconds, "ms_per_batch": 1000 * seconds / batches if batches else float("nan")}
    return out


#: The targets of the confluent client (issue 13).
P99_TARGET_MS = 15.0
THROUGHPUT_TARGET = 2.0


def targets(report: dict) -> dict:
    """The confluent targets against what this run measured (when it measured both)."""
    clients = report["clients"]
    out: dict = {"lines": []}
    confluent = clients.get("confluent", {})
    if "latency" in confluent:
        p99 = confluent["latency"].get("p99_ms", float("nan"))
        out["confluent_p99_ms"] = p99
        out["confluent_p99_met"] = bool(p99 <= P99_TARGET_MS)
        out["lines"].append(f"target: confluent p99 {p99:.1f} ms <= {P99_TARGET_MS:g} ms: "
                            f"{'met' if out['confluent_p99_met'] else 'MISSED'}")
    if "throughput" in confluent and "throughput" in clients.get("kafka-python", {}):
        ratio = confluent["throughput"]["daemon_tx_per_s"] / clients["kafka-python"]["throughput"]["daemon_tx_per_s"]
        out["throughput_ratio"] = ratio
        out["throughput_met"] = bool(ratio >= THROUGHPUT_TARGET)
        out["lines"].append(f"target: confluent daemon throughput {ratio:.2f}x kafka-python's >= "
                            f"{THROUGHPUT_TARGET:g}x: {'met' if out['throughput_met'] else 'MISSED'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("FRAUDSTREAM_BENCH_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=10, help="simulated days of backlog (~10k tx/day)")
    parser.add_argument("--latency-seconds", type=float, default=60.0,
                        help="length of the paced run; at least a checkpoint interval, so checkpoints count")
    parser.add_argument("--rate", type=float, default=5000.0, help="offered load for the latency run, tx/s")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--checkpoint-seconds", type=float, default=60.0,
                        help="the daemon's checkpoints.every_seconds (every_steps keeps its default)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the latency run")
    parser.add_argument("--skip-latency", action="store_true", help="only the throughput run")
    parser.add_argument("--clients", type=lambda text: text.split(","), default=["kafka-python", "confluent"],
                        help="Kafka clients to measure, comma-separated (kafka.client values)")
    parser.add_argument("--profile", action="store_true",
                        help="run the latency daemons under cProfile and print where the loop's time goes "
                             "(slows them: their latency is not comparable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "daemon.json")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-"))
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "args": vars(args) | {"out": str(args.out)},
                    "clients": {client: {} for client in args.clients}}

    # 1. throughput on a backlog, and the pass-through baseline on the same inputs, per client
    if not args.skip_throughput:
        inputs = {k: f"bench-{run}-{k}" for k in ("transactions", "labels")}
        outputs = [f"bench-{run}-{c}-{k}" for c in args.clients for k in ("scores", "dlq", "copy")]
        create_topics(args.bootstrap, list(inputs.values()) + outputs, args.partitions)
        events = stream(args.customers, args.days, 1, inputs["transactions"], inputs["labels"])
        n_tx = sum(1 for e in events if e[3] is not None)
        produce(args.bootstrap, events)
        print(f"backlog: {n_tx:,} transactions and {len(events) - n_tx:,} label events")
        for client in args.clients:
            topics = inputs | {k: f"bench-{run}-{client}-{k}" for k in ("scores", "dlq")}
            report["clients"][client]["throughput"] = throughput(args, client, topics, events, n_tx,
                                                                 f"bench-{run}-{client}-copy", workdir)

    # 2. latency at a fixed offered load: 7 days of backlog first (so labels flow and the
    #    daemon learns), then the following days paced at --rate events/s. The load generator
    #    and the score reader are processes of their own, so neither one's work (nor the GIL
    #    they would share) delays the other's clock.
    if not args.skip_latency:
        live_days = max(1, int(np.ceil(args.rate * args.latency_seconds / (args.customers * 4))))
        live = None
        for client in args.clients:
            topics = {k: f"bench-{run}-lat-{client}-{k}" for k in ("transactions", "labels", "scores", "dlq")}
            create_topics(args.bootstrap, list(topics.values()), args.partitions)
            backlog, live = stream(args.customers, 7 + live_days, 2, topics["transactions"], topics["labels"], split_day=7)
            live = live[: int(args.rate * args.latency_seconds)]
            report["clients"][client] |= latency(args, client, topics, backlog, live, f"bench-{run}-lat-{client}", workdir)

        # and with nothing between them: each transaction goes straight to the topic the
        # reader reads. The floor this machine (broker and harness) sets under every run.
        floor = {k: f"bench-{run}-floor-{k}" for k in topics}
        create_topics(args.bootstrap, list(floor.values()), args.partitions)
        rename = {topics["transactions"]: floor["scores"], topics["labels"]: floor["labels"]}
        lat, offered = paced_run(args, floor, [(rename[t], k, v, i) for t, k, v, i in live], workdir / "floor")
        report["latency_floor"] = summary(lat) | {"offered_events_per_s": offered}
        print(f"no relay (load generator straight to the reader) at {offered:,.0f} events/s offered: " + describe(lat))

    report["targets"] = targets(report)
    for line in report["targets"].get("lines", []):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
