"""Fraud-detection metrics in plain numpy: average precision, ROC AUC, card precision@k.

Offline validation, tuning and the daemon's prequential monitoring all call these, so one
definition holds everywhere. AP and ROC AUC follow the standard (scikit-learn) definitions,
ties included: rows with equal scores form one threshold. Card precision@k follows the
*Reproducible Machine Learning for Credit Card Fraud Detection* handbook: investigators see
cards (customers), not transactions, and a card found compromised is blocked, so it cannot
be found again on a later day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86_400


def _threshold_counts(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, from the highest score down."""
    y_true = np.asarray(y_true).ravel() > 0.5
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has {y_true.size} rows, y_score {y_score.size}")
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score holds NaN or infinite values")
    order = np.argsort(-y_score, kind="stable")
    score_sorted = y_score[order]
    true_sorted = y_true[order]
    # The last row of every run of equal scores closes one threshold.
    last_of_tie = np.r_[np.flatnonzero(np.diff(score_sorted)), score_sorted.size - 1]
    tps = np.cumsum(true_sorted, dtype=np.int64)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return tps, fps


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the precision-recall step curve: sum of (R_n - R_{n-1}) * P_n.

    NaN when there is no positive row (recall is undefined).

    >>> average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.8333333333333333
    """
    if np.asarray(y_true).size == 0:
        return float("nan")
    tps, fps = _threshold_counts(y_true, y_score)
    n_pos = tps[-1]
    if n_pos == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall_steps = np.diff(np.r_[0, tps]) / n_pos
    return float(np.sum(recall_steps * precision))


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (probability a fraud outranks a legit row, ties count half).

    NaN when only one class is present.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    if np.asarray(y_true).size == 0:
        return float("nan")
    tps, fps = _threshold_counts(y_true, y_score)
    n_pos, n_neg = tps[-1], fps[-1]
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    # Trapezoids in integer counts, scaled once: exact for tied scores.
    area = np.sum(np.diff(fps) * (tps[1:] + tps[:-1])) / 2.0
    return float(area / (n_pos * n_neg))


@dataclass(frozen=True)
class CardPrecision:
    """Card precision@k, day by day; ``mean`` is the handbook's figure."""

    k: int
    days: np.ndarray
    per_day: np.ndarray
    compromised_per_day: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.per_day.mean()) if self.per_day.size else float("nan")


def day_index(timestamps: np.ndarray) -> np.ndarray:
    """Whole UTC days since the epoch, from ``datetime64`` values or epoch seconds."""
    ts = np.asarray(timestamps)
    if np.issubdtype(ts.dtype, np.datetime64):
        return ts.astype("datetime64[D]").astype(np.int64)
    return np.floor_divide(ts.astype(np.float64), SECONDS_PER_DAY).astype(np.int64)


def card_precision_per_day(
    y_true: np.ndarray,
    y_score: np.ndarray,
    customer_ids: np.ndarray,
    days: np.ndarray,
    k: int = 100,
    remove_detected: bool = True,
) -> CardPrecision:
    """Per day: each customer's max score and max label; precision among the top ``k``.

    Customers found fraudulent in an earlier day's top ``k`` are removed from later days.
    The denominator is always ``k`` (as in the handbook), even on a day with fewer cards.
    Ties in a customer's max score are broken by customer id, so the result is deterministic.
    """
    y_true = (np.asarray(y_true).ravel() > 0.5).astype(np.int8)
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    customer_ids = np.asarray(customer_ids).ravel()
    days = np.asarray(days).ravel()
    if not (y_true.size == y_score.size == customer_ids.size == days.size):
        raise ValueError("y_true, y_score, customer_ids and days must have the same length")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    customers, customer_code = np.unique(customer_ids, return_inverse=True)
    detected = np.zeros(customers.size, dtype=bool)
    unique_days = np.unique(days)
    per_day = np.empty(unique_days.size)
    compromised = np.empty(unique_days.size, dtype=np.int64)
    for i, day in enumerate(unique_days):
        rows = (days == day) & ~detected[customer_code]
        codes = customer_code[rows]
        day_customers = np.unique(codes)
        # Per-customer maxima: scatter-max into arrays indexed by position in day_customers.
        slot = np.searchsorted(day_customers, codes)
        max_score = np.full(day_customers.size, -np.inf)
        np.maximum.at(max_score, slot, y_score[rows])
        max_label = np.zeros(day_customers.size, dtype=np.int8)
        np.maximum.at(max_label, slot, y_true[rows])
        compromised[i] = int(max_label.sum())
        top = np.argsort(-max_score, kind="stable")[:k]
        hits = top[max_label[top] == 1]
        per_day[i] = hits.size / k
        if remove_detected:
            detected[day_customers[hits]] = True
    return CardPrecision(k=k, days=unique_days, per_day=per_day, compromised_per_day=compromised)


def card_precision_at_k(
    y_true: np.ndarray,
    y_score: np.ndarray,
    customer_ids: np.ndarray,
    days: np.ndarray,
    k: int = 100,
) -> float:
    """Mean over days of the handbook's daily card precision@k (see card_precision_per_day).

    >>> card_precision_at_k([0, 1, 1, 0], [0.2, 0.9, 0.8, 0.1], ["a", "b", "b", "c"], [0, 0, 1, 1], k=2)
    0.25
    """
    return card_precision_per_day(y_true, y_score, customer_ids, days, k).mean


def summarize(
    y_true: np.ndarray,
    y_score: np.ndarray,
    customer_ids: np.ndarray | None = None,
    days: np.ndarray | None = None,
    k: int = 100,
) -> dict[str, float]:
    """The three headline metrics as one dict (card precision only with customers and days)."""
    out = {
        "average_precision": average_precision(y_true, y_score),
        "roc_auc": roc_auc(y_true, y_score),
    }
    if customer_ids is not None and days is not None:
        out[f"card_precision_at_{k}"] = card_precision_at_k(y_true, y_score, customer_ids, days, k)
    return out
