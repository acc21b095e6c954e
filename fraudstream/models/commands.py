"""What ``fraudstream train`` and ``fraudstream tune`` do, behind their argument handling.

Reads the events with the feature module's offline reader, runs training or the search,
shows progress with Rich, prints the validation metrics and writes the outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fraudstream.config.model import ModelParams

METRIC_LABELS = {
    "average_precision": "average precision",
    "roc_auc": "ROC AUC",
}


def with_model_overrides(settings: Any, **overrides: Any) -> Any:
    """``settings`` with some ``model`` fields replaced (validated), ``None`` meaning keep."""
    update = {k: v for k, v in overrides.items() if v is not None}
    if not update:
        return settings
    model = settings.model.model_dump()
    for key, value in update.items():
        section, _, field = key.rpartition(".")
        target = model
        for part in filter(None, section.split(".")):
            target = target[part]
        target[field] = value
    return settings.model_copy(update={"model": ModelParams.model_validate(model)})


def _read(data: Path, settings: Any, console: Console) -> Any:
    from fraudstream.features import read_events

    with console.status(f"reading {data}"):
        events = read_events(data, settings.features.fields)
    console.print(f"read {len(events):,} events from {data}")
    return events


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        label = METRIC_LABELS.get(name, name.replace("_at_", "@").replace("_", " "))
        table.add_row(label, f"{value:.4f}")
    return table


def _days(start: str, end: str) -> str:
    """A half-open ``[start, end)`` interval as the days it covers, both ends included:
    ``2018-04-01 to 2018-05-31`` for ``[2018-04-01, 2018-06-01)``."""
    import pandas as pd

    last = pd.Timestamp(end) - pd.Timedelta(microseconds=1)
    return f"{start[:10]} to {last.isoformat()[:10]}"


def run_train(data: Path, settings: Any, out: Path, *, force: bool, console: Console,
              init_from: Path | None = None, restart: bool = False) -> dict[str, Any]:
    """Train, save the artifact, print and save the validation metrics; returns a summary."""
    from fraudstream.models.epochs import training_dir
    from fraudstream.models.progress import RichProgress
    from fraudstream.models.training import train_offline

    events = _read(data, settings, console)
    if (training_dir(out) / "state.json").is_file() and not restart:
        console.print(f"resuming the training state in {training_dir(out)}")
    report = train_offline(
        events, settings, out, callbacks=[RichProgress(console)], overwrite=force,
        init_from=init_from, restart=restart,
    )
    if report.resumed_after:
        console.print(f"resumed after epoch {report.resumed_after} (its state was in {training_dir(out)})")
    if report.initial_metrics is not None:
        console.print(metrics_table(f"{init_from} before training, on this validation", report.initial_metrics))
    d = report.data
    split = d["split"]
    console.print(
        f"train {_days(split['train_start'], split['train_end'])} "
        f"({d['train_rows']:,} rows, {d['train_frauds']:,} frauds), gap {d['delay_days']:g} days, "
        f"validation {_days(split['valid_start'], split['valid_end'])} ({d['valid_rows']:,} rows, "
        f"{d['valid_frauds']:,} frauds); best epoch {report.best_epoch + 1} of {report.epochs_run}"
    )
    console.print(metrics_table("validation", report.metrics))
    console.print(f"artifact written to {out} (metrics in {out / 'metadata.json'})")
    return {"artifact": str(out), "metrics": report.metrics, "data": d}


def run_tune(
    data: Path,
    settings: Any,
    out: Path,
    *,
    strategy: str | None,
    max_trials: int | None,
    restart: bool,
    console: Console,
    replay: Any = None,
) -> dict[str, Any]:
    """Run or resume the search; print the leaderboard's head and the best trial.

    ``replay``: the prequential objective's factory (see :func:`tune_offline`)."""
    from fraudstream.models.progress import RichProgress
    from fraudstream.models.tuning import tune_offline

    events = _read(data, settings, console)
    report = tune_offline(
        events,
        settings,
        out,
        strategy=strategy,
        max_trials=max_trials,
        restart=restart,
        progress=lambda prefix: RichProgress(console, prefix=prefix),
        replay=replay,
    )
    if report.trials_before:
        console.print(
            f"resumed: {report.trials_before} trials were already complete, "
            f"{report.trials_run_now} ran now"
        )
    table = Table(title=f"leaderboard ({report.strategy}), top 10")
    shown = list(report.leaderboard[0].metrics)[:3] if report.leaderboard else []
    for col in ("rank", "trial", *(name.replace("_", " ") for name in shown), "epoch"):
        table.add_column(col, justify="right")
    for row in report.leaderboard[:10]:
        m = row.metrics
        table.add_row(
            str(row.rank),
            row.trial_id,
            *("" if m[k] is None else f"{m[k]:.4f}" for k in shown),
            "" if row.best_epoch is None else str(row.best_epoch),
        )
    console.print(table)
    best = report.leaderboard[0]
    console.print(f"best trial {report.best_trial}: {best.hyperparameters}")
    console.print(metrics_table("best trial, validation", report.best_metrics))
    if report.training is not None:
        console.print("run the best artifact with these online settings (config section training:): "
                      + ", ".join(f"{k}: {v}" for k, v in report.training.items()))
    console.print(
        f"leaderboard: {out / 'leaderboard.csv'}, {out / 'leaderboard.md'}; "
        f"best artifact: {report.artifact}"
    )
    return {
        "best_trial": report.best_trial,
        "metrics": report.best_metrics,
        "trials_run_now": report.trials_run_now,
        "trials_before": report.trials_before,
        "training": report.training,
    }
