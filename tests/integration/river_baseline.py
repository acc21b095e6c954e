"""A reference online learner: river's ``StandardScaler | LogisticRegression``.

It sees the same feature rows as the daemon and learns each row when its label would
arrive (transaction time + delay), scoring every transaction before any label of it is
known: the prequential protocol the daemon follows. The learning-quality test compares
the daemon's average precision against it.
"""

from __future__ import annotations

import numpy as np


def river_prequential_scores(
    X: np.ndarray, y: np.ndarray, times: np.ndarray, label_delay_s: float, feature_names: list[str] | None = None
) -> np.ndarray:
    """Score of every row at its own time, learning rows ``label_delay_s`` after theirs.

    ``times`` are event times in seconds; rows need not be sorted. Labels that become known
    at the same moment as a transaction are learned before it is scored.
    """
    from river import compose, linear_model, preprocessing

    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    n = len(X)
    names = feature_names or [f"f{i}" for i in range(X.shape[1])]
    rows = [dict(zip(names, r)) for r in np.asarray(X, np.float64).tolist()]
    labels = np.asarray(y).astype(int).tolist()
    t = np.asarray(times, np.float64)
    event_time = np.concatenate([t, t + label_delay_s])
    is_tx = np.concatenate([np.ones(n, np.int8), np.zeros(n, np.int8)])  # labels first at a tie
    row = np.concatenate([np.arange(n), np.arange(n)])
    order = np.lexsort((row, is_tx, event_time))
    scores = np.zeros(n)
    for tx, i in zip(is_tx[order].tolist(), row[order].tolist()):
        if tx:
            scores[i] = model.predict_proba_one(rows[i]).get(True, 0.0)
        else:
            model.learn_one(rows[i], bool(labels[i]))
    return scores
