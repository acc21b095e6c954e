"""Event parsing: one record in, a Transaction or an EventInvalid with a stable reason."""

from __future__ import annotations

import math

import pytest

from fraudstream.config.features import EventWindows, FeatureSpec
from fraudstream.errors import EventInvalid
from fraudstream.features import REASONS, FeaturePipeline, Transaction, iso_utc

GOOD = {"transaction_id": "t1", "timestamp": "2026-04-01T08:15:02Z", "customer_id": "c1",
        "terminal_id": "m1", "amount": 12.5}
T = 1_775_031_302_000_000  # 2026-04-01T08:15:02Z in microseconds


@pytest.fixture(scope="module")
def pipe():
    return FeaturePipeline()


def test_good_record(pipe):
    tx = pipe.parse(GOOD)
    assert tx == Transaction("t1", T, "c1", "m1", 12.5, None, None)
    assert iso_utc(tx.time_us) == "2026-04-01T08:15:02Z"
    assert tx.timestamp.isoformat() == "2026-04-01T08:15:02+00:00"


@pytest.mark.parametrize("stamp,expected", [
    ("2026-04-01T08:15:02Z", T),
    ("2026-04-01T10:15:02+02:00", T),
    ("2026-04-01T08:15:02.250Z", T + 250_000),
    ("2026-04-01T08:15:02.123456789Z", T + 123_456),  # beyond microseconds: truncated
    ("2026-04-01 08:15:02", T),                        # no offset: read as UTC
    (1_775_031_302, T),
    (1_775_031_302.25, T + 250_000),
])
def test_timestamps(pipe, stamp, expected):
    assert pipe.parse({**GOOD, "timestamp": stamp}).time_us == expected


def test_epoch_unit_from_spec():
    ms = FeaturePipeline(FeatureSpec(epoch_unit="ms"))
    assert ms.parse({**GOOD, "timestamp": 1_775_031_302_250}).time_us == T + 250_000


@pytest.mark.parametrize("change,reason,field", [
    ({"amount": None}, "missing_field", "amount"),
    ({"amount": "x"}, "wrong_type", "amount"),
    ({"amount": [1]}, "wrong_type", "amount"),
    ({"amount": True}, "wrong_type", "amount"),
    ({"amount": math.nan}, "not_finite", "amount"),
    ({"amount": math.inf}, "not_finite", "amount"),
    ({"amount": -0.01}, "negative_amount", "amount"),
    ({"amount": 1e7 + 1}, "amount_too_large", "amount"),
    ({"timestamp": "2026-13-01T00:00:00Z"}, "bad_timestamp", "timestamp"),
    ({"timestamp": "yesterday"}, "bad_timestamp", "timestamp"),
    ({"timestamp": -5}, "bad_timestamp", "timestamp"),
    ({"timestamp": math.nan}, "bad_timestamp", "timestamp"),
    ({"timestamp": 1e300}, "bad_timestamp", "timestamp"),
    ({"timestamp": {"t": 1}}, "wrong_type", "timestamp"),
    ({"timestamp": None}, "missing_field", "timestamp"),
    ({"customer_id": ""}, "missing_field", "customer_id"),
    ({"customer_id": 1.5}, "wrong_type", "customer_id"),
    ({"terminal_id": None}, "missing_field", "terminal_id"),
    ({"transaction_id": {"a": 1}}, "wrong_type", "transaction_id"),
    ({"label": 2}, "bad_label", "label"),
    ({"label": "yes"}, "bad_label", "label"),
])
def test_invalid_records(pipe, change, reason, field):
    record = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(EventInvalid) as info:
        pipe.parse(record)
    assert (info.value.reason, info.value.field) == (reason, field)
    assert info.value.reason in REASONS


def test_not_an_object(pipe):
    with pytest.raises(EventInvalid) as info:
        pipe.parse(["t1"])
    assert info.value.reason == "not_an_object"


def test_lenient_but_exact_coercions(pipe):
    tx = pipe.parse({**GOOD, "customer_id": 42, "terminal_id": 7.0, "amount": "3.5", "label": "1"})
    assert (tx.customer, tx.terminal, tx.amount, tx.label) == ("42", "7", 3.5, 1)
    assert pipe.parse({**GOOD, "amount": 0, "label": False}).label == 0


def test_parse_many_splits_good_and_bad(pipe):
    good, bad = pipe.parse_many([GOOD, {**GOOD, "amount": -1}, "junk", GOOD])
    assert len(good) == 2
    assert [(i, e.reason) for i, e in bad] == [(1, "negative_amount"), (2, "not_an_object")]


def test_custom_field_names_and_extra_fields():
    spec = FeatureSpec.model_validate({
        "preset": "handbook",
        "fields": {"transaction_id": "id", "timestamp": "when", "customer": "card",
                   "terminal": "shop", "amount": "value", "label": "is_fraud"},
        "stateless": ["amount", "field:risk"],
        "windows": [{"kind": "events", "entity": "device", "days": [1], "stats": ["count"]}],
    })
    pipe = FeaturePipeline(spec)
    tx = pipe.parse({"id": "a", "when": "2026-04-01T08:15:02Z", "card": "c", "shop": "s",
                     "value": 1.0, "device": "d9", "risk": 0.5, "is_fraud": 0})
    assert tx.extra == {"device": "d9", "risk": 0.5} and tx.label == 0
    assert pipe.update_many([tx]).tolist() == [[1.0, 0.5, 1.0]]
    with pytest.raises(EventInvalid) as info:
        pipe.parse({"id": "a", "when": "2026-04-01T08:15:02Z", "card": "c", "shop": "s", "value": 1.0,
                    "risk": 0.5})
    assert (info.value.reason, info.value.field) == ("missing_field", "device")


def test_unused_roles_are_not_required():
    spec = FeatureSpec(preset="handbook", stateless=("night",), windows=(EventWindows(entity="customer", stats=("count",)),))
    tx = FeaturePipeline(spec).parse({"transaction_id": "t", "timestamp": 0, "customer_id": "c"})
    assert (tx.terminal, tx.amount) == ("", 0.0)
