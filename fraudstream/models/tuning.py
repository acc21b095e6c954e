"""Hyperparameter search with KerasTuner over the search space in ``model.tuning``.

Every trial uses the same time split and normaliser as ``fraudstream train`` and is scored
by exact validation average precision (``val_ap``, computed in numpy at each epoch end and
declared to KerasTuner as ``Objective("val_ap", "max")``). The search lives in
``OUT/search/<strategy>/``; running the same command again reloads it and only runs the
trials still missing, including one that was cut off mid-way.

Outputs in ``OUT``: ``leaderboard.csv``, ``leaderboard.md`` and ``best/`` (an artifact of
the best trial's best epoch).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fraudstream.models.backend import keras  # before keras_tuner, which imports TensorFlow
import keras_tuner

from fraudstream.config.model import ModelParams, SearchSpace, Strategy
from fraudstream.models.builder import build_model
from fraudstream.models.exceptions import TuningFailed
from fraudstream.models.scorer import Scorer
from fraudstream.models.training import (
    Dataset,
    EvalSet,
    ValidationMetrics,
    feature_state_of,
    imbalance_fit_args,
    prepare_dataset,
)

OBJECTIVE = keras_tuner.Objective("val_ap", "max")
SPACE_FIELDS = tuple(SearchSpace.model_fields)
REPORTED = ("val_ap", "val_roc_auc", "val_card_precision", "loss")
RULE_WIDTH = 0
"""``first_width`` value standing for "input-size rule" in trial hyperparameters."""


def _choices(name: str, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        v = RULE_WIDTH if (name == "first_width" and v is None) else v
        if v not in out:
            out.append(v)
    return out


def params_from_values(base: ModelParams, values: dict[str, Any]) -> ModelParams:
    """``base`` with the searched fields replaced by a trial's values."""
    update = {name: values[name] for name in SPACE_FIELDS if name in values}
    if "first_width" in update and update["first_width"] == RULE_WIDTH:
        update["first_width"] = None
    return ModelParams.model_validate({**base.model_dump(), **update})


class FraudHyperModel(keras_tuner.HyperModel):
    """Builds and fits one trial's network from the search space's choices."""

    def __init__(
        self,
        base: ModelParams,
        n_inputs: int,
        valid: EvalSet,
        progress: Callable[[str], keras.callbacks.Callback] | None = None,
    ):
        super().__init__(name="fraudstream")
        self.base = base
        self.n_inputs = n_inputs
        self.valid = valid
        self.progress = progress

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        space = self.base.tuning.search_space
        return {name: hp.Choice(name, _choices(name, getattr(space, name))) for name in SPACE_FIELDS}

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        params = params_from_values(self.base, self.declare(hp))
        keras.utils.set_random_seed(params.seed)
        return build_model(params, self.n_inputs, params.seed)

    def fit(self, hp, model, x, y, callbacks=(), **kwargs):  # noqa: D401 - KerasTuner API
        params = params_from_values(self.base, self.declare(hp))
        kwargs.pop("verbose", None)
        kwargs.pop("batch_size", None)
        kwargs.setdefault("epochs", params.tuning.epochs)
        X, yy, class_weight = imbalance_fit_args(params, x, y, params.seed)
        cbs: list[keras.callbacks.Callback] = [ValidationMetrics(self.valid, params.top_k)]
        if params.early_stopping_patience > 0:
            cbs.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_ap", mode="max", patience=params.early_stopping_patience
                )
            )
        cbs.extend(callbacks)
        if self.progress is not None:
            cbs.append(self.progress("trial "))
        return model.fit(
            X,
            yy,
            batch_size=params.batch_size,
            class_weight=class_weight,
            shuffle=True,
            callbacks=cbs,
            verbose=0,
            **kwargs,
        )


# -- the search ----------------------------------------------------------------------------


@dataclass
class LeaderboardRow:
    rank: int
    trial_id: str
    status: str
    metrics: dict[str, float | None]
    best_epoch: int | None
    hyperparameters: dict[str, Any]


@dataclass
class TuneReport:
    strategy: str
    best_trial: str
    best_metrics: dict[str, float]
    leaderboard: list[LeaderboardRow]
    trials_before: int
    trials_run_now: int
    out: Path
    artifact: Path | None


def _fingerprint(data: Dataset, base: ModelParams, strategy: str) -> str:
    """Identity of a search: space, fixed params, strategy and data shape. A resumed search
    must match it, otherwise old trials would be ranked against incomparable new ones."""
    fixed = base.model_dump(mode="json")
    fixed["tuning"].pop("max_trials", None)  # the budget may grow between runs
    fixed["tuning"].pop("strategy", None)  # the project directory is per strategy already
    blob = json.dumps(
        {
            "params": fixed,
            "strategy": strategy,
            "train": [int(data.X_train.shape[0]), int(data.X_train.shape[1]), float(data.y_train.sum())],
            "valid": [int(data.valid.X.shape[0]), float(data.valid.y.sum())],
            "features": data.feature_names,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def make_tuner(
    strategy: Strategy,
    hypermodel: FraudHyperModel,
    params: ModelParams,
    max_trials: int,
    directory: Path,
    overwrite: bool,
) -> keras_tuner.Tuner:
    common = dict(
        objective=OBJECTIVE,
        seed=params.seed,
        directory=str(directory),
        project_name=strategy,
        overwrite=overwrite,
        executions_per_trial=params.tuning.executions_per_trial,
    )
    if strategy == "grid":
        return keras_tuner.GridSearch(hypermodel, max_trials=max_trials, **common)
    if strategy == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if strategy == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    tuner = keras_tuner.Hyperband(
        hypermodel,
        max_epochs=params.tuning.epochs,
        factor=params.tuning.hyperband_factor,
        **common,
    )
    # Hyperband has no trial budget of its own; the base oracle honours this attribute.
    tuner.oracle.max_trials = max_trials
    return tuner


def _value(trial: keras_tuner.engine.trial.Trial, name: str) -> float | None:
    if trial.metrics.exists(name):
        value = trial.metrics.get_last_value(name)
        return None if value is None else float(value)
    return None


def leaderboard(tuner: keras_tuner.Tuner) -> list[LeaderboardRow]:
    """Every trial, best validation AP first; trials without a score (failed) last."""
    trials = list(tuner.oracle.trials.values())

    def key(t: Any) -> tuple[int, float, str]:
        score = t.score if t.score is not None and math.isfinite(t.score) else None
        return (0 if score is not None else 1, -(score or 0.0), t.trial_id)

    rows = []
    for rank, trial in enumerate(sorted(trials, key=key), start=1):
        values = dict(trial.hyperparameters.values)
        if values.get("first_width") == RULE_WIDTH:
            values["first_width"] = None
        rows.append(
            LeaderboardRow(
                rank=rank,
                trial_id=trial.trial_id,
                status=str(trial.status),
                metrics={name: _value(trial, name) for name in REPORTED},
                best_epoch=None
                if trial.best_step is None or trial.score is None
                else int(trial.best_step) + 1,
                hyperparameters={k: values.get(k) for k in SPACE_FIELDS},
            )
        )
    return rows


def _fmt(value: Any) -> str:
    if value is None:  # only first_width can be None: the input-size rule
        return "rule"
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.1e}"
    return str(value)


def write_leaderboard(rows: Sequence[LeaderboardRow], out: Path, strategy: str) -> None:
    """``leaderboard.csv`` (every value, machine-readable) and ``leaderboard.md``."""
    metric_cols = list(REPORTED)
    header = ["rank", "trial_id", "status", *metric_cols, "best_epoch", *SPACE_FIELDS]
    tmp = out / ".leaderboard.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in rows:
            writer.writerow(
                [r.rank, r.trial_id, r.status]
                + ["" if r.metrics[m] is None else repr(r.metrics[m]) for m in metric_cols]
                + ["" if r.best_epoch is None else r.best_epoch]
                + ["" if r.hyperparameters[k] is None else r.hyperparameters[k] for k in SPACE_FIELDS]
            )
    tmp.replace(out / "leaderboard.csv")
    best = rows[0] if rows and rows[0].metrics["val_ap"] is not None else None
    lines = [f"# Tuning leaderboard ({strategy})", ""]
    if best is not None:
        lines += [f"Best trial: **{best.trial_id}** (val_ap {best.metrics['val_ap']:.4f}).", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        cells = [str(r.rank), r.trial_id, r.status]
        cells += ["" if r.metrics[m] is None else f"{r.metrics[m]:.4f}" for m in metric_cols]
        cells += ["" if r.best_epoch is None else str(r.best_epoch)]
        cells += [_fmt(r.hyperparameters[k]) for k in SPACE_FIELDS]
        lines.append("| " + " | ".join(cells) + " |")
    (out / ".leaderboard.md.tmp").write_text("\n".join(lines) + "\n")
    (out / ".leaderboard.md.tmp").replace(out / "leaderboard.md")


def run_search(
    data: Dataset,
    params: ModelParams,
    out: Path,
    *,
    strategy: Strategy | None = None,
    max_trials: int | None = None,
    restart: bool = False,
    feature_spec: Any = None,
    feature_state: dict[str, Any] | None = None,
    progress: Callable[[str], keras.callbacks.Callback] | None = None,
    verbose: int = 1,
) -> TuneReport:
    """Run (or resume) the search on prepared data, write the leaderboard and best artifact.

    ``max_trials`` counts every trial of the search, earlier runs included: a search that
    finished 2 trials and is rerun with 4 runs 2 more. For ``grid`` it caps the enumeration,
    which otherwise covers the whole Cartesian product of the space exactly once.
    """
    from fraudstream.models.artifact import save_artifact

    strategy = strategy or params.tuning.strategy
    space = params.tuning.search_space
    if max_trials is None:
        max_trials = space.grid_size() if strategy == "grid" else params.tuning.max_trials
    if strategy == "grid":
        max_trials = min(max_trials, space.grid_size())
    out = Path(out)
    search_dir = out / "search"
    project = search_dir / strategy
    stamp = project / "fraudstream_search.json"
    fingerprint = _fingerprint(data, params, strategy)
    if restart and project.exists():
        shutil.rmtree(project)
    if stamp.exists():
        previous = json.loads(stamp.read_text()).get("fingerprint")
        if previous != fingerprint:
            raise TuningFailed(
                f"{project} holds a search over other data or another search space; "
                "rerun with --restart to discard it, or choose another --out"
            )
    elif project.exists() and any(project.iterdir()):
        raise TuningFailed(f"{project} exists but was not written by fraudstream tune")
    project.mkdir(parents=True, exist_ok=True)

    hypermodel = FraudHyperModel(params, data.X_train.shape[1], data.valid, progress)
    tuner = make_tuner(strategy, hypermodel, params, max_trials, search_dir, overwrite=False)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "strategy": strategy}) + "\n")
    done_before = {
        t.trial_id for t in tuner.oracle.trials.values() if str(t.status) == "COMPLETED"
    }
    try:
        tuner.search(data.X_train, data.y_train, verbose=verbose)
    except RuntimeError as exc:
        # KerasTuner stops after max_consecutive_failed_trials failures with a RuntimeError.
        raise TuningFailed(f"{exc} (tracebacks in {project}/trial_*/trial.json)") from exc
    rows = leaderboard(tuner)
    done_after = {r.trial_id for r in rows if r.status == "COMPLETED"}
    write_leaderboard(rows, out, strategy)
    if not rows or rows[0].metrics["val_ap"] is None:
        raise TuningFailed(
            f"no trial completed; see the trial messages under {project} "
            "(KerasTuner records each failure's traceback in trial.json)"
        )
    best = rows[0]
    best_trial = tuner.oracle.get_trial(best.trial_id)
    with warnings.catch_warnings():
        # The trial checkpoint holds optimiser slots a freshly built model has not created
        # yet; Keras says it skips them. Only the weights matter for the artifact.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(best_trial)
    # Fresh optimiser slots (zero moments), so the saved archive's optimiser matches what a
    # compiled model expects when the artifact is loaded and trained online.
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    best_params = params_from_values(params, best_trial.hyperparameters.values)
    scores = Scorer(model).score_many(data.valid.X)
    metrics = data.valid.metrics(scores, params.top_k)
    artifact = None
    if feature_spec is not None and feature_state is not None:
        artifact = save_artifact(
            out / "best",
            model,
            params=best_params,
            feature_spec=feature_spec,
            feature_state=feature_state,
            feature_names=data.feature_names,
            metrics=metrics,
            data=dict(data.info, best_epoch=best.best_epoch),
            drift_reference=data.drift_reference(),
            extra={"tuning": {"strategy": strategy, "trial_id": best.trial_id, "trials": len(rows)}},
            overwrite=True,
        )
    return TuneReport(
        strategy=strategy,
        best_trial=best.trial_id,
        best_metrics=metrics,
        leaderboard=rows,
        trials_before=len(done_before),
        trials_run_now=len(done_after - done_before),
        out=out,
        artifact=artifact,
    )


def tune_offline(
    events: Any,
    settings: Any,
    out: Path,
    *,
    strategy: Strategy | None = None,
    max_trials: int | None = None,
    restart: bool = False,
    progress: Callable[[str], keras.callbacks.Callback] | None = None,
    pipeline_factory: Callable[[Any], Any] | None = None,
    verbose: int = 1,
) -> TuneReport:
    """What ``fraudstream tune`` runs: the train command's data preparation, then the search."""
    params: ModelParams = settings.model
    data = prepare_dataset(events, settings.features, params.split, pipeline_factory)
    return run_search(
        data,
        params,
        out,
        strategy=strategy,
        max_trials=max_trials,
        restart=restart,
        feature_spec=settings.features,
        feature_state=feature_state_of(data.pipeline),
        progress=progress,
        verbose=verbose,
    )


__all__ = [
    "FraudHyperModel",
    "LeaderboardRow",
    "OBJECTIVE",
    "TuneReport",
    "TuningFailed",
    "leaderboard",
    "make_tuner",
    "params_from_values",
    "run_search",
    "tune_offline",
    "write_leaderboard",
]
