"""Binary log loss, per row and mean, with the clipping the monitors share.

Ranking metrics (AUC, average precision, card precision@k) live in
:mod:`fraudstream.models.evaluation`, so offline validation and live monitoring use one
definition; the per-row loss is here because ADWIN watches it row by row.

>>> import numpy as np
>>> log_loss_each([1, 0], [0.9, 0.2]).round(4).tolist()
[0.1054, 0.2231]
"""

from __future__ import annotations

import numpy as np

LOG_LOSS_EPS = 1e-7  # scores are clipped to [eps, 1 - eps]: a confident miss costs ~16, not inf


def log_loss_each(labels, scores, eps: float = LOG_LOSS_EPS) -> np.ndarray:
    """Per-row binary cross-entropy of ``scores`` (probabilities of fraud) for ``labels``."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} != {s.size}")
    p = np.clip(s, eps, 1.0 - eps)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def log_loss(labels, scores, eps: float = LOG_LOSS_EPS) -> float | None:
    """Mean binary cross-entropy; None on no rows."""
    losses = log_loss_each(labels, scores, eps)
    return float(losses.mean()) if losses.size else None
