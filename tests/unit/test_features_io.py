"""Reading event files, the ``features`` command, and saved feature state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config.features import FeatureSpec, FieldMap
from fraudstream.features import (
    FeatureInputInvalid,
    FeaturePipeline,
    FeatureStateInvalid,
    Transaction,
    load_state,
    read_events,
    save_state,
)

ROWS = [
    {"transaction_id": "007", "timestamp": "2026-04-02T10:00:00Z", "customer_id": "001",
     "terminal_id": "9", "amount": 30.0, "label": 1},
    {"transaction_id": "008", "timestamp": "2026-04-01T10:00:00Z", "customer_id": "001",
     "terminal_id": "9", "amount": 10.0, "label": 0},
    {"transaction_id": "009", "timestamp": "2026-04-01T22:00:00+02:00", "customer_id": "002",
     "terminal_id": "9", "amount": 5.5, "label": 0},
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_read_events_keeps_ids_as_text(tmp_path, suffix):
    df = pd.DataFrame(ROWS)
    path = tmp_path / f"events{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    else:
        df.to_parquet(path)
    got = read_events(path)
    assert got["transaction_id"].tolist() == ["007", "008", "009"]
    assert got["customer_id"].tolist() == ["001", "001", "002"]
    assert got["terminal_id"].tolist() == ["9", "9", "9"]
    handbook = FeatureSpec(preset="handbook")
    X = FeaturePipeline(handbook).transform_many(got)
    assert np.array_equal(X, FeaturePipeline(handbook).transform_many(df))
    assert X[0, 4] == 30.0  # exactly one day later: the earlier event has left the 1-day window
    assert X[0, 6] == 20.0  # but not the 7-day one: (10 + 30) / 2


def test_read_events_refuses_unknown_or_missing_files(tmp_path):
    with pytest.raises(FeatureInputInvalid):
        read_events(tmp_path / "events.xlsx")
    with pytest.raises(FeatureInputInvalid):
        read_events(tmp_path / "absent.csv")


def test_features_command_with_own_column_names(tmp_path):
    names = {"transaction_id": "id", "timestamp": "when", "customer_id": "card",
             "terminal_id": "shop", "amount": "value", "label": "fraud"}
    pd.DataFrame(ROWS).rename(columns=names).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "cfg.yaml").write_text(
        "features:\n  preset: extended\n  fields: {transaction_id: id, timestamp: when, customer: card,"
        " terminal: shop, amount: value, label: fraud}\n")
    result = CliRunner().invoke(app, ["features", "--data", str(tmp_path / "in.csv"), "--config",
                                      str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "out.parquet")])
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(tmp_path / "out.parquet")
    spec = FeatureSpec.model_validate({"preset": "extended", "fields": {
        "transaction_id": "id", "timestamp": "when", "customer": "card", "terminal": "shop",
        "amount": "value", "label": "fraud"}})
    assert list(out.columns[:3]) == ["id", "when", "fraud"]
    assert out["id"].tolist() == ["008", "009", "007"]  # sorted by event time
    pipe = FeaturePipeline(spec)
    frame = read_events(tmp_path / "in.csv", spec.fields)
    X = pipe.transform_many(frame)
    assert np.array_equal(out[pipe.feature_names].to_numpy(), X[[1, 2, 0]])
    assert out["fraud"].tolist() == [0, 0, 1]


def test_features_command_stops_or_drops_invalid_rows(tmp_path):
    rows = ROWS + [{**ROWS[0], "transaction_id": "010", "amount": -3.0}]
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    args = ["features", "--data", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv")]
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 2 and "negative_amount" in stopped.output
    assert not (tmp_path / "out.csv").exists()
    dropped = CliRunner().invoke(app, args + ["--drop-invalid"])
    assert dropped.exit_code == 0, dropped.output
    assert "dropped 1 row(s): negative_amount:amount" in dropped.output
    out = pd.read_csv(tmp_path / "out.csv", dtype={"transaction_id": str})
    assert out["transaction_id"].tolist() == ["008", "009", "007"]
    assert out["timestamp"].tolist()[0] == "2026-04-01T10:00:00.000000Z"


def test_features_command_reports_unreadable_input(tmp_path):
    result = CliRunner().invoke(app, ["features", "--data", str(tmp_path / "nope.csv"),
                                      "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_error_is_one_line_whatever_the_terminal_width(tmp_path):
    deep = tmp_path / ("a-folder-with-a-long-name-" * 6) / "nope.csv"
    result = CliRunner().invoke(app, ["features", "--data", str(deep), "--out", str(tmp_path / "o.csv")],
                                env={"COLUMNS": "40"})
    assert result.exit_code == 2
    assert f"error: {deep}: no such file" in result.output.splitlines()


def _stream(pipe: FeaturePipeline) -> None:
    base = 1_775_001_600_000_000
    txs = [Transaction(f"t{i}", base + i * 3_600_000_000, f"c{i % 4}", f"m{i % 3}", 1.0 + i % 5) for i in range(300)]
    pipe.update_many(txs[:200])
    pipe.learn_labels([(tx, i % 2) for i, tx in enumerate(txs[:150])])
    pipe.update_many(txs[200:])


def test_state_file_round_trip_without_pickle(tmp_path):
    pipe = FeaturePipeline()
    _stream(pipe)
    path = save_state(pipe.state_dict(), tmp_path / "state.npz")
    with np.load(path, allow_pickle=False) as npz:  # loads with pickle off
        assert "__json__" in npz.files
    state = load_state(path)
    assert state["schema_version"] == 1 and state["feature_names"] == pipe.feature_names
    back = FeaturePipeline.from_state_dict(state)
    tx = Transaction("x", 1_775_001_600_000_000 + 400 * 3_600_000_000, "c1", "m1", 4.0)
    assert np.array_equal(back.update_many([tx]), pipe.update_many([tx]))
    assert back.labels_seen == 150 and back.events_seen == pipe.events_seen


def test_state_of_another_spec_or_version_is_refused(tmp_path):
    pipe = FeaturePipeline()
    _stream(pipe)
    state = pipe.state_dict()
    with pytest.raises(FeatureStateInvalid, match="another spec"):
        FeaturePipeline(FeatureSpec(preset="extended")).load_state_dict(state)
    with pytest.raises(FeatureStateInvalid, match="schema"):
        FeaturePipeline().load_state_dict({**state, "schema_version": 99})
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FeatureStateInvalid):
        load_state(tmp_path / "bad.npz")


def test_field_map_defaults_match_the_event_contract():
    assert FieldMap().model_dump() == {"transaction_id": "transaction_id", "timestamp": "timestamp",
                                       "customer": "customer_id", "terminal": "terminal_id",
                                       "amount": "amount", "label": "label"}
