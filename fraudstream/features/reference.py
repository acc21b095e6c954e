"""The reference histogram of each feature, against which the daemon measures drift (PSI).

The trainer makes it from its training rows and stores it in the model artifact; the drift
monitor bins the rows it scores with the same edges. Both sides live here so that the bin
convention (right-closed bins on inner quantiles) is written once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.features.exceptions import ReferenceInvalid

REFERENCE_SCHEMA_VERSION = 1


def reference_from(X, bins: int = 10, names: list[str] | None = None, sample: int = 0,
                   seed: int = 0, labels=None) -> dict[str, Any]:
    """Reference histogram of each column of ``X`` for PSI, as JSON-ready data.

    Bin edges are the column's inner quantiles (duplicates merged, so a binary feature gets
    two bins, not ten); bins are right-closed: ``(-inf, e1], (e1, e2], ..., (ek, inf)``.
    Non-finite values are ignored. The trainer stores the result in the model artifact.

    ``sample`` labelled rows of ``X`` drawn at random (``seed``) are kept as well, under
    ``sample`` (and their ``labels`` under ``sample_labels``): the score-mean and log-loss
    detectors compare each row with what the model in use gives them, so that a model
    that learns does not look like a stream that moved.

    >>> import numpy as np
    >>> ref = reference_from(np.arange(1000.0).reshape(-1, 1), bins=4, names=["amount"])
    >>> ref["features"][0]["edges"], ref["features"][0]["proportions"]
    ([249.75, 499.5, 749.25], [0.25, 0.25, 0.25, 0.25])
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ReferenceInvalid(f"reference needs a 2-D matrix, got shape {X.shape}")
    if bins < 2:
        raise ReferenceInvalid("bins must be at least 2")
    names = list(names) if names is not None else [f"f{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise ReferenceInvalid(f"{len(names)} names for {X.shape[1]} columns")
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    features = []
    for j, name in enumerate(names):
        col = X[:, j]
        col = col[np.isfinite(col)]
        if col.size == 0:
            raise ReferenceInvalid(f"feature {name!r} has no finite value")
        edges = np.unique(np.quantile(col, quantiles))
        counts = np.bincount(np.searchsorted(edges, col, side="left"), minlength=edges.size + 1)
        features.append(
            {
                "name": name,
                "edges": edges.tolist(),
                "proportions": (counts / col.size).tolist(),
            }
        )
    reference = {
        "schema_version": REFERENCE_SCHEMA_VERSION,
        "bins": bins,
        "rows": int(X.shape[0]),
        "features": features,
    }
    if sample > 0:
        usable = np.isfinite(X).all(axis=1)
        if labels is not None:
            y = np.asarray(labels, np.float64).ravel()
            usable &= np.isfinite(y)
        usable = np.flatnonzero(usable)
        picked = np.sort(np.random.default_rng(seed).choice(usable, min(sample, usable.size), replace=False))
        reference["sample"] = X[picked].tolist()
        if labels is not None:
            reference["sample_labels"] = y[picked].astype(int).tolist()
    return reference


def check_reference(reference: dict[str, Any]) -> None:
    """Raise ``ReferenceInvalid`` unless ``reference`` is one this version reads."""
    if reference.get("schema_version") != REFERENCE_SCHEMA_VERSION:
        raise ReferenceInvalid(f"reference schema {reference.get('schema_version')!r}")
    for feature in reference.get("features", []):
        if len(feature["proportions"]) != len(feature["edges"]) + 1:
            raise ReferenceInvalid(f"feature {feature.get('name')!r}: bins and edges disagree")


def bin_counts(reference: dict[str, Any], X: np.ndarray) -> list[np.ndarray]:
    """Rows of ``X`` per bin of each reference feature, binned as :func:`reference_from` bins."""
    X = np.asarray(X, dtype=np.float64)
    features = reference["features"]
    if X.ndim != 2 or X.shape[1] != len(features):
        raise ReferenceInvalid(
            f"rows have shape {X.shape}, reference has {len(features)} features"
        )
    counts = []
    for j, feature in enumerate(features):
        edges = np.asarray(feature["edges"], np.float64)
        col = X[:, j]
        col = col[np.isfinite(col)]
        counts.append(np.bincount(np.searchsorted(edges, col, side="left"),
                                  minlength=edges.size + 1))
    return counts
