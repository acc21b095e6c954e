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

import pandas as pd

from fraudstream.models.backend import keras  # before keras_tuner, which imports TensorFlow
import keras_tuner
from keras_tuner.src import utils as keras_tuner_utils

from fraudstream.config.model import ModelParams, OnlineSearchSpace, SearchSpace, SplitParams, Strategy
from fraudstream.durable import write_json
from fraudstream.models.builder import build_model
from fraudstream.models.exceptions import TrainingDataInvalid, TuningFailed
from fraudstream.models.scorer import Scorer
from fraudstream.models.training import (
    Dataset,
    EvalSet,
    ValidationMetrics,
    feature_state_of,
    fit_model,
    TimeSplit,
    _timestamps,
    imbalance_fit_args,
    prepare_dataset,
    time_split,
)


def _save_json_atomically(path: str, obj: Any) -> str:
    """KerasTuner's ``save_json`` writes its files (``oracle.json``, each ``trial.json``) in
    place, so a search killed mid-write leaves a truncated file that stops the resumed search
    with a JSON error. Written to a temporary name, fsynced and renamed, a file is whole or old."""
    write_json(Path(path), obj, indent=None)
    return json.dumps(obj)


keras_tuner_utils.save_json = _save_json_atomically  # every KerasTuner file write goes through it

OBJECTIVE = keras_tuner.Objective("val_ap", "max")
PREQUENTIAL_OBJECTIVE = keras_tuner.Objective("prequential_ap", "max")
SPACE_FIELDS = tuple(SearchSpace.model_fields)
ONLINE_FIELDS = tuple(OnlineSearchSpace.model_fields)
#: the online space's fields that are ``training:`` settings (the others are ``model:`` ones)
TRAINING_FIELDS = ("minibatch_size", "replay_ratio", "replay_fraud_share", "replay_steps")
REPORTED = ("val_ap", "val_roc_auc", "val_card_precision", "loss")
PREQUENTIAL_REPORTED = ("prequential_ap", "prequential_roc_auc", "prequential_card_precision", "val_ap")
#: Stand-ins for ``null`` in trial hyperparameters, which KerasTuner choices cannot hold:
#: ``first_width`` 0 is the input-size rule, ``fraud_weight`` 0 the balanced weight.
NULL_CHOICE = {"first_width": 0, "fraud_weight": 0.0}
RULE_WIDTH = NULL_CHOICE["first_width"]

#: ``evaluate(model, params, online)``: a trained trial's objective metrics, given its
#: ``training:`` settings (``online``); the model may be changed by it (it keeps learning).
Evaluate = Callable[[keras.Model, ModelParams, dict[str, Any]], dict[str, float]]


def _choices(name: str, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        v = NULL_CHOICE.get(name, v) if v is None else v
        if v not in out:
            out.append(v)
    return out


def _with_nulls(values: dict[str, Any]) -> dict[str, Any]:
    return {k: None if k in NULL_CHOICE and v == NULL_CHOICE[k] else v for k, v in values.items()}


def params_from_values(base: ModelParams, values: dict[str, Any]) -> ModelParams:
    """``base`` with the searched fields replaced by a trial's values."""
    update = {name: v for name, v in _with_nulls(values).items()
              if name in SPACE_FIELDS or (name in ONLINE_FIELDS and name not in TRAINING_FIELDS)}
    return ModelParams.model_validate({**base.model_dump(), **update})


def online_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The ``training:`` settings among a trial's values."""
    return {name: values[name] for name in TRAINING_FIELDS if name in values}


class FraudHyperModel(keras_tuner.HyperModel):
    """Builds and fits one trial's network from the search space's choices."""

    def __init__(
        self,
        base: ModelParams,
        n_inputs: int,
        valid: EvalSet,
        progress: Callable[[str], keras.callbacks.Callback] | None = None,
        online: bool = False,
    ):
        super().__init__(name="fraudstream")
        self.base = base
        self.n_inputs = n_inputs
        self.valid = valid
        self.progress = progress
        self.online = online  # the online space is searched too (the prequential objective)

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        spaces = [(self.base.tuning.search_space, SPACE_FIELDS)]
        if self.online:
            spaces.append((self.base.tuning.online_space, ONLINE_FIELDS))
        return {name: hp.Choice(name, _choices(name, getattr(space, name))) for space, names in spaces for name in names}

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


class _ReplayScoredTrials:
    """Mixed into a KerasTuner tuner, ahead of it: a trial is the ``train`` command's fit
    (its best epoch by validation AP), then ``evaluate`` scores it (the prequential replay).

    KerasTuner's oracle still proposes the values (grid, random, Bayesian, Hyperband, whose
    ``tuner/epochs`` is the offline epochs here) and records each result in the project
    directory, so an interrupted search resumes as the offline one does.
    """

    hypermodel: FraudHyperModel
    data: Dataset
    evaluate: Evaluate

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        hm = self.hypermodel
        hp = trial.hyperparameters
        values = hm.declare(hp)
        params = params_from_values(hm.base, values)
        params = params.model_copy(update={"epochs": int(hp.values.get("tuner/epochs", params.tuning.epochs))})
        model = hm.build(hp)
        callbacks = [hm.progress("trial ")] if hm.progress is not None else []
        fit = fit_model(params, self.data.X_train, self.data.y_train, self.data.valid, callbacks=callbacks, model=model)
        self.save_model(trial.trial_id, fit.model)  # before the replay, which keeps training it
        metrics = self.evaluate(fit.model, params, online_settings(values))
        return {**metrics, "val_ap": fit.metrics["average_precision"],
                "val_roc_auc": fit.metrics["roc_auc"], "best_epoch": float(fit.best_epoch + 1)}

    def _weights(self, trial_id: str) -> str:
        return str(Path(self.get_trial_dir(trial_id)) / "offline.weights.h5")

    def save_model(self, trial_id: str, model: keras.Model, step: int = 0) -> None:
        model.save_weights(self._weights(trial_id))

    def load_model(self, trial: Any) -> keras.Model:
        model = self.hypermodel.build(trial.hyperparameters)
        model.load_weights(self._weights(trial.trial_id))
        return model


_TUNERS = {
    "grid": keras_tuner.GridSearch,
    "random": keras_tuner.RandomSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}


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
    training: dict[str, Any] | None = None  # the best trial's online settings (prequential)


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
    data: Dataset | None = None,
    evaluate: Evaluate | None = None,
) -> keras_tuner.Tuner:
    """KerasTuner's tuner for ``strategy``; with ``evaluate``, one whose trials are scored
    by it (see :class:`_ReplayScoredTrials`), in its own project directory."""
    cls = _TUNERS[strategy]
    if evaluate is not None:
        cls = type(f"ReplayScored{cls.__name__}", (_ReplayScoredTrials, cls), {})
    common: dict[str, Any] = dict(
        objective=OBJECTIVE if evaluate is None else PREQUENTIAL_OBJECTIVE,
        seed=params.seed,
        directory=str(directory),
        project_name=project_name(strategy, evaluate is not None),
        overwrite=overwrite,
        executions_per_trial=params.tuning.executions_per_trial if evaluate is None else 1,
    )
    if strategy == "hyperband":
        common.update(max_epochs=params.tuning.epochs, factor=params.tuning.hyperband_factor)
    else:
        common["max_trials"] = max_trials
    tuner = cls(hypermodel, **common)
    if strategy == "hyperband":
        # Hyperband has no trial budget of its own; the base oracle honours this attribute.
        tuner.oracle.max_trials = max_trials
    if evaluate is not None:
        tuner.data, tuner.evaluate = data, evaluate
    return tuner


def project_name(strategy: str, prequential: bool) -> str:
    return f"{strategy}-prequential" if prequential else strategy


def _value(trial: keras_tuner.engine.trial.Trial, name: str) -> float | None:
    if trial.metrics.exists(name):
        value = trial.metrics.get_last_value(name)
        return None if value is None else float(value)
    return None


def leaderboard(tuner: keras_tuner.Tuner, prequential: bool = False) -> list[LeaderboardRow]:
    """Every trial, best objective first; trials without a score (failed) last."""
    trials = list(tuner.oracle.trials.values())
    reported = PREQUENTIAL_REPORTED if prequential else REPORTED
    fields = SPACE_FIELDS + ONLINE_FIELDS if prequential else SPACE_FIELDS

    def key(t: Any) -> tuple[int, float, str]:
        score = t.score if t.score is not None and math.isfinite(t.score) else None
        return (0 if score is not None else 1, -(score or 0.0), t.trial_id)

    def best_epoch(trial: Any) -> int | None:
        if trial.score is None:
            return None
        if prequential:  # each trial reports its offline fit's best epoch
            value = _value(trial, "best_epoch")
            return None if value is None else int(value)
        return None if trial.best_step is None else int(trial.best_step) + 1

    rows = []
    for rank, trial in enumerate(sorted(trials, key=key), start=1):
        values = _with_nulls(dict(trial.hyperparameters.values))
        rows.append(
            LeaderboardRow(
                rank=rank,
                trial_id=trial.trial_id,
                status=str(trial.status),
                metrics={name: _value(trial, name) for name in reported},
                best_epoch=best_epoch(trial),
                hyperparameters={k: values.get(k) for k in fields},
            )
        )
    return rows


def _fmt(value: Any) -> str:
    if value is None:  # first_width: the input-size rule; fraud_weight: balanced
        return "auto"
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.1e}"
    return str(value)


def write_leaderboard(rows: Sequence[LeaderboardRow], out: Path, strategy: str) -> None:
    """``leaderboard.csv`` (every value, machine-readable) and ``leaderboard.md``; the
    columns are the rows' own (metrics, then hyperparameters)."""
    metric_cols = list(rows[0].metrics) if rows else list(REPORTED)
    fields = list(rows[0].hyperparameters) if rows else list(SPACE_FIELDS)
    objective = metric_cols[0]
    header = ["rank", "trial_id", "status", *metric_cols, "best_epoch", *fields]
    tmp = out / ".leaderboard.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in rows:
            writer.writerow(
                [r.rank, r.trial_id, r.status]
                + ["" if r.metrics[m] is None else repr(r.metrics[m]) for m in metric_cols]
                + ["" if r.best_epoch is None else r.best_epoch]
                + ["" if r.hyperparameters[k] is None else r.hyperparameters[k] for k in fields]
            )
    tmp.replace(out / "leaderboard.csv")
    best = rows[0] if rows and rows[0].metrics[objective] is not None else None
    lines = [f"# Tuning leaderboard ({strategy})", ""]
    if best is not None:
        lines += [f"Best trial: **{best.trial_id}** ({objective} {best.metrics[objective]:.4f}).", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        cells = [str(r.rank), r.trial_id, r.status]
        cells += ["" if r.metrics[m] is None else f"{r.metrics[m]:.4f}" for m in metric_cols]
        cells += ["" if r.best_epoch is None else str(r.best_epoch)]
        cells += [_fmt(r.hyperparameters[k]) for k in fields]
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
    evaluate: Evaluate | None = None,
) -> TuneReport:
    """Run (or resume) the search on prepared data, write the leaderboard and best artifact.

    ``max_trials`` counts every trial of the search, earlier runs included: a search that
    finished 2 trials and is rerun with 4 runs 2 more. For ``grid`` it caps the enumeration,
    which otherwise covers the whole Cartesian product of the space exactly once.
    ``evaluate`` (the prequential objective) scores each trial after its offline fit, and
    the online space is searched too.
    """
    from fraudstream.models.artifact import save_artifact

    strategy = strategy or params.tuning.strategy
    prequential = evaluate is not None
    grid_size = params.tuning.search_space.grid_size() * (params.tuning.online_space.grid_size() if prequential else 1)
    if max_trials is None:
        max_trials = grid_size if strategy == "grid" else params.tuning.max_trials
    if strategy == "grid":
        max_trials = min(max_trials, grid_size)
    out = Path(out)
    search_dir = out / "search"
    project = search_dir / project_name(strategy, prequential)
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

    hypermodel = FraudHyperModel(params, data.X_train.shape[1], data.valid, progress, online=prequential)
    try:
        tuner = make_tuner(strategy, hypermodel, params, max_trials, search_dir, overwrite=False, data=data,
                           evaluate=evaluate)
    except ValueError as exc:  # a JSON file cut short by a kill before its writes were atomic
        raise TuningFailed(f"{project} holds an unreadable file ({exc}); rerun with --restart to discard it") from exc
    # KerasTuner saves oracle.json before it takes a finished trial off its ongoing list, so
    # after a kill between the two the reload queues that finished trial to be run again.
    oracle = tuner.oracle
    oracle._retry_queue = [t for t in oracle._retry_queue if str(oracle.trials[t].status) != "COMPLETED"]
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "strategy": strategy}) + "\n")
    done_before = {
        t.trial_id for t in tuner.oracle.trials.values() if str(t.status) == "COMPLETED"
    }
    try:
        tuner.search(data.X_train, data.y_train, verbose=verbose)
    except RuntimeError as exc:
        # KerasTuner stops after max_consecutive_failed_trials failures with a RuntimeError.
        raise TuningFailed(f"{exc} (tracebacks in {project}/trial_*/trial.json)") from exc
    rows = leaderboard(tuner, prequential)
    done_after = {r.trial_id for r in rows if r.status == "COMPLETED"}
    write_leaderboard(rows, out, strategy)
    objective = PREQUENTIAL_OBJECTIVE.name if prequential else OBJECTIVE.name
    if not rows or rows[0].metrics[objective] is None:
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
    tuned = {"strategy": strategy, "trial_id": best.trial_id, "trials": len(rows),
             "objective": objective, "objective_value": best.metrics[objective]}
    if prequential:  # what the daemon must run with to get what the trial got
        tuned["training"] = online_settings(best_trial.hyperparameters.values)
        tuned["prequential_days"] = params.tuning.prequential_days
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
            extra={"tuning": tuned},
            overwrite=True,
        )
    return TuneReport(
        strategy=strategy,
        best_trial=best.trial_id,
        best_metrics={**metrics, **({objective: best.metrics[objective]} if prequential else {})},
        leaderboard=rows,
        trials_before=len(done_before),
        trials_run_now=len(done_after - done_before),
        out=out,
        artifact=artifact,
        training=tuned.get("training"),
    )


def prequential_split(timestamps: Any, split: SplitParams, days: float) -> tuple[SplitParams, TimeSplit]:
    """The split of a prequential search: its validation (which picks each trial's best
    epoch) ends where the scored window, the last ``days`` days, begins, so no trial is
    chosen on the rows it is judged on. Returns the split and its cut."""
    cut = time_split(timestamps, split)
    window_start = pd.DatetimeIndex(timestamps).max() - pd.Timedelta(days=days)
    if cut.valid_start >= window_start:
        raise TrainingDataInvalid(
            f"model.tuning.prequential_days ({days:g}) reaches back to {window_start:%Y-%m-%d %H:%M}, before the "
            f"validation starts ({cut.valid_start:%Y-%m-%d}): shorten it, or model.split.train_days"
        )
    if cut.valid_end > window_start:
        if split.validation_days is not None:
            raise TrainingDataInvalid(
                f"model.split.validation_days ({split.validation_days:g}) runs into the prequential window "
                f"(the last {days:g} days, from {window_start:%Y-%m-%d %H:%M}); shorten it or leave it null"
            )
        split = split.model_copy(update={"validation_days": (window_start - cut.valid_start) / pd.Timedelta(days=1)})
        cut = time_split(timestamps, split)
    return split, cut


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
    replay: Callable[..., Evaluate] | None = None,
) -> TuneReport:
    """What ``fraudstream tune`` runs: the train command's data preparation, then the search.

    With ``model.tuning.objective: prequential``, ``replay(feature_state=..., start=...)``
    makes the trials' judge: it replays the events from ``start`` (Unix seconds, the end
    of the training period) through the online learner. It lives with the daemon's replay,
    above this package, and is handed in.
    """
    params: ModelParams = settings.model
    prequential = params.tuning.objective == "prequential"
    split, cut = params.split, None
    if prequential:
        if replay is None:
            raise TuningFailed("the prequential objective needs the replay (fraudstream tune passes it)")
        ts = _timestamps(events[settings.features.fields.timestamp], settings.features.epoch_unit)
        split, cut = prequential_split(ts, params.split, params.tuning.prequential_days)
        params = params.model_copy(update={"split": split})
    data = prepare_dataset(events, settings.features, split, pipeline_factory)
    feature_state = feature_state_of(data.pipeline)
    evaluate = replay(feature_state=feature_state, start=cut.train_end.timestamp()) if cut is not None else None
    return run_search(
        data,
        params,
        out,
        strategy=strategy,
        max_trials=max_trials,
        restart=restart,
        feature_spec=settings.features,
        feature_state=feature_state,
        progress=progress,
        verbose=verbose,
        evaluate=evaluate,
    )


__all__ = [
    "FraudHyperModel",
    "LeaderboardRow",
    "OBJECTIVE",
    "PREQUENTIAL_OBJECTIVE",
    "TuneReport",
    "TuningFailed",
    "leaderboard",
    "make_tuner",
    "online_settings",
    "params_from_values",
    "prequential_split",
    "run_search",
    "tune_offline",
    "write_leaderboard",
]
