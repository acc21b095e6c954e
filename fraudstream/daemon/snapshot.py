"""Checkpoint assembly: the engine's whole state as one checkpoint, and back.

:func:`capture` and :func:`restore` sit side by side because each must read exactly what
the other writes. The store (:mod:`fraudstream.daemon.checkpoint`) makes a checkpoint
durable; this module decides what goes in it:

- ``model.keras``, the learner's network (written from a twin, so learning goes on);
- one state file per part: ``learner``, ``features``, ``trainer``, ``pending``,
  ``early_labels``, ``event_clocks``, ``lifecycle`` (when on) and the host's extra state
  (the monitor's prequential window and detectors, the drift reference);
- the manifest's meta: versions, counters, the drift adaptation, the Kafka offsets the
  state covers, the prequential score and tags.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fraudstream.config import Settings
from fraudstream.daemon.checkpoint import CheckpointInfo
from fraudstream.daemon.pending import PendingStore
from fraudstream.daemon.state_io import detach, read_state, write_state
from fraudstream.features import FeaturePipeline
from fraudstream.models.builder import load_network
from fraudstream.models.learner import OnlineLearner

if TYPE_CHECKING:
    from fraudstream.daemon.engine import Engine

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def restore(settings: Settings, info: CheckpointInfo, engine_type: type[Engine]) -> Engine:
    """An engine with the state of checkpoint ``info``, seeking to its offsets."""
    path = info.path
    features = FeaturePipeline.from_state_dict(read_state(path, "features"))
    learner = OnlineLearner(load_network(path / "model.keras"), settings.model)
    learner.load_state_dict(read_state(path, "learner"))
    engine = engine_type(settings, features, learner, f"checkpoint {path.name}")
    engine.trainer.load_state_dict(read_state(path, "trainer"))
    engine.pending.load_state_dict(read_state(path, "pending"))
    engine.early.load_state_dict(read_state(path, "early_labels"))
    if (path / "event_clocks.json").exists():  # older checkpoints: watermarks start afresh
        engine.clocks.load_state_dict(read_state(path, "event_clocks"))
    meta = info.meta
    engine.offsets = {(t, int(p)): int(o) for t, p, o in meta["offsets"]}
    engine.resumed_seq = info.seq
    engine.base_version = int(meta.get("base_version", 0))
    if "drift_reference" in meta.get("extra_state", []):
        engine.drift_reference = read_state(path, "drift_reference")
    engine.adaptation.load_meta(meta)
    for name in meta.get("extra_state", []):
        engine.extra_state[name] = read_state(path, name)
    if engine.lifecycle is not None:
        if meta.get("lifecycle"):
            engine.lifecycle.load_state_dict(read_state(path, "lifecycle"))
        else:  # written with the lifecycle off: the model it served is the champion
            engine.lifecycle.champion_version = engine.model_version
    elif meta.get("lifecycle"):
        log.info("lifecycle off: serving the learner (version %s), not the checkpoint's champion (%s)",
                 engine.model_version, meta["lifecycle"]["champion_version"])
    log.info(
        "resumed from checkpoint %s: model_version=%s, %d rows learned, %d pending",
        path.name, engine.model_version, engine.trainer.rows_learned, len(engine.pending),
    )
    return engine


def capture(
    engine: Engine,
    model: Any,
    offsets: dict[tuple[str, int], int],
    reason: str,
    extra_state: dict[str, dict[str, Any]] | None = None,
    score: float | None = None,
    tags: list[str] | None = None,
) -> Callable[[Path], dict[str, Any]]:
    """Copy the whole state of ``engine`` now (its learning thread drained); the returned
    ``write(directory) -> meta`` writes that copy later, on any thread, saving the network
    through ``model``, a twin of the learner's that nothing else uses."""
    extra_state = dict(extra_state or {})
    if engine.drift_reference is not None:
        extra_state["drift_reference"] = engine.drift_reference
    trainer = engine.trainer
    states = {
        "learner": engine.learner.state_dict(),
        "features": engine.features.state_dict(),
        "trainer": trainer.state_dict(),
        "pending": engine.pending.snapshot(),  # made columns on the writer's side
        "early_labels": engine.early.state_dict(),
        "event_clocks": engine.clocks.state_dict(),
        **extra_state,
    }
    lifecycle = None
    if engine.lifecycle is not None:
        states["lifecycle"] = engine.lifecycle.state_dict()
        lifecycle = engine.lifecycle.info(engine.model_version)
        engine.lifecycle.changed = False
    states = detach(states)
    meta = detach({
        "schema_version": SCHEMA_VERSION,
        "reason": reason,
        "origin": engine.origin,
        "model_version": engine.model_version,
        "base_version": engine.base_version,
        "steps": trainer.steps,
        "rows_learned": trainer.rows_learned,
        "learned_digest": str(trainer.digest),
        "pending": len(engine.pending),
        "early_labels": len(engine.early),
        **engine.adaptation.meta(),
        "replay_ratio": trainer.replay_ratio,
        "offsets": sorted([t, p, o] for (t, p), o in offsets.items()),
        "extra_state": sorted(extra_state),
        "score": score,
        "tags": tags or [],
        "lifecycle": lifecycle,  # champion version, counters, window metrics, last events
    })

    def write(tmp: Path) -> dict[str, Any]:
        model.set_weights(states["learner"]["weights"])
        model.save(tmp / "model.keras")
        for name, state in states.items():
            write_state(tmp, name, PendingStore.to_columns(state) if name == "pending" else state)
        return meta

    return write
