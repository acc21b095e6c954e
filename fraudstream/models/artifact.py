"""The saved model artifact: what ``train`` and ``tune`` write and the daemon loads.

A directory, so each part stays in an open format a reviewer can inspect::

    model.keras       Keras 3 archive (architecture, weights, optimiser state)
    features.json     feature spec, feature names and fitted feature state (normaliser ...)
    features.npz      the state's arrays, when it has any (loaded with allow_pickle=False)
    metadata.json     schema version, model version, library versions, data range,
                      hyperparameters, validation metrics, and the training rows'
                      feature histograms with a labelled sample of 1,000 of those rows
                      (``drift_reference``, the baselines of the daemon's drift detectors)
    MANIFEST.json     sha256 and size of every file above

Saving writes everything into a temporary sibling directory, fsyncs it, and renames it into
place, so a reader never sees half an artifact. Loading verifies every checksum before it
opens anything, then loads the model with ``safe_mode=True`` (no deserialised code).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import uuid
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from fraudstream.config.model import ModelParams
from fraudstream.durable import fsync_path, sha256_file, write_json
from fraudstream.models.backend import keras
from fraudstream.models.exceptions import ArtifactExists, ArtifactInvalid
from fraudstream.models.scorer import Scorer

ARTIFACT_SCHEMA_VERSION = 1
MODEL_FILE = "model.keras"
FEATURES_FILE = "features.json"
FEATURE_ARRAYS_FILE = "features.npz"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "MANIFEST.json"
REQUIRED_FILES = (MODEL_FILE, FEATURES_FILE, METADATA_FILE)
_ARRAY_TAG = "__ndarray__"


# -- state <-> JSON + npz ------------------------------------------------------------------


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """JSON-safe copy of ``value``; numpy arrays move to ``arrays`` and leave a reference."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where}: object arrays cannot be saved without pickle")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {_ARRAY_TAG: key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict key {k!r} is not a string")
            out[k] = _encode(v, arrays, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where}: {type(value).__name__} cannot be saved as JSON")


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY_TAG}:
            return np.array(arrays[value[_ARRAY_TAG]])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


# -- helpers -------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    """Versions that decide whether an artifact loads and scores the same elsewhere."""
    versions = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__}
    for dist in ("fraudstream", "tensorflow-cpu", "tensorflow", "keras-tuner", "river"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


# -- the artifact --------------------------------------------------------------------------


@dataclass
class Artifact:
    """A loaded artifact: the Keras model plus what is needed to build its inputs."""

    path: Path
    model: keras.Model
    params: ModelParams
    feature_spec: dict[str, Any]
    feature_state: dict[str, Any]
    feature_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        return str(self.metadata["model_version"])

    @property
    def n_inputs(self) -> int:
        return int(self.metadata["n_inputs"])

    @property
    def drift_reference(self) -> dict[str, Any] | None:
        """Feature histograms of the training rows (None in artifacts saved without them)."""
        return self.metadata.get("drift_reference")

    def scorer(self) -> Scorer:
        """A numpy scorer over this artifact's model."""
        return Scorer(self.model)

    def feature_pipeline(self) -> Any:
        """The feature pipeline this model was trained with, its fitted state restored."""
        from fraudstream.config.features import FeatureSpec
        from fraudstream.features import FeaturePipeline

        try:
            spec = FeatureSpec.model_validate(self.feature_spec)
        except ValidationError as exc:
            raise ArtifactInvalid(self.path, "incompatible", f"feature spec: {exc}") from exc
        pipe = FeaturePipeline(spec)
        pipe.load_state_dict(self.feature_state)
        return pipe


def save_artifact(
    path: Path | str,
    model: keras.Model,
    *,
    params: ModelParams,
    feature_spec: Any,
    feature_state: dict[str, Any],
    feature_names: list[str],
    metrics: dict[str, float] | None = None,
    data: dict[str, Any] | None = None,
    drift_reference: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an artifact directory atomically; returns its path.

    ``drift_reference`` (from :meth:`fraudstream.models.training.Dataset.drift_reference`)
    must name the model's features in order: the daemon compares the rows it scores with it.

    Steps, in this order, so a crash at any point leaves the previous artifact (or none):
    1. write every file into ``.<name>.tmp-<id>`` next to the target;
    2. write the manifest of sha256 checksums last, fsync files and directory;
    3. move an existing target aside (only with ``overwrite``), rename the temp dir into
       place, fsync the parent, then delete the old copy.
    """
    path = Path(path)
    n_inputs = int(model.inputs[0].shape[-1])
    if len(feature_names) != n_inputs:
        raise ValueError(f"{len(feature_names)} feature names for a model with {n_inputs} inputs")
    if drift_reference is not None:
        reference_names = [f.get("name") for f in drift_reference.get("features", [])]
        if reference_names != list(feature_names):
            raise ValueError(f"drift reference features {reference_names} differ from {list(feature_names)}")
    if path.exists() and not overwrite:
        raise ArtifactExists(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        # 1. the files
        model.save(tmp / MODEL_FILE)
        arrays: dict[str, np.ndarray] = {}
        spec_json = _encode(feature_spec, {}, "feature_spec")
        state_json = _encode(feature_state, arrays, "feature_state")
        write_json(
            tmp / FEATURES_FILE,
            {"spec": spec_json, "feature_names": list(feature_names), "state": state_json}, indent=2,
        )
        if arrays:
            with open(tmp / FEATURE_ARRAYS_FILE, "wb") as fh:
                np.savez(fh, **arrays)
        model_sha = sha256_file(tmp / MODEL_FILE)
        meta = {
            "schema_version": ARTIFACT_SCHEMA_VERSION,
            "model_version": model_sha[:12],
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "n_inputs": n_inputs,
            "feature_names": list(feature_names),
            "versions": library_versions(),
            "hyperparameters": params.model_dump(mode="json"),
            "data": _encode(data or {}, {}, "data"),
            "metrics": _encode(metrics or {}, {}, "metrics"),
        }
        if drift_reference is not None:
            meta["drift_reference"] = _encode(drift_reference, {}, "drift_reference")
        if extra:
            meta.update(_encode(extra, {}, "extra"))
        write_json(tmp / METADATA_FILE, meta, indent=2)
        # 2. the manifest, then make everything durable
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "schema_version": ARTIFACT_SCHEMA_VERSION,
            "files": {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in files
            },
        }
        write_json(tmp / MANIFEST_FILE, manifest, indent=2)
        for name in files + [MANIFEST_FILE]:
            fsync_path(tmp / name)
        fsync_path(tmp)
        # 3. swap into place
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def verify_artifact(path: Path | str) -> dict[str, Any]:
    """Check presence and checksums of every file; returns the metadata. No model loading."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactInvalid(path, "missing", "no such directory")
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactInvalid(path, "missing", f"no {MANIFEST_FILE} (not an artifact, or partial)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactInvalid(path, "corrupt", f"{MANIFEST_FILE} unreadable: {exc}") from exc
    if manifest.get("schema_version") != ARTIFACT_SCHEMA_VERSION:
        raise ArtifactInvalid(
            path,
            "incompatible",
            f"schema version {manifest.get('schema_version')!r}, this build reads "
            f"{ARTIFACT_SCHEMA_VERSION}",
        )
    for name in REQUIRED_FILES:
        if name not in files:
            raise ArtifactInvalid(path, "corrupt", f"{MANIFEST_FILE} does not list {name}")
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            raise ArtifactInvalid(path, "missing", f"{name} listed in the manifest is absent")
        digest = sha256_file(file)
        if digest != entry.get("sha256"):
            raise ArtifactInvalid(path, "corrupt", f"{name}: sha256 {digest[:12]}... does not match")
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
    except ValueError as exc:
        raise ArtifactInvalid(path, "corrupt", f"{METADATA_FILE}: {exc}") from exc
    if meta.get("schema_version") != ARTIFACT_SCHEMA_VERSION:
        raise ArtifactInvalid(
            path,
            "incompatible",
            f"metadata schema version {meta.get('schema_version')!r}, this build reads "
            f"{ARTIFACT_SCHEMA_VERSION}",
        )
    return meta


def load_artifact(path: Path | str, expected_inputs: int | None = None) -> Artifact:
    """Verify and load an artifact; raise :class:`ArtifactInvalid` naming what is wrong.

    ``expected_inputs`` is the width of the feature rows the caller will feed (e.g. from its
    own feature spec); a mismatch is reported as ``incompatible`` before any scoring.
    """
    path = Path(path)
    meta = verify_artifact(path)
    try:
        features = json.loads((path / FEATURES_FILE).read_text())
        arrays_path = path / FEATURE_ARRAYS_FILE
        if arrays_path.exists():
            with np.load(arrays_path, allow_pickle=False) as arrays:
                state = _decode(features["state"], arrays)
        else:
            state = _decode(features["state"], {})
        names = list(features["feature_names"])
        spec = features["spec"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ArtifactInvalid(path, "corrupt", f"feature files: {exc}") from exc
    try:
        params = ModelParams.model_validate(meta["hyperparameters"])
    except (ValidationError, KeyError) as exc:
        raise ArtifactInvalid(path, "incompatible", f"hyperparameters: {exc}") from exc
    try:
        model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad archive; all mean "corrupt".
        raise ArtifactInvalid(path, "corrupt", f"{MODEL_FILE} does not load: {exc}") from exc
    n_inputs = int(model.inputs[0].shape[-1])
    if n_inputs != meta.get("n_inputs") or n_inputs != len(names):
        raise ArtifactInvalid(
            path,
            "incompatible",
            f"model takes {n_inputs} inputs, metadata says {meta.get('n_inputs')}, "
            f"{len(names)} feature names",
        )
    if expected_inputs is not None and expected_inputs != n_inputs:
        raise ArtifactInvalid(
            path, "incompatible", f"model takes {n_inputs} inputs, the caller has {expected_inputs}"
        )
    return Artifact(
        path=path,
        model=model,
        params=params,
        feature_spec=spec,
        feature_state=state,
        feature_names=names,
        metadata=meta,
    )
