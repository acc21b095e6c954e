"""The ``fraudstream`` command. Argument handling only: each command calls into a package."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
import yaml
from rich.console import Console

from fraudstream.config import Settings, load_settings, masked_dump
from fraudstream.errors import ConfigInvalid, FraudstreamError

app = typer.Typer(
    name="fraudstream",
    help="Score card transactions for fraud as they stream through Kafka, and keep learning "
    "from the labels that arrive later.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="List, show or prune checkpoints.", no_args_is_help=True)
model_app = typer.Typer(help="Model versions: list, promote, roll back.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(model_app, name="model")

err = Console(stderr=True)

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


def not_built(command: str) -> NoReturn:
    fail(f"'fraudstream {command}' is not built yet", code=3)


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
def simulate() -> None:
    """Simulate card transactions (and delayed labels) to a file or to Kafka."""
    not_built("simulate")


@app.command()
def features() -> None:
    """Write the feature table of a transaction file (the offline path)."""
    not_built("features")


@app.command()
def train() -> None:
    """Train a model offline and save it as an artifact."""
    not_built("train")


@app.command()
def tune() -> None:
    """Tune hyperparameters (grid, random, Bayesian, Hyperband)."""
    not_built("tune")


@app.command()
def run() -> None:
    """Run the daemon: consume, score, learn from late labels, checkpoint."""
    not_built("run")


@app.command()
def replay() -> None:
    """Run the daemon's loop over files, as fast as possible, for backtests."""
    not_built("replay")


@app.command()
def serve() -> None:
    """Serve scoring over HTTP from a checkpoint or an artifact."""
    not_built("serve")


@app.command()
def demo() -> None:
    """Start a local broker, simulated traffic and the daemon, with live progress."""
    not_built("demo")


@checkpoints_app.command("list")
def checkpoints_list() -> None:
    """List checkpoints, newest first."""
    not_built("checkpoints list")


@model_app.command("list")
def model_list() -> None:
    """List model versions."""
    not_built("model list")


def main() -> None:  # pragma: no cover - thin wrapper for `python -m`
    try:
        app(prog_name="fraudstream")
    except FraudstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
