"""The replay's file source: transactions and label events merged in event-time order, a
chunk at a time, give the stream one merge of the whole files would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.config.features import FieldMap
from fraudstream.consumers.files import merge_chunks

FIELDS = FieldMap()
T0 = pd.Timestamp("2026-04-01", tz="UTC")


def frames(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    return [frame.iloc[i:i + rows] for i in range(0, len(frame), rows)]


@pytest.fixture
def transactions() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    seconds = np.sort(rng.integers(0, 20 * 86_400, 3_000))
    seconds[100:110] = seconds[100]  # equal times keep file order
    return pd.DataFrame({
        "transaction_id": [f"t{i}" for i in range(len(seconds))],
        "timestamp": (T0 + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "customer_id": "c1", "terminal_id": "m1", "amount": 10.0,
        "label": rng.integers(0, 2, len(seconds)),
    })


def stream(chunks) -> list[tuple[str, str]]:
    out = []
    for chunk in chunks:
        assert (np.diff(chunk.times) >= 0).all()
        out += [(k, e["transaction_id"]) for k, e in zip(chunk.kinds, chunk.events)]
    return out


def test_inline_labels_come_their_delay_later_whatever_the_chunk_size(transactions):
    whole = stream(merge_chunks([transactions], FIELDS, label_delay_s=3 * 86_400))
    assert stream(merge_chunks(frames(transactions, 256), FIELDS, label_delay_s=3 * 86_400)) == whole
    assert len(whole) == 2 * len(transactions)
    seconds = (pd.to_datetime(transactions["timestamp"]) - T0).dt.total_seconds().to_numpy()
    due = {f"t{i}": s + 3 * 86_400 for i, s in enumerate(seconds)}
    seen_at = {}
    for n, (kind, tx_id) in enumerate(whole):
        seen_at[(kind, tx_id)] = n
    # a label comes after every transaction before its time and before every one at or after it
    first_tx_at_or_after = {tx_id: np.searchsorted(seconds, due[tx_id]) for tx_id in due}
    for tx_id, i in list(first_tx_at_or_after.items())[::97]:
        if i < len(seconds):
            assert seen_at[("label", tx_id)] < seen_at[("tx", f"t{i}")]
        if i > 0:
            assert seen_at[("label", tx_id)] > seen_at[("tx", f"t{i - 1}")]
    first = next(e for c in merge_chunks(frames(transactions, 256), FIELDS, label_delay_s=60) for k, e in
                 zip(c.kinds, c.events) if k == "tx")
    assert "label" not in first  # learned only once its label event arrives


def test_a_labels_file_read_in_chunks_merges_as_the_whole_file(transactions):
    labels = pd.DataFrame({
        "transaction_id": transactions["transaction_id"],
        "label": transactions["label"],
        "timestamp": (pd.to_datetime(transactions["timestamp"]) + pd.Timedelta(days=2)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    labels.loc[5, "timestamp"] = "not a time"  # comes at the end; the pipeline dead-letters it
    tx = transactions.drop(columns=["label"])
    whole = stream(merge_chunks([tx], FIELDS, [labels]))
    chunked = stream(merge_chunks(frames(tx, 300), FIELDS, frames(labels, 170)))
    assert chunked == whole and len(whole) == len(tx) + len(labels)
    assert whole[-1] == ("label", "t5")
    assert [k for k, _ in whole[-3:-1]] == ["label", "label"]  # labels after the last transaction
