"""The ``fraudstream`` command. Argument handling only: each command calls into a package."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
import yaml
from rich.console import Console

from fraudstream.config import Settings, load_settings, masked_dump
from fraudstream.errors import ConfigInvalid, FraudstreamError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices are not ours


class _Commands(typer.core.TyperGroup):
    """Every command's ``FraudstreamError`` ends it the same way: ``error: <message>``, exit 2,
    no traceback (the message names what to fix)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FraudstreamError as exc:
            fail(str(exc))


app = typer.Typer(
    cls=_Commands,
    name="fraudstream",
    help="Score card transactions for fraud as they stream through Kafka, and keep learning "
    "from the labels that arrive later.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # usage errors as click prints them, one plain line, rather than a panel wrapped at the
    # terminal width
    rich_markup_mode=None,
)
config_app = typer.Typer(rich_markup_mode=None, help="Show or check the configuration.", no_args_is_help=True)
checkpoints_app = typer.Typer(rich_markup_mode=None, help="List, show or prune checkpoints.", no_args_is_help=True)
model_app = typer.Typer(rich_markup_mode=None, help="Model versions: list, promote, roll back.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(model_app, name="model")

# soft_wrap: a message is never broken across lines at the terminal width; users and scripts
# grep for it, and a path in it can be longer than any terminal
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML config file (then FRAUDSTREAM__* env).")
]


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_from(path: Path | None) -> Settings:
    """Load the config or exit 2 with every bad key named."""
    try:
        return load_settings(path)
    except ConfigInvalid as exc:
        fail(str(exc))


def model_settings_from(path: Path | None, **overrides: Any) -> Settings:
    """Load the config with ``model`` fields replaced by options (None: keep), or exit 2."""
    from fraudstream.models.commands import with_model_overrides

    try:
        return with_model_overrides(settings_from(path), **overrides)
    except ValueError as exc:
        fail(f"invalid option: {exc}")


# --- config -------------------------------------------------------------------------------


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration (file + environment), secrets masked."""
    settings = settings_from(config)
    typer.echo(yaml.safe_dump(masked_dump(settings), sort_keys=False))


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="config file to validate")]) -> None:
    """Validate a config file; exit non-zero naming each bad key."""
    settings_from(file)
    typer.echo(f"{file}: ok")


# --- commands built in later parts ----------------------------------------------------------


@app.command()
def simulate(
    days: Annotated[
        Optional[int], typer.Option(min=1, help="Days to simulate (config simulator.days).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Transactions file (.jsonl or .csv).")
    ] = None,
    labels_out: Annotated[
        Optional[Path], typer.Option(help="Label events file (default <out>.labels.<suffix>).")
    ] = None,
    fmt: Annotated[
        Optional[str], typer.Option("--format", help="jsonl or csv (default: from the suffix).")
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option(min=0, help="Random seed (config simulator.seed).")
    ] = None,
    customers: Annotated[
        Optional[int], typer.Option(min=1, help="Number of customers (config simulator.customers).")
    ] = None,
    terminals: Annotated[
        Optional[int], typer.Option(min=1, help="Number of terminals (config simulator.terminals).")
    ] = None,
    start_date: Annotated[
        Optional[str],
        typer.Option(help="First day, YYYY-MM-DD, UTC (config simulator.start_date)."),
    ] = None,
    label_delay: Annotated[
        Optional[str],
        typer.Option(
            help="7d, 36h, uniform(2d,10d) or exponential(3d) (config simulator.label_delay)."
        ),
    ] = None,
    inline_labels: Annotated[
        Optional[bool],
        typer.Option("--inline-labels/--no-inline-labels", help="Add a label field to transactions."),
    ] = None,
    label_events: Annotated[
        Optional[bool],
        typer.Option("--label-events/--no-label-events", help="Emit separate label events."),
    ] = None,
    drift_day: Annotated[
        Optional[int],
        typer.Option(min=0, help="Add the 'stealth' fraud-pattern change from this day (0-based)."),
    ] = None,
    config: ConfigOption = None,
    kafka: Annotated[
        bool, typer.Option("--kafka", help="Produce to the configured Kafka topics.")
    ] = False,
    rate: Annotated[
        float,
        typer.Option(min=0.0, help="With --kafka: transactions per second, 0 = as fast as possible."),
    ] = 0.0,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar.")
    ] = True,
) -> None:
    """Simulate card transactions (and delayed labels) to a file or to Kafka."""
    from fraudstream.config.simulate import DriftChange
    from fraudstream.simulate import (
        infer_format,
        labels_path_for,
        produce,
        with_overrides,
        write_labels,
        write_transactions,
    )
    from fraudstream.simulate import simulate as run_simulation

    if out is None and not kafka:
        fail("nothing to write to: give --out FILE, --kafka, or both")
    if fmt is not None and fmt not in ("jsonl", "csv"):
        fail(f"--format must be jsonl or csv, not {fmt!r}")
    settings = settings_from(config)
    extra = None
    if drift_day is not None:
        extra = [DriftChange(day=drift_day, name="--drift-day", preset="stealth")]
    sim_settings = with_overrides(
        settings.simulator, extra_drift=extra, days=days, seed=seed, customers=customers,
        terminals=terminals, start_date=start_date, label_delay=label_delay,
        inline_labels=inline_labels, label_events=label_events,
    )
    write_label_file = out is not None and (labels_out is not None or sim_settings.label_events)
    if out is not None:
        infer_format(out, fmt)
    if write_label_file:
        labels_path = labels_out or labels_path_for(out)
        labels_fmt = fmt if fmt is not None or labels_out is None else None
        infer_format(labels_path, labels_fmt)
    with err.status(f"simulating {sim_settings.days} days ..."):
        sim = run_simulation(sim_settings)
    info = sim.summary()
    scen = info["by_scenario"]
    err.print(
        f"simulated {info['transactions']:,} transactions over {info['days']} days "
        f"(seed {info['seed']}): {info['frauds']:,} frauds ({100 * info['fraud_rate']:.2f}%; "
        f"by scenario amount {scen[1]:,}, terminal {scen[2]:,}, customer {scen[3]:,})",
        highlight=False,
    )
    if out is not None:
        write_transactions(sim, out, fmt)
        err.print(f"wrote transactions to {out}", highlight=False)
    if write_label_file:
        write_labels(sim, labels_path, labels_fmt)
        delay = sim_settings.label_delay.describe()
        err.print(f"wrote label events to {labels_path} (delay {delay})", highlight=False)
    if kafka:
        report = produce(sim, settings.kafka, rate=rate, progress=progress)
        topics = settings.kafka.topics
        err.print(
            f"produced {report.transactions:,} transactions to '{topics.transactions}' and "
            f"{report.labels:,} label events to '{topics.labels}' in {report.seconds:.1f} s "
            f"({report.events_per_second:,.0f} events/s)",
            highlight=False,
        )


@app.command()
def features(
    data: Annotated[Path, typer.Option("--data", "-d", help="Events: .csv, .jsonl or .parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Feature table: .csv or .parquet.")],
    config: ConfigOption = None,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Skip invalid rows (counted by reason) instead of stopping.")
    ] = False,
) -> None:
    """Write the feature table of a transaction file (the offline path)."""
    from fraudstream.features.offline import features_file

    settings = settings_from(config)
    summary = features_file(data, out, settings.features, drop_invalid=drop_invalid)
    err.print(
        f"{summary['rows_out']} rows x {summary['n_features']} features -> {summary['out']} "
        f"in {summary['seconds']} s",
        highlight=False,
    )
    for reason, count in sorted(summary["dropped"].items()):
        err.print(f"  dropped {count} row(s): {reason}", highlight=False)


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", "-d", help="events file (CSV, JSON Lines, Parquet) with labels")],
    out: Annotated[Path, typer.Option("--out", "-o", help="artifact directory to write")],
    config: ConfigOption = None,
    epochs: Annotated[Optional[int], typer.Option(help="override model.epochs")] = None,
    train_days: Annotated[Optional[float], typer.Option(help="override model.split.train_days")] = None,
    delay_days: Annotated[Optional[float], typer.Option(help="override model.split.delay_days")] = None,
    seed: Annotated[Optional[int], typer.Option(help="override model.seed")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing artifact")] = False,
    init_from: Annotated[Optional[Path], typer.Option(
        "--init-from", help="continue this artifact's model (weights, optimizer state, feature spec) on --data")] = None,
    restart: Annotated[bool, typer.Option(
        "--restart", help="discard the state an interrupted run left in OUT.training instead of resuming")] = False,
) -> None:
    """Train a model offline and save it as an artifact; rerun a killed run to resume it."""
    from fraudstream.models.commands import run_train

    settings = model_settings_from(config, epochs=epochs, seed=seed,
                                   **{"split.train_days": train_days, "split.delay_days": delay_days})
    run_train(data, settings, out, force=force, console=err, init_from=init_from, restart=restart)


@app.command()
def tune(
    data: Annotated[Path, typer.Option("--data", "-d", help="events file (CSV, JSON Lines, Parquet) with labels")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for the search, leaderboard and best artifact")],
    config: ConfigOption = None,
    strategy: Annotated[
        Optional[str], typer.Option(help="grid | random | bayesian | hyperband (default model.tuning.strategy)")
    ] = None,
    max_trials: Annotated[Optional[int], typer.Option(help="total trials, earlier runs included")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="override model.tuning.epochs (per trial)")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="discard a previous search in OUT")] = False,
    objective: Annotated[Optional[str], typer.Option(
        help="offline (validation AP) | prequential (replay through the online learner; default model.tuning.objective)")] = None,
    prequential_days: Annotated[Optional[float], typer.Option(
        help="override model.tuning.prequential_days: the prequential objective scores the last N days")] = None,
) -> None:
    """Tune hyperparameters (grid, random, Bayesian, Hyperband); rerun to resume."""
    from fraudstream.models.commands import run_tune

    if strategy is not None and strategy not in ("grid", "random", "bayesian", "hyperband"):
        fail(f"--strategy must be grid, random, bayesian or hyperband, not {strategy!r}")
    if max_trials is not None and max_trials < 1:
        fail("--max-trials must be at least 1")
    if objective is not None and objective not in ("offline", "prequential"):
        fail(f"--objective must be offline or prequential, not {objective!r}")
    settings = model_settings_from(config, **{"tuning.epochs": epochs, "tuning.objective": objective,
                                              "tuning.prequential_days": prequential_days})
    replay = None
    if settings.model.tuning.objective == "prequential":
        from functools import partial

        from fraudstream.daemon.replay_objective import ReplayObjective

        replay = partial(ReplayObjective, settings, data)
    run_tune(data, settings, out, strategy=strategy, max_trials=max_trials, restart=restart,
             console=err, replay=replay)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record: the demo's live view
    redirects it so that log lines print above the view instead of through it."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str) -> None:
    """One plain line per record, never wrapped: logs are read by grep and log shippers."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("absl", "tensorflow"):  # their warnings are about their own internals
        logging.getLogger(noisy).setLevel(max(logging.ERROR, logging.getLogger().level))
    # kafka-python logs every failed reconnect at ERROR: a routine broker restart would page
    # through log-based alerts. Its chatter shows only when debug logging is asked for.
    logging.getLogger("kafka").setLevel(logging.DEBUG if level.lower() == "debug" else logging.CRITICAL)


LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")]
ArtifactOption = Annotated[
    Optional[Path], typer.Option("--artifact", help="trained model artifact (used when no checkpoint exists)")
]


@app.command()
def run(
    config: ConfigOption = None,
    artifact: ArtifactOption = None,
    max_seconds: Annotated[Optional[float], typer.Option(help="stop after this long (default: run until signalled)")] = None,
    warm_from: Annotated[Optional[Path], typer.Option(
        "--warm-from", exists=True, dir_okay=False,
        help="history the stream continues (transactions with labels; CSV, JSON Lines or Parquet): fills the "
             "feature windows before the first event, unless a checkpoint is resumed")] = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the daemon: consume, score, learn from late labels, checkpoint. SIGTERM/SIGINT stop it cleanly."""
    setup_logging(log_level)
    settings = settings_from(config)
    from fraudstream.daemon.app import Daemon
    from fraudstream.monitoring.daemon_monitor import DaemonMonitor

    daemon = Daemon.open(settings, artifact, monitor=DaemonMonitor(settings), warm_from=warm_from)
    daemon.run(max_seconds=max_seconds)


@app.command()
def replay(
    data: Annotated[Path, typer.Option("--data", help="transactions: CSV, JSON Lines or Parquet")],
    out: Annotated[Path, typer.Option("--out", help="directory for scores.csv and the report")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="label events file")] = None,
    label_delay: Annotated[str, typer.Option(help="derive label events from the inline label column, this much later (e.g. 7d)")] = "7d",
    config: ConfigOption = None,
    artifact: ArtifactOption = None,
    drift_action: Annotated[
        Optional[str], typer.Option(help="none | checkpoint | adapt: what a drift detection does (default: monitoring.drift_action)")
    ] = None,
    start: Annotated[Optional[str], typer.Option(
        "--from", help="first day scored and learned (YYYY-MM-DD or RFC 3339, UTC); events before it only fill the "
                       "feature windows")] = None,
    report_from: Annotated[Optional[str], typer.Option(
        "--report-from", help="the report and its plot cover transactions from this time on (default: all scored)")] = None,
    warm_from: Annotated[Optional[Path], typer.Option(
        "--warm-from", exists=True, dir_okay=False,
        help="history the data continues (transactions with labels): fills the feature windows first, as run does")] = None,
    log_level: LogLevel = "warning",
) -> None:
    """Run the daemon's loop over files, as fast as possible, for backtests (prequential report, drift detections)."""
    setup_logging(log_level)
    settings = settings_from(config)
    start_s, report_s = _epoch_option("--from", start), _epoch_option("--report-from", report_from)
    if drift_action is not None:
        if drift_action not in ("none", "checkpoint", "adapt"):
            fail(f"--drift-action: expected none, checkpoint or adapt, got {drift_action!r}")
        settings = settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update={"drift_action": drift_action})})
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fraudstream.daemon.replay import run_replay, write_report
    from fraudstream.monitoring.daemon_monitor import DaemonMonitor

    with Progress(
        TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(), console=err, transient=False,
    ) as progress:
        task = progress.add_task("replay", total=None, info="")

        def on_batch(done: int, total: int | None, pipeline) -> None:
            progress.update(task, completed=done, total=total,
                            info=f"steps {pipeline.trainer.steps}, learned {pipeline.trainer.rows_learned}")

        monitor = DaemonMonitor(settings, serve=False)  # the daemon's drift detection and action
        result = run_replay(settings, data, labels, label_delay, artifact, on_batch, monitor,
                            start=start_s, warm_from=warm_from, scores_to=out / "scores.csv")[0]
        del monitor  # and with it the pipeline (collected now): the report needs its memory more
        gc.collect()
    report = write_report(result, out, since=report_s)
    for name in ("overall", "last_28_days"):
        m = report[name]
        typer.echo(f"{name}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    found: dict[str, int] = {}
    for d in result.detections:
        found[d["detector"]] = found.get(d["detector"], 0) + 1
    typer.echo(f"drift detections (action {settings.monitoring.drift_action}): "
               + (", ".join(f"{k}={v}" for k, v in found.items()) or "none"))
    typer.echo(f"rows not learned at the end (a part-filled mini-batch): {result.counters['rows_not_learned_partial_minibatch']}")
    typer.echo(f"wrote {out}/scores.csv, report.json, report.md, rolling_ap.png")


def _epoch_option(name: str, text: str | None) -> float | None:
    """A date or RFC 3339 time option as Unix seconds (UTC when it names no zone)."""
    if text is None:
        return None
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{name}: not a date or time: {text!r} (use YYYY-MM-DD or RFC 3339)")
    return (when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when).timestamp()


@app.command()
def serve(
    config: ConfigOption = None,
    artifact: ArtifactOption = None,
    checkpoint_dir: Annotated[
        Optional[Path], typer.Option("--checkpoint-dir", help="checkpoints to resume from and write (default: config)")
    ] = None,
    host: Annotated[Optional[str], typer.Option(help="bind address (default: monitoring.host, 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="port (default: monitoring.port)")] = None,
    log_level: LogLevel = "info",
) -> None:
    """Serve scoring over HTTP (/v1/score, /v1/labels, /v1/model, /metrics), no Kafka; Ctrl-C stops."""
    setup_logging(log_level)
    settings = settings_from(config)
    from fraudstream.daemon.checkpoint import CheckpointStore
    from fraudstream.daemon.engine import Engine
    from fraudstream.daemon.serve import ApiHost

    mon = settings.monitoring
    store = CheckpointStore(checkpoint_dir or settings.checkpoints.directory, settings.checkpoints.keep)
    pipeline = Engine.restore_or_create(settings, store, artifact)
    ApiHost(settings, pipeline, store).serve(host or mon.host, mon.port if port is None else port)


@app.command()
def demo(
    config: ConfigOption = None,
    bootstrap: Annotated[Optional[str], typer.Option(help="use this broker instead of starting dev/kafka")] = None,
    port: Annotated[int, typer.Option(help="port of the local broker")] = 9092,
    customers: Annotated[int, typer.Option(min=10)] = 2000,
    history_days: Annotated[int, typer.Option(min=14, help="simulated days to train the bootstrap model")] = 56,
    stream_days: Annotated[int, typer.Option(min=1, help="simulated days streamed through the daemon")] = 21,
    rate: Annotated[float, typer.Option(min=0, help="transactions per second (0 = as fast as possible)")] = 2000.0,
    workdir: Annotated[Path, typer.Option(help="artifacts and checkpoints of each run")] = Path(".demo"),
    keep_broker: Annotated[bool, typer.Option(help="leave the broker running afterwards")] = False,
    log_level: LogLevel = "warning",
) -> None:
    """Start a local broker, simulated traffic and the daemon, with live progress."""
    setup_logging(log_level)
    settings = settings_from(config)
    from fraudstream.demo import run_demo

    console = Console(soft_wrap=True)
    try:
        stats = run_demo(settings, console, bootstrap, port, customers, customers * 2, history_days,
                         stream_days, rate, workdir, keep_broker)
    except KeyboardInterrupt:
        console.print("stopped by Ctrl-C")
        return
    console.print("[bold]summary[/]: " + ", ".join(f"{k} {v}" for k, v in stats.items()))


CheckpointDir = Annotated[Optional[Path], typer.Option("--dir", help="checkpoint directory (default: config)")]


def _checkpoint_store(directory: Path | None, config: Path | None):
    from fraudstream.daemon.checkpoint import CheckpointStore

    settings = settings_from(config)
    return CheckpointStore(directory or settings.checkpoints.directory, settings.checkpoints.keep)


@checkpoints_app.command("list")
def checkpoints_list(directory: CheckpointDir = None, config: ConfigOption = None) -> None:
    """List checkpoints, newest first, each verified against its manifest."""
    from rich.table import Table

    table = Table("checkpoint", "created (UTC)", "model version", "rows learned", "reason", "valid")
    for info in _checkpoint_store(directory, config).list():
        meta = info.meta
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.created_at)) if info.valid else "-"
        table.add_row(
            info.name, created, str(meta.get("model_version", "-")), str(meta.get("rows_learned", "-")),
            str(meta.get("reason", "-")), "yes" if info.valid else f"[red]no[/]: {info.problem}",
        )
    Console(soft_wrap=True).print(table)


@checkpoints_app.command("show")
def checkpoints_show(
    name: Annotated[Optional[str], typer.Argument(help="checkpoint name (default: newest valid)")] = None,
    directory: CheckpointDir = None,
    config: ConfigOption = None,
) -> None:
    """Print one checkpoint's manifest metadata and files."""
    from fraudstream.daemon.checkpoint import CheckpointCorrupt, verify_manifest

    store = _checkpoint_store(directory, config)
    if name is None:
        info = store.latest_valid()
        if info is None:
            fail(f"no valid checkpoint in {store.directory}")
        path = info.path
    else:
        path = store.directory / name
    try:
        manifest = verify_manifest(path)
    except CheckpointCorrupt as exc:
        fail(str(exc))
    typer.echo(yaml.safe_dump({"checkpoint": path.name, **manifest}, sort_keys=False))


@checkpoints_app.command("prune")
def checkpoints_prune(
    keep: Annotated[int, typer.Option(min=1, help="newest checkpoints to keep")] = 3,
    directory: CheckpointDir = None,
    config: ConfigOption = None,
) -> None:
    """Delete old checkpoints (the newest KEEP, the best and tagged ones stay)."""
    removed = _checkpoint_store(directory, config).prune(keep)
    typer.echo(f"removed {len(removed)} checkpoint(s)")


def _fmt_ap(value) -> str:
    return "-" if value is None else f"{value:.4f}"


@model_app.command("list")
def model_list(directory: CheckpointDir = None, config: ConfigOption = None) -> None:
    """List the model versions kept in checkpoints: which one serves, each one's metrics."""
    from rich.table import Table

    from fraudstream.daemon.lifecycle import read_ack, read_request, stored_versions

    store = _checkpoint_store(directory, config)
    versions = stored_versions(store)
    if not versions:
        fail(f"no valid checkpoint in {store.directory}")
    newest = store.latest_valid()
    lifecycle = newest.meta.get("lifecycle") if newest is not None else None
    serving = lifecycle["champion_version"] if lifecycle else newest.meta.get("model_version")
    table = Table("version", "role", "checkpoints", "champion AP", "challenger AP", "rows",
                  caption="the champion serves; AP over the last labelled rows, as of that checkpoint")
    for version in sorted(versions, reverse=True):
        held = versions[version]
        role = "champion" if version == serving else (
            "challenger" if lifecycle and version == newest.meta.get("model_version") else "")
        info, _ = held[0]
        window = (info.meta.get("lifecycle") or {}).get("window") or {}
        table.add_row(
            str(version), role, ", ".join(sorted({i.name for i, _ in held})),
            _fmt_ap((window.get("champion") or {}).get("average_precision")),
            _fmt_ap((window.get("challenger") or {}).get("average_precision")),
            str(window.get("rows", "-")),
        )
    console = Console(soft_wrap=True)
    console.print(table)
    if lifecycle:
        console.print(f"promotions {lifecycle['promotions']}, rollbacks {lifecycle['rollbacks']} "
                      f"(as of {newest.name})", highlight=False)
        for event in lifecycle.get("last_events", []):
            console.print(f"  {event['at']} {event['action']} ({event['trigger']}): champion "
                          f"{event['champion_before']} -> {event['champion_after']}, challenger "
                          f"{event['challenger_version']}; {event['reason']}", highlight=False)
    else:
        console.print("lifecycle off in the newest checkpoint: the learner serves its own scores", highlight=False)
    try:
        waiting = read_request(store.directory)
    except FraudstreamError as exc:
        waiting = None
        console.print(f"[red]unreadable request:[/] {exc}", highlight=False)
    if waiting is not None:
        console.print(f"waiting request: {waiting.describe()} ({waiting.requested_at})", highlight=False)
    ack = read_ack(store.directory)
    if ack is not None:
        console.print(f"last request: {ack.get('action')} to {ack.get('to_version') or 'the challenger'}: "
                      f"{ack.get('status')} at {ack.get('handled_at')} ({ack.get('message')})", highlight=False)


def _request_model_change(action: str, to: int | None, directory: Path | None, config: Path | None,
                          wait: float) -> None:
    from fraudstream.daemon.lifecycle import read_ack, stored_versions, write_request

    store = _checkpoint_store(directory, config)
    if to is not None and to not in stored_versions(store):
        known = ", ".join(map(str, sorted(stored_versions(store)))) or "none"
        fail(f"model version {to} is in no valid checkpoint in {store.directory}; known versions: {known}")
    request = write_request(store.directory, action, to)
    typer.echo(f"requested: {request.describe()} (a running daemon applies it within a second or so; "
               "otherwise the next start does)")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        ack = read_ack(store.directory)
        if ack is not None and ack.get("id") == request.id:
            typer.echo(f"{ack['status']}: {ack['message']}")
            if ack["status"] != "applied":
                raise typer.Exit(1)
            return
        time.sleep(0.2)
    if wait > 0:
        fail(f"no answer within {wait:g}s: is a daemon running on {store.directory}?", code=1)


WaitOption = Annotated[float, typer.Option("--wait", min=0.0, help="seconds to wait for the daemon's answer (0: don't)")]


@model_app.command("promote")
def model_promote(
    to: Annotated[Optional[int], typer.Option("--to", help="version to serve (default: the current challenger)")] = None,
    directory: CheckpointDir = None,
    config: ConfigOption = None,
    wait: WaitOption = 0.0,
) -> None:
    """Serve the challenger now, or a version kept in a checkpoint (the learner keeps learning)."""
    _request_model_change("promote", to, directory, config, wait)


@model_app.command("rollback")
def model_rollback(
    to: Annotated[int, typer.Option("--to", help="version to serve and to restart learning from")],
    directory: CheckpointDir = None,
    config: ConfigOption = None,
    wait: WaitOption = 0.0,
) -> None:
    """Serve a version kept in a checkpoint and reset the learner to it."""
    _request_model_change("rollback", to, directory, config, wait)
